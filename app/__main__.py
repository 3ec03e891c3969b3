"""python -m app [--host 127.0.0.1] [--port N] [--share] [--auth user:password]
              [--backend toy|sd|sdxl] [--model HUB_ID_OR_DIR] [--tuned LORA_OR_RUN] [--data PAIRS]
              [--scorer NAME[=PATH]] [--allow DIR] [--out DIR] [--device cpu|cuda]

Examples:
    python -m app                                      # the embedded world, on http://127.0.0.1:7860
    python -m app --backend sd --model stable-diffusion-v1-5/stable-diffusion-v1-5 --tuned runs/sd15-lora \\
        --scorer pickscore=/models/PickScore_v1 --scorer hps=/models/HPS_v2_compressed.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The app shares the machine with the browser that shows it. torch's OpenMP threads spin while they
# wait by default; beside one busy core 4 toy images x 25 steps took 11.1 s instead of 2.9 s, with
# passive waiting 5.5 s (3.6 s alone): `[OMP_WAIT_POLICY=PASSIVE] python -m bench.sampling
# [--busy-core]`. It must be set before torch loads; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
MAX_UPLOAD = "2mb"  # prompt files: 2 MB is tens of thousands of prompts, far above what one request may cost


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app", description="The DDE app (Gradio).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link (off by default)")
    parser.add_argument("--auth", default=None, help="basic auth as user:password")
    parser.add_argument("--backend", choices=["toy", "sd", "sdxl"], default="toy",
                        help="toy: the embedded world (default); sd: Stable Diffusion 1.5; sdxl")
    parser.add_argument("--model", default=None,
                        help="base model: toy model dir, or an SD/SDXL hub id or local diffusers dir")
    parser.add_argument("--tuned", default=None, help="default tuned model: a LoRA .safetensors or a run folder "
                        "(toy default: the shipped DDE LoRA)")
    parser.add_argument("--data", default=None, help="preference pairs for fine-tunes (default: the shipped toy pairs)")
    parser.add_argument("--scorer", action="append", default=None, metavar="NAME[=PATH]",
                        help="scorer for Compare/Evaluate: judge, clip, hps, pickscore (repeatable; toy default judge)")
    parser.add_argument("--allow", action="append", default=[], metavar="DIR",
                        help="a folder whose models/runs may be opened from the UI (repeatable)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "app"),
                        help="the app's output folder (runs, evaluations); the only folder it serves files from")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available for sd)")
    parser.add_argument("--monitoring", action="store_true", help="turn on Gradio's monitoring routes (off by default)")
    args = parser.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth must look like user:password")
    if args.backend != "toy" and not args.model:
        parser.error(f"--backend {args.backend} needs --model (a hub id or a local diffusers folder)")
    return args


def make_runtime(args: argparse.Namespace):
    from app.runtime import Runtime

    scorers = None
    if args.scorer:
        scorers = dict((s.split("=", 1) + [None])[:2] for s in args.scorer)
    tuned = args.tuned
    if tuned and tuned not in ("tuned", "dde", "dpo"):
        tuned = str(Path(tuned).resolve())
        args.allow.append(tuned if Path(tuned).is_dir() else str(Path(tuned).parent))
    return Runtime(backend=args.backend, model=args.model, tuned=tuned, out=args.out, data=args.data,
                   scorers=scorers, allow=args.allow, device=args.device)


def launch(demo, runtime, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, auth=None,
           block: bool = True, monitoring: bool = False):
    """Launch with the app's policy: files served only from the output folder and never as active
    content, only the documented endpoints callable by name, monitoring off unless asked for, small
    uploads. The lane starts loading the default models as the server starts (importing the model
    libraries takes about 5 s; the page does not wait for it), so the first Compare finds them ready
    or nearly so."""
    from starlette.middleware import Middleware

    from app.main import API_NAMES, CSS
    from app.security import Hardening

    warm = runtime.warm()  # on the lane's thread, beside the server's start-up
    if block:
        warm.future.add_done_callback(lambda f: print(_warm_line(runtime, warm), flush=True))
    result = demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=share, auth=auth, allowed_paths=[str(runtime.out)],
        prevent_thread_lock=True, show_error=True, enable_monitoring=monitoring, max_file_size=MAX_UPLOAD,
        app_kwargs={"middleware": [Middleware(Hardening, api_names=API_NAMES)]}, css=CSS, quiet=not block)
    if block:
        demo.block_thread()
    return result


def _warm_line(runtime, task) -> str:
    if task.future.cancelled():
        return "The default models were not loaded (the warm-up was cancelled)."
    if task.future.exception() is not None:
        return f"The default models did not load: {task.future.exception()}"
    steps = ", ".join(f"{what} {seconds:.1f} s" for what, seconds in runtime.warm_log)
    return f"Default models ready in {task.finished - task.started:.1f} s ({steps})."


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    # Gradio's cache of files shown in the UI lives inside the output folder too
    os.environ.setdefault("GRADIO_TEMP_DIR", str(out / "gradio-cache"))
    from app.main import build_app

    runtime = make_runtime(args)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    launch(build_app(runtime), runtime, host=args.host, port=args.port, share=args.share, auth=auth,
           monitoring=args.monitoring)


if __name__ == "__main__":
    main()
