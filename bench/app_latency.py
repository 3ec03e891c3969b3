"""Latency of the app's interactive paths on the embedded models, end to end through the launched
app (HTTP, queue, image encoding) and in-process.

    python -m bench.app_latency [--repeats 5]

- First Compare after launch: the page is served, the lane warms the default models in the
  background, and the first Compare (4 images x 2 models x 25 DDIM steps) is timed on its own line.
  Target: under 5 s on 2 CPU cores.
- Compare, warm: the same request repeated; and three models (base, Diffusion-DPO, DDE).
- Credit plot: the credit-assignment handler for four variants (figure + mass table). Target:
  under 0.5 s.

    python -m bench.app_latency --browser [--repeats 3]

As a visitor sees it: chromium (Debian's, headless) already open, the README's launch command
(``python -m app``) started in its own process, the page opened as soon as it is served, the
page's default Compare (the base and the shipped DDE LoRA; ``--three`` adds the Diffusion-DPO LoRA),
Generate clicked ``--page-wait`` seconds after the page was served, timed until every image of every
column has loaded in the page; then the same with other seeds (warm). Needs chromium and the
``playwright`` package (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "a big red circle on the left on a black background"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.app_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compare-target", type=float, default=5.0)
    ap.add_argument("--credit-target", type=float, default=0.5)
    ap.add_argument("--page-wait", type=float, default=5.0,
                    help="seconds between the page being served and the first click (a visitor reading it)")
    ap.add_argument("--browser", action="store_true", help="launch python -m app and click in chromium (see above)")
    ap.add_argument("--three", action="store_true",
                    help="with --browser: add the Diffusion-DPO LoRA to the page's two default models")
    args = ap.parse_args(argv)
    if args.browser:
        return browser(args)
    from gradio_client import Client

    from app.__main__ import launch
    from app.main import build_app
    from app.runtime import Runtime
    from app.tabs.credit import DEFAULT_VARIANTS, credit_plot
    from bench.common import machine, median_seconds, verdict

    preset = "scaled_linear (SD1.5 / SDXL)"
    t0 = time.time()
    runtime = Runtime(out=tempfile.mkdtemp(prefix="dde-app-bench-"))
    demo = build_app(runtime)
    port = free_port()
    launch(demo, runtime, port=port, block=False)
    served = time.time() - t0
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        time.sleep(args.page_wait)
        two, g = ["base", "dde"], runtime.default_guidance  # the Compare tab's default scale
        t1 = time.time()
        client.predict(PROMPT, "", 0, 25, g, 4, two, api_name="/compare")
        first = time.time() - t1
        warm_task, warm_log = runtime.warm_task, list(runtime.warm_log)
        warm, _ = median_seconds(lambda: client.predict(PROMPT, "", 0, 25, g, 4, two, api_name="/compare"),
                                 args.repeats, warmup=0)
        three = [m for m in ("base", "dpo", "dde") if m in dict((v, k) for k, v in runtime.model_choices())]
        warm3, _ = median_seconds(lambda: client.predict(PROMPT, "", 0, 25, g, 4, three, api_name="/compare"),
                                  args.repeats)
        http_credit, _ = median_seconds(lambda: client.predict(DEFAULT_VARIANTS, preset, 1000, False, False, "",
                                                               api_name="/credit_plot"), 10)
    finally:
        demo.close()
    credit, _ = median_seconds(lambda: credit_plot(DEFAULT_VARIANTS, preset, 1000, False, False), 20)
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} (the app's default: PASSIVE)")
    print(f"compare requests: {PROMPT!r}, seed 0, guidance {g:g} (the model's default), every model sampled "
          "side by side (dde.backends.parallel.sample_side_by_side)")
    print(f"page served after launch:                                 {served:.2f} s")
    print(f"first compare after launch ({args.page_wait:g} s after the page), 4 x 2 x 25: "
          f"{verdict(first, args.compare_target)}")
    if warm_task is not None and warm_task.finished is not None:
        print(f"  the lane's warm-up ran {warm_task.started - t0:.2f} -> {warm_task.finished - t0:.2f} s after launch "
              f"(the click came at {t1 - t0:.2f} s): " + ", ".join(f"{what} {sec:.2f} s" for what, sec in warm_log)
)
    print(f"compare 4 images x 2 models x 25 steps, warm (gradio_client): {verdict(warm, args.compare_target)}")
    print(f"compare 4 images x {len(three)} models x 25 steps, warm:          {warm3:.3f} s")
    print(f"credit plot, in-process:                                  {verdict(credit, args.credit_target)}")
    print(f"credit plot through the app (gradio_client):              {verdict(http_credit, args.credit_target)}")
    return {"served_s": served, "first_compare_s": first, "compare_s": warm, "compare3_s": warm3,
            "credit_s": credit, "credit_http_s": http_credit}


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def add_model(page, label: str) -> None:
    """Pick one more model in Compare's model menu, as a visitor does."""
    page.locator("#compare-models input").click()
    page.get_by_role("option", name=label).click()
    page.keyboard.press("Escape")


