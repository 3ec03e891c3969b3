"""The launched app: every endpoint through gradio_client, the hardening (uploads never served as
active content, only documented endpoints callable by name, no monitoring, no server paths in the
config, budgets), property-based fuzzing of every endpoint, and a real browser (Debian's chromium
driven by Playwright) doing what a user does."""

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.__main__ import launch
from app.main import API_NAMES, build_app
from app.runtime import Runtime
from dde.backends.spec import SHIPPED

PROMPT = "a big red circle on the left on a black background"
SCREENSHOTS = Path(os.environ.get("DDE_SCREENSHOTS", Path(__file__).resolve().parents[1] / "outputs" / "screenshots"))
# what a Python internal error looks like when it leaks into a message
LEAKS = ("object has no attribute", "Traceback", "embedded null byte", "is not a mapping", "NoneType",
         "the request failed (")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runtime = Runtime(out=tmp_path_factory.mktemp("app-out"))
    demo = build_app(runtime)
    port = _free_port()
    launch(demo, runtime, port=port, block=False)
    yield f"http://127.0.0.1:{port}/", runtime
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def _get(url: str):
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), b""


def _post(url: str, data: bytes, content_type: str = "application/json"):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def _gallery(output):
    """A gallery's items: the client gives a Gallery update (label, visibility) as a dict with 'value'."""
    return output["value"] if isinstance(output, dict) else output


def test_only_the_documented_endpoints_are_named(client):
    named = set(client.view_api(return_format="dict")["named_endpoints"])
    assert named == {f"/{name}" for name in API_NAMES}


def test_compare_three_models_from_the_same_noise(client):
    *outputs, s0, s1, s2, divergence, scores, info = client.predict(
        PROMPT, "", 3, 4, 2.0, 2, ["base", "dde", "dpo"], api_name="/compare")
    galleries = [_gallery(g) for g in outputs]
    assert [len(g) for g in galleries] == [2, 2, 2]
    assert all(Path(item["image"]).is_file() for g in galleries for item in g)
    assert galleries[0][0]["caption"] == "#1, seed 3"
    assert scores["headers"] == ["image", "seed", "judge | base", "judge | dde", "judge | dpo"]
    assert divergence["type"] == "plotly" and "same noise" in info
    report = Path(client.predict(api_name="/compare_report")["value"])  # this client's last comparison
    text = report.read_text()
    assert report.suffix == ".html" and text.count("data:image/png;base64,") >= 6 + 3 and "plotly" in text


