"""The launched app: every endpoint through gradio_client, file serving, and a real browser
(Debian's chromium driven by Playwright) doing what a user does."""

import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.__main__ import launch
from app.main import build_app
from app.runtime import Runtime
from dde.backends.toy import ASSETS

PROMPT = "a big red circle on the left on a black background"
SCREENSHOTS = Path(os.environ.get("DDE_SCREENSHOTS", Path(__file__).resolve().parents[1] / "outputs" / "screenshots"))


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


def test_every_tab_has_its_endpoint(client):
    named = set(client.view_api(return_format="dict")["named_endpoints"])
    assert named == {"/compare", "/credit_plot", "/empirical_credit", "/estimation", "/finetune", "/cancel_finetune",
                     "/evaluate"}


def test_compare_endpoint(client):
    base, tuned, scores, base_strip, tuned_strip, info = client.predict(
        PROMPT, "", 3, 4, 2.0, 2, "tuned", api_name="/compare")
    assert len(base) == len(tuned) == 2
    assert all(Path(item["image"]).is_file() for item in base + tuned)
    assert base[0]["caption"].startswith("#1 seed 3: judge ")
    assert scores["headers"] == ["image", "seed", "judge base", "judge tuned"] and len(scores["data"]) == 2
    assert Path(base_strip).is_file() and Path(tuned_strip).is_file()
    assert "same noise" in info


def test_bad_input_is_a_message_and_the_server_stays_up(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        client.predict("  ", "", 0, 4, 2.0, 1, "tuned", api_name="/compare")
    with pytest.raises(AppError, match="outside the folders"):
        client.predict(PROMPT, "", 0, 4, 2.0, 1, "/etc/passwd", api_name="/compare")
    with pytest.raises(AppError, match="less than minimum value 1|steps"):
        client.predict("dpo", 500, 3e-4, 0, 2, 0, 1000, 1, 2, 0, api_name="/finetune")
    assert len(client.predict(PROMPT, "", 0, 2, 2.0, 1, "tuned", api_name="/compare")[0]) == 1


def test_credit_endpoints(client):
    fig, table = client.predict(["dpo", "dde-closed"], "scaled_linear (SD1.5 / SDXL)", 1000, False, False,
                                str(ASSETS / "toy-dde" / "runs" / "dde"), api_name="/credit_plot")
    assert fig["type"] == "plotly"
    assert "| dde-closed | 354 | 77.9% |" in table and "dde calibrated (dde)" in table
    fig = client.predict([str(ASSETS / "toy-dde" / "runs" / r) for r in ("dde", "dpo")], api_name="/empirical_credit")
    assert fig["type"] == "plotly"


def test_estimation_endpoint(client):
    fig, table = client.predict("base", 4, True, api_name="/estimation")
    assert fig["type"] == "plotly"
    assert "single-shot (measured)" in table["headers"] and len(table["data"]) == 10


def test_finetune_then_use_the_run(client, server):
    out = client.predict("dde", 500, 3e-4, 3, 2, 0, 1000, 1, 2, 0, api_name="/finetune")
    status, loss, acc, margin, cal, lora, *_ = out
    assert "finished" in status and loss["type"] == "plotly" and cal["type"] == "plotly"
    assert Path(lora).is_file() and lora.endswith("lora.safetensors")
    run_lora = next(v for k, v in server[1].tuned_choices() if k.startswith("run "))
    base, tuned, *_ = client.predict(PROMPT, "", 0, 2, 2.0, 1, run_lora, api_name="/compare")
    assert len(tuned) == 1
    # the run is now offered by the credit tab's menus of this session
    run = str(Path(run_lora).parents[1])
    _, table = client.predict(["dpo"], "linear (DDPM)", 1000, False, False, run, api_name="/credit_plot")
    assert f"dde calibrated ({Path(run).name})" in table
    assert client.predict([run], api_name="/empirical_credit")["type"] == "plotly"


def test_evaluate_endpoint(client):
    summary, fig, grid, csv = client.predict("held-out toy scenes", None, 3, ["base", "tuned"], ["judge"], 1, 3,
                                             api_name="/evaluate")
    assert summary["headers"][:3] == ["model", "n", "score"] and len(summary["data"]) == 2
    assert [row[0] for row in summary["data"]] == ["base model", "shipped DDE LoRA"]
    assert fig["type"] == "plotly" and len(grid) >= 2
    assert Path(csv).is_file()


def test_serves_no_files_outside_its_output_folder(server):
    url, _ = server
    for path in ("/etc/passwd", str(Path(__file__).resolve()), str(ASSETS / "toy-dde" / "lora.safetensors")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert err.value.code in (403, 404)


@pytest.mark.slow
def test_in_a_real_browser(server):
    from conftest import require_chromium

    chromium = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_role("tab", name="Compare")).to_be_visible(timeout=30_000)
            page.get_by_label("Prompt", exact=True).fill("a small blue triangle at the top on a white background")
            page.locator("#generate").click()
            for gallery in ("#base-gallery", "#tuned-gallery"):
                expect(page.locator(f"{gallery} img").first).to_be_visible(timeout=120_000)
            expect(page.locator("#compare-info")).to_contain_text("same noise", timeout=60_000)
            assert page.locator("#base-gallery img").count() >= 1
            page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)

            page.get_by_role("tab", name="Credit assignment").click()
            expect(page.locator("#credit-plot .js-plotly-plot").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("peak t")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "credit.png"), full_page=True)

            page.get_by_role("tab", name="Fine-tune").click()
            page.get_by_label("Steps", exact=True).fill("5")
            page.get_by_label("Pairs per step", exact=True).fill("4")
            page.locator("#start-finetune").click()
            expect(page.locator("#finetune-status")).to_contain_text("finished", timeout=240_000)
            expect(page.locator("#finetune-status")).to_contain_text("now a tuned choice")
            page.screenshot(path=str(SCREENSHOTS / "finetune.png"), full_page=True)
        finally:
            browser.close()
    assert all((SCREENSHOTS / f"{n}.png").stat().st_size > 10_000 for n in ("compare", "credit", "finetune"))