def _served(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def browser(args) -> dict:
    from playwright.sync_api import expect, sync_playwright

    from bench.common import machine, verdict

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("--browser needs chromium (apt-get install -y chromium)")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    root = Path(__file__).resolve().parents[1]
    out = tempfile.mkdtemp(prefix="dde-app-bench-")
    with sync_playwright() as p:
        # the visitor's browser is open before the app starts
        chrome = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = chrome.new_page(viewport={"width": 1500, "height": 1100})
        t0 = time.time()
        app = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--out", out], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready: list[tuple[float, str]] = []  # when the app said whether its default models loaded
        tail: list[str] = []  # the app's last lines, shown if it fails

        def read_app_output():
            for line in app.stdout:
                tail[:] = [*tail[-40:], line.rstrip()]
                if "default models" in line.lower():
                    ready.append((time.time() - t0, line.strip()))

        threading.Thread(target=read_app_output, daemon=True).start()
        try:
            try:
                while not _served(url):
                    if app.poll() is not None or time.time() - t0 > 120:
                        raise SystemExit("python -m app did not start serving; its last lines:\n" + "\n".join(tail))
                    time.sleep(0.1)
                served = time.time() - t0
                page.goto(url, wait_until="domcontentloaded")
                expect(page.locator("#generate")).to_be_visible(timeout=60_000)
                shown = time.time() - t0
                page.get_by_label("Prompt", exact=True).fill(PROMPT)
                images = page.get_by_label("number input for Images per model", exact=True)
                images.fill("4")
                images.press("Tab")
                columns = 3 if args.three else 2
                if args.three:
                    add_model(page, "shipped Diffusion-DPO LoRA")
                expect(page.locator("#compare-models .token")).to_have_count(columns)
                time.sleep(max(0.0, t0 + served + args.page_wait - time.time()))

                def gallery_sources() -> list[str]:
                    return page.evaluate("n => [...Array(n).keys()].flatMap(k => "
                                         "[...document.querySelectorAll(`#gallery-${k} img`)].map(im => im.src))",
                                         columns)

                def click(seed: int) -> float:
                    page.get_by_label("Seed", exact=True).fill(str(seed))
                    before = gallery_sources()  # the new images must replace these (other seeds: other files)
                    t1 = time.time()
                    page.locator("#generate").click()
                    expect(page.locator("#compare-info")).to_contain_text(f"seeds {seed}..{seed + 3},",
                                                                          timeout=120_000)
                    page.wait_for_function("""([n, before]) => [...Array(n).keys()].every(k => {
                        const imgs = [...document.querySelectorAll(`#gallery-${k} img`)];
                        return imgs.length >= 4 && imgs.every(im => im.complete && im.naturalWidth > 0
                                                                    && !before.includes(im.src)); })""",
                                           arg=[columns, before], timeout=60_000)
                    return time.time() - t1

                clicked_at = time.time() - t0
                first = click(0)
                warm = sorted(click(10 * (k + 1)) for k in range(max(1, args.repeats)))
            finally:
                chrome.close()
        finally:
            app.terminate()
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
    median = warm[len(warm) // 2]
    print(f"machine: {machine()}; the app in its own process (python -m app), clicked in chromium")
    print(f"page served after launch (process start): {served:.2f} s; shown in chromium at {shown:.2f} s")
    print(f"first compare, clicked {clicked_at:.2f} s after launch ({args.page_wait:g} s after the page was served), "
          f"{'base + DDE + Diffusion-DPO' if columns == 3 else 'base + DDE'}, 4 x {columns} x 25, until every image "
          f"has loaded: {verdict(first, args.compare_target)}")
    for at, line in ready:
        print(f"  the app printed at {at:.2f} s after launch: {line}")
    print(f"compare, warm (median of {len(warm)}, other seeds):                   "
          f"{verdict(median, args.compare_target)}")
    return {"served_s": served, "shown_s": shown, "first_compare_s": first, "compare_s": median, "models": columns}


if __name__ == "__main__":
    main()
