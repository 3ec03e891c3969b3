"""Latency of the app's interactive paths on the embedded models, end to end through the launched
app (HTTP, queue, image encoding) and in-process.

    python -m bench.app_latency [--repeats 5]

- First Compare after launch: the page is served, the lane warms the default models in the
  background, and the first Compare (4 images x 2 models x 25 DDIM steps) is timed on its own line.
  Target: under 5 s on 2 CPU cores.
- Compare, warm: the same request repeated; and three models (base, Diffusion-DPO, DDE).
- Credit plot: the credit-assignment handler for four variants (figure + mass table). Target:
  under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

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
    args = ap.parse_args(argv)
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
              + " (the first load includes importing the model libraries)")
    print(f"compare 4 images x 2 models x 25 steps, warm (gradio_client): {verdict(warm, args.compare_target)}")
    print(f"compare 4 images x {len(three)} models x 25 steps, warm:          {warm3:.3f} s")
    print(f"credit plot, in-process:                                  {verdict(credit, args.credit_target)}")
    print(f"credit plot through the app (gradio_client):              {verdict(http_credit, args.credit_target)}")
    return {"served_s": served, "first_compare_s": first, "compare_s": warm, "compare3_s": warm3,
            "credit_s": credit, "credit_http_s": http_credit}


if __name__ == "__main__":
    main()
