"""A bounded load test of the app on 127.0.0.1: several clients send Compare requests (and a few
hostile ones) for a fixed time; prints answered / refused / errors, latency percentiles and the
server process's memory before and after.

    python -m bench.app_load [--clients 8] [--seconds 60]

Every model request goes through the one compute lane, so latency grows with the number of
clients while the server keeps answering: the numbers show how much.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import tempfile
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "a big red circle on the left on a black background"


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.app_load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps per Compare (2 images x 2 models)")
    args = ap.parse_args(argv)
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from app.__main__ import launch
    from app.main import build_app
    from app.runtime import Runtime
    from bench.app_latency import free_port
    from bench.common import machine

    runtime = Runtime(out=tempfile.mkdtemp(prefix="dde-app-load-"))
    demo = build_app(runtime)
    port = free_port()
    launch(demo, runtime, port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    runtime.lane.run("wait for the warm-up", lambda: None)
    before = rss_mib()
    latencies, refused, errors, lock = [], [0], [], threading.Lock()
    stop = time.time() + args.seconds

    def client_loop(k: int) -> None:
        client, rng = Client(url, verbose=False), random.Random(k)
        while time.time() < stop:
            hostile = rng.random() < 0.2  # a request the app must refuse with a message
            request = ((PROMPT, "", rng.randrange(1000), 10**6 if hostile else args.steps, 2.0, 2, ["base", "dde"]))
            t0 = time.time()
            try:
                client.predict(*request, api_name="/compare")
                with lock:
                    latencies.append(time.time() - t0)
            except AppError as err:  # the app's own message: a refusal, unless it reports a failure
                with lock:
                    (errors.append(str(err)) if "the request failed" in str(err)
                     else refused.__setitem__(0, refused[0] + 1))
            except Exception as err:  # the connection, the client: an error
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 600)
    after = rss_mib()
    demo.close()
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    result = {"clients": args.clients, "seconds": args.seconds, "answered": len(latencies), "refused": refused[0],
              "errors": len(errors), "p50_s": statistics.median(latencies) if latencies else float("nan"),
              "p95_s": q[18], "rss_before_mib": before, "rss_after_mib": after}
    print(f"machine: {machine()}")
    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
    if errors:
        print("errors:", errors[:3])
    return result


if __name__ == "__main__":
    main()