def test_bad_input_is_a_message_and_the_server_stays_up(server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(server[0], verbose=False)  # its own session: no comparison made yet

    with pytest.raises(AppError, match="empty"):
        client.predict("  ", "", 0, 4, 2.0, 1, ["base"], api_name="/compare")
    with pytest.raises(AppError, match="outside the folders"):
        client.predict(PROMPT, "", 0, 4, 2.0, 1, ["base", "/etc/passwd"], api_name="/compare")
    with pytest.raises(AppError, match="steps must be a whole number"):
        client.predict("dpo", 500, 3e-4, 2.5, 2, 0, 1000, 1, 2, 0, api_name="/finetune")
    with pytest.raises(AppError, match="generate a comparison first"):
        client.predict(api_name="/compare_report")
    assert len(_gallery(client.predict(PROMPT, "", 0, 2, 2.0, 1, ["base"], api_name="/compare")[0])) == 1


def test_a_huge_request_is_refused_at_once_and_the_lane_stays_free(client, server):
    from gradio_client.exceptions import AppError

    t0 = time.time()
    with pytest.raises(AppError, match="images x DDIM steps"):  # 500 prompts x 8 seeds x 3 models x 100 steps
        client.predict("held-out toy scenes", None, 500, ["base", "dde", "dpo"], ["judge"], 8, 100,
                       api_name="/evaluate")
    assert time.time() - t0 < 10
    assert server[1].lane.waiting == 0 and server[1].lane.current is None
    assert len(_gallery(client.predict(PROMPT, "", 0, 2, 2.0, 1, ["base"], api_name="/compare")[0])) == 1


def test_credit_endpoints(client, server):
    shipped = server[1].paths.show(SHIPPED["dde"].parent / "run")
    fig, table = client.predict(["dpo", "dde-closed"], "scaled_linear (SD1.5 / SDXL)", 1000, False, False,
                                shipped, api_name="/credit_plot")
    assert fig["type"] == "plotly"
    assert "| dde-closed | 354 | 77.9% |" in table and "dde calibrated (run)" in table
    fig = client.predict([shipped], api_name="/empirical_credit")
    assert fig["type"] == "plotly"


def test_estimation_endpoint(client):
    fig, table, status = client.predict("base", 4, True, api_name="/estimation")
    assert fig["type"] == "plotly" and status == ""
    assert "single-shot (measured)" in table["headers"] and len(table["data"]) == 10


def test_finetune_then_use_the_run(client, server):
    out = client.predict("dde", 500, 3e-4, 3, 2, 0, 1000, 1, 2, 0, api_name="/finetune")
    status, loss, acc, margin, val, judge, cal, weights = out  # the job id is session state, not an output
    assert "finished" in status and loss["type"] == "plotly" and cal["type"] == "plotly"
    assert judge["type"] == "plotly"  # the reward probe at start and at the checkpoint
    assert Path(weights).is_file() and weights.endswith("lora.safetensors")
    run = next(v for k, v in server[1].model_choices() if k.startswith("run "))
    assert run.startswith("out/runs/")  # shown relative to the app's folders, never as a server path
    galleries = [_gallery(g) for g in client.predict(PROMPT, "", 0, 2, 2.0, 1, ["base", run], api_name="/compare")[:2]]
    assert [len(g) for g in galleries] == [1, 1]
    _, table = client.predict(["dpo"], "linear (DDPM)", 1000, False, False, run, api_name="/credit_plot")
    assert f"dde calibrated ({Path(run).name})" in table


def test_evaluate_endpoint_and_report(client):
    table, score_plot, attr_plot, grid, csv, status = client.predict(
        "held-out toy scenes", None, 3, ["base", "dde"], ["judge"], 1, 3, api_name="/evaluate")
    assert table["headers"] == ["model", "images", "score [95% CI]", "win rate vs base [95% CI]"]
    assert [row[0] for row in table["data"]] == ["base", "dde"]
    assert score_plot["type"] == attr_plot["type"] == "plotly" and len(grid) == 2 * min(3, 6)
    assert all(" | " in item["caption"] and "vs" in item["caption"] for item in grid)
    assert Path(csv).is_file() and "images scored" in status


def test_uploads_are_never_served_as_active_content(server):
    url, _ = server
    boundary = "dde-boundary"
    for name, body in (("x.html", b"<script>alert(1)</script>"), ("x.svg", b"<svg onload='alert(1)'></svg>"),
                       ("x.js", b"alert(1)")):
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
        status, answer = _post(f"{url}gradio_api/upload", form, f"multipart/form-data; boundary={boundary}")
        assert status == 200
        path = json.loads(answer)[0]
        status, headers, content = _get(f"{url}gradio_api/file={path}")
        assert status == 200 and content == body
        headers = {k.lower(): v for k, v in headers.items()}
        assert headers["content-disposition"].startswith("attachment")
        assert headers["x-content-type-options"] == "nosniff" and "default-src 'none'" in headers[
            "content-security-policy"]


def test_private_handlers_monitoring_and_server_paths_stay_hidden(server):
    url, runtime = server
    for name in ("credit_view", "calibration_view", "make_report", "refresh", "estimation_x"):
        status, _ = _post(f"{url}gradio_api/call/{name}", json.dumps({"data": []}).encode())
        assert status == 404, name
    for path in ("gradio_api/monitoring", "monitoring", "gradio_api/vibe-code"):
        assert _get(url + path)[0] == 404
    status, _, config = _get(f"{url}config")
    assert status == 200
    text = config.decode()
    assert str(runtime.out) not in text and str(Path(__file__).resolve().parents[1]) not in text
    status, _, info = _get(f"{url}gradio_api/info")
    assert str(runtime.out) not in info.decode()


def test_serves_no_files_outside_its_output_folder(server):
    url, _ = server
    for path in ("/etc/passwd", str(Path(__file__).resolve()), str(SHIPPED["dde"])):
        status, _, _ = _get(f"{url}gradio_api/file={path}")
        assert status in (403, 404)


def test_queued_work_says_its_place(server):
    """A Compare waiting behind other lane work yields its place and an estimate before its result."""
    import threading

    from app.tabs.compare import build  # noqa: F401 - the handler under test lives there
    from app.ui import follow

    _, rt = server
    gate = threading.Event()
    blocker = rt.lane.submit("blocker", lambda task: gate.wait(10), cost=100)
    task = rt.compare_task(PROMPT, "", 0, 2, 2.0, 1, ["base"])
    updates = []
    gen = follow(rt.lane, task, lambda text: text)
    updates.append(next(gen))
    gate.set()
    try:
        while True:
            updates.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert updates[0].startswith("Waiting in the compute lane: place 1, about")
    assert len(result.images[0]) == 1 and blocker.future.result() is True


@pytest.mark.slow
def test_fuzzed_endpoints_answer_with_a_result_or_a_message(client):
    """Several hundred property-based calls over every endpoint: each answer is a result or a
    user-facing message, never a leaked internal error, and the server stays up."""
    from gradio_client.exceptions import AppError
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                     st.text(max_size=30), st.just("\x00"), st.just("http://example.com/x"), st.just("../../etc"),
                     st.lists(st.text(max_size=5), max_size=3))
    small = st.one_of(junk, st.sampled_from([1, 2]))
    models = st.one_of(junk, st.lists(st.one_of(st.sampled_from(["base", "dde", "dpo", "assets/toy-base"]), junk),
                                      max_size=4))
    calls = {
        "/compare": st.tuples(st.one_of(junk, st.just(PROMPT)), junk, small, small, st.one_of(junk, st.just(2.0)),
                              small, models),
        "/credit_plot": st.tuples(st.one_of(junk, st.lists(st.sampled_from(["dpo", "dde", "window", "nope"]))),
                                  junk, st.one_of(junk, st.just(1000)), junk, junk, junk),
        "/empirical_credit": st.tuples(st.one_of(junk, st.lists(junk, max_size=2))),
        "/estimation": st.tuples(st.one_of(junk, st.just("base")), st.one_of(junk, st.just(4)), junk),
        "/evaluate": st.tuples(st.one_of(junk, st.just("held-out toy scenes")), st.none(), st.one_of(junk, st.just(1)),
                               models, st.one_of(junk, st.just(["judge"])), small, small),
        # steps is always invalid here: the fuzz never starts a real fine-tune
        "/finetune": st.tuples(junk, junk, junk, st.sampled_from([None, 0, -1, 2.5, 10**9, "x"]), junk, junk, junk,
                               junk, junk, junk),
        "/cancel_finetune": st.tuples(junk),
    }
    seen = {"calls": 0}

    def check(name, args):
        seen["calls"] += 1
        try:
            client.predict(*args, api_name=name)
        except AppError as err:
            message = str(err)
            assert message.strip() and not any(leak in message for leak in LEAKS), f"{name}{args!r}: {message}"
        except (ValueError, TypeError) as err:  # refused by the client's own checks before sending
            assert str(err).strip()

    def caller(name):
        return lambda args: check(name, args)

    for name, strategy in calls.items():
        given(strategy)(settings(max_examples=45, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck))(caller(name)))()
    assert seen["calls"] >= 300
    assert len(_gallery(client.predict(PROMPT, "", 0, 2, 2.0, 1, ["base"], api_name="/compare")[0])) == 1