@pytest.mark.slow
def test_concurrent_clients_while_a_fine_tune_runs(server):
    """Three clients generate (distinct seeds) while a fine-tune trains: every request is answered
    with exactly what the same request gives alone."""
    import threading

    from gradio_client import Client

    url, rt = server
    alone = {seed: rt.compare(PROMPT, "", seed, 3, 2.0, 1, "tuned").scores for seed in range(6)}
    job = rt.submit({"variant": "dpo", "steps": 15, "batch_pairs": 4, "calibration_batches": 0, "lora_rank": 2})
    answers, errors = {}, []

    def user(seeds):
        client = Client(url, verbose=False)
        for seed in seeds:
            try:
                _, _, scores, *_ = client.predict(PROMPT, "", seed, 3, 2.0, 1, "tuned", api_name="/compare")
                answers[seed] = (scores, time.time())
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
    overlap = [t for _, t in answers.values() if job.started <= t <= job.ended]
    assert overlap, "no request was answered while the fine-tune ran"


def test_fuzzed_inputs_get_a_result_or_a_message_and_the_server_stays_up(client):
    import random

    from gradio_client.exceptions import AppError

    rng = random.Random(0)
    texts = ["", " ", "x" * 5000, "\U0001F642" * 300, "a big red circle \u202e on the left", "\x00", "null",
             "../../../../etc/passwd", "\uff41\uff42\uff43", "<script>alert(1)</script>", PROMPT]
    numbers = [-1, 0, 1, 3.5, 1e9, -1e9, 2**40, 25]
    endpoints = {
        "/compare": lambda: (rng.choice(texts), rng.choice(texts), rng.choice(numbers), rng.choice(numbers),
                             rng.choice([-5, 0, 2.0, 1e6]), rng.choice(numbers), rng.choice(texts + ["tuned"])),
        "/credit_plot": lambda: (rng.sample(["dpo", "dde", "window", "nope"], 2), rng.choice(texts),
                                 rng.choice(numbers), True, False, rng.choice(texts)),
        "/estimation": lambda: (rng.choice(texts + ["base"]), rng.choice([-4, 0, 3, 1e9]), True),
        "/evaluate": lambda: (rng.choice(["held-out toy scenes", "uploaded text file", "nope"]), None,
                              rng.choice([-1, 0, 1.5, 1e9]), [rng.choice(["base", "tuned", "/etc"])], ["judge"],
                              rng.choice([0, 9, 1.5]), rng.choice(numbers)),
        "/finetune": lambda: ("dpo", rng.choice([-1, 0, 1e12]), rng.choice([0, -1, 10]), rng.choice([0, 1.5, 1e9]),
                              rng.choice([0, 1e6]), 0, 1000, 1, rng.choice([0, 2**40]), 0),
    }
    answered = 0
    for _ in range(40):
        name = rng.choice(sorted(endpoints))
        args = endpoints[name]()
        try:
            client.predict(*args, api_name=name)
        except AppError as err:
            assert str(err).strip(), f"{name}{args}: an error without a message"
        except ValueError as err:  # refused by the client's own input checks before sending
            assert str(err).strip()
        answered += 1
    assert answered == 40
    assert len(client.predict(PROMPT, "", 0, 2, 2.0, 1, "tuned", api_name="/compare")[0]) == 1
