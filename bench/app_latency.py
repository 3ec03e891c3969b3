"""Latency of the app's two interactive paths on the embedded models, in-process and end to end.

    python -m bench.app_latency [--repeats 5]

- Compare: 4 images x 2 models (base, shipped DDE LoRA) x 25 DDIM steps, judge scores and the x0
  strips included; measured through the runtime and through the launched app with gradio_client
  (HTTP, queue, image encoding). Target (issue 6): under 5 s on 2 CPU cores.
- Credit plot: the credit-assignment handler for four variants (figure + mass table). Target:
  under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "a big red circle on the left on a black background"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.app_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compare-target", type=float, default=5.0)
    ap.add_argument("--credit-target", type=float, default=0.5)
    args = ap.parse_args(argv)
    from gradio_client import Client

    from app.__main__ import launch
    from app.main import DEFAULT_VARIANTS, build_app, credit_plot
    from app.runtime import Runtime
    from bench.common import machine, median_seconds, verdict

    runtime = Runtime(out=tempfile.mkdtemp(prefix="dde-app-bench-"))
    compare = lambda: runtime.compare(PROMPT, "", 0, 25, 2.0, 4, "tuned")  # noqa: E731
    in_process, _ = median_seconds(compare, args.repeats)  # the warm-up loads both models
    preset = "scaled_linear (SD1.5 / SDXL)"
    credit, _ = median_seconds(lambda: credit_plot(DEFAULT_VARIANTS, preset, 1000, False, False), 20)
    demo = build_app(runtime)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, runtime, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        http, _ = median_seconds(lambda: client.predict(PROMPT, "", 0, 25, 2.0, 4, "tuned", api_name="/compare"),
                                 args.repeats)
        http_credit, _ = median_seconds(lambda: client.predict(DEFAULT_VARIANTS, preset, 1000, False, False, "",
                                                               api_name="/credit_plot"), 10)
    finally:
        demo.close()
    print(f"machine: {machine()}")
    print(f"compare 4 images x 2 models x 25 steps, in-process: {verdict(in_process, args.compare_target)}")
    print(f"compare through the app (gradio_client):        {verdict(http, args.compare_target)}")
    print(f"credit plot, in-process:                         {verdict(credit, args.credit_target)}")
    print(f"credit plot through the app (gradio_client):     {verdict(http_credit, args.credit_target)}")
    return {"compare_s": in_process, "compare_http_s": http, "credit_s": credit, "credit_http_s": http_credit}


if __name__ == "__main__":
    main()