@pytest.mark.slow
def test_concurrent_clients_while_a_fine_tune_runs(server):
    """Three clients compare (distinct seeds) while a fine-tune trains: every request is answered
    with exactly what the same request gives alone."""
    import threading

    from gradio_client import Client

    url, rt = server
    alone = {seed: rt.compare_task(PROMPT, "", seed, 3, 2.0, 1, ["base", "dde"]).future.result().scores
             for seed in range(6)}
    job = rt.finetunes.submit({"variant": "dpo", "steps": 15, "batch_pairs": 4, "calibration_batches": 0,
                               "lora_rank": 2, "judge_prompts": 0})
    answers, errors = {}, []

    def user(seeds):
        client = Client(url, verbose=False)
        for seed in seeds:
            try:
                out = client.predict(PROMPT, "", seed, 3, 2.0, 1, ["base", "dde"], api_name="/compare")
                answers[seed] = (out[7], time.time())
            except Exception as err:  # collected: the assertion below names it
                errors.append(repr(err))

    threads = [threading.Thread(target=user, args=(seeds,)) for seeds in ((0, 1), (2, 3), (4, 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and sorted(answers) == list(range(6))
    for seed, (scores, _) in answers.items():
        assert scores["data"][0][1] == seed
        assert scores["data"][0][2:] == alone[seed].iloc[0, 2:].tolist()
    while job.state in ("queued", "running"):
        time.sleep(0.2)
    assert job.state == "finished"
    assert [t for _, t in answers.values() if job.started <= t <= job.ended], "nothing answered during the fine-tune"


@pytest.mark.slow
def test_in_a_real_browser(tmp_path):
    """The README's launch command in its own process, driven by a real browser as a user would."""
    import subprocess
    import sys

    from conftest import require_chromium

    chromium = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    app = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--out", str(tmp_path / "out")],
                           cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _get(url)[0] == 200:
                    break
            except OSError:  # not listening yet
                pass
            assert app.poll() is None and time.time() < deadline, "python -m app did not start serving"
            time.sleep(0.5)
        _drive(chromium, url, expect, sync_playwright, tmp_path / "report.html")
    finally:
        app.terminate()
        app.wait(30)


def _drive(chromium, url, expect, sync_playwright, report: Path):
    from bench.app_latency import CHROMIUM_ARGS, add_model

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_role("tab", name="Compare")).to_be_visible(timeout=30_000)
            page.get_by_label("Prompt", exact=True).fill("a small blue triangle on the top on a white background")
            expect(page.locator("#compare-models .token")).to_have_count(2)  # the base and the shipped DDE LoRA
            add_model(page, "shipped Diffusion-DPO LoRA")
            expect(page.locator("#compare-models .token")).to_have_count(3)
            page.locator("#generate").click()
            for k in range(3):  # base, DDE and Diffusion-DPO: three labelled columns
                expect(page.locator(f"#gallery-{k} img").first).to_be_visible(timeout=120_000)
            expect(page.locator("#compare-info")).to_contain_text("same noise", timeout=60_000)
            assert page.locator("#gallery-0 img").count() == 4
            expect(page.locator("#divergence-plot .js-plotly-plot").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
            page.locator("#compare-report").click()
            link = page.locator("#compare-report-file a").first
            expect(link).to_be_visible(timeout=60_000)
            with page.expect_download() as download:
                link.click()
            download.value.save_as(report)

            page.get_by_role("tab", name="Credit assignment").click()
            expect(page.locator("#credit-plot .js-plotly-plot").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("peak t")).to_be_visible()
            expect(page.locator("#calibration-plot .js-plotly-plot").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "credit.png"), full_page=True)

            page.get_by_role("tab", name="Estimation error").click()  # shows the shipped curves on first open
            expect(page.locator("#estimation-plot .js-plotly-plot").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "estimation.png"), full_page=True)

            page.get_by_role("tab", name="Evaluate").click()  # shows the last shipped evaluation
            expect(page.locator("#evaluate-summary")).to_contain_text("win rate vs base", timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "evaluate.png"), full_page=True)

            page.get_by_role("tab", name="Fine-tune").click()
            page.get_by_label("Steps", exact=True).fill("5")
            page.get_by_label("Pairs per step", exact=True).fill("4")
            page.locator("#start-finetune").click()
            expect(page.locator("#finetune-status")).to_contain_text("finished", timeout=240_000)
            expect(page.locator("#finetune-status")).to_contain_text("now a model choice")
            page.screenshot(path=str(SCREENSHOTS / "finetune.png"), full_page=True)

            offline = browser.new_page()  # the downloaded report opens on its own, plots and images inline
            offline.goto(report.as_uri())
            expect(offline.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            assert offline.locator("img").count() >= 12
        finally:
            browser.close()
    assert all((SCREENSHOTS / f"{n}.png").stat().st_size > 10_000
               for n in ("compare", "credit", "estimation", "evaluate", "finetune"))
