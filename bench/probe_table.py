"""Markdown tables of toy fine-tunes' own checkpoint logs: the judge probe (fixed training-split
prompts, same noise at every checkpoint: judge.jsonl) and the held-back pairs (val.jsonl), one
row per run. For comparing settings tried by hand with ``python -m dde.train ... --set ...``.

    python -m bench.probe_table runs/diag/dpo-lr3e-4 runs/diag/dde-lr3e-4 [--name LABEL ...]
"""

from __future__ import annotations

import argparse

from bench.common import md_table
from dde.run import RunDir


def tables(runs: list[RunDir], names: list[str]) -> str:
    judge = {name: {r["step"]: r for r in run.rows("judge")} for name, run in zip(names, runs)}
    val = {name: {r["step"]: r for r in run.rows("val")} for name, run in zip(names, runs)}
    steps = sorted({s for rows in judge.values() for s in rows} | {s for rows in val.values() for s in rows})
    if not steps:
        raise SystemExit("these runs have no judge.jsonl or val.jsonl rows (toy runs with judge_prompts > 0 log them)")

    def table(title: str, logs: dict, cell) -> str:
        cols = [s for s in steps if any(s in rows for rows in logs.values())]
        return md_table([{title: name, **{f"step {s}": cell(rows[s]) if s in rows else "" for s in cols}}
                         for name, rows in logs.items()])

    prompts = {len(r["scores"]) for rows in judge.values() for r in rows.values()}
    judged = table(f"judge probe ({'/'.join(map(str, sorted(prompts)))} prompts)", judge, lambda r: f"{r['judge']:.3f}")
    held = table("held-back pairs: loss / implicit accuracy", val,
                 lambda r: f"{r['val_loss']:.3f} / {r['val_implicit_acc']:.0%}")
    return f"{judged}\n{held}".rstrip("\n")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.probe_table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders")
    ap.add_argument("--name", action="append", default=None, help="a label per run (default: the folder name)")
    args = ap.parse_args(argv)
    if args.name is not None and len(args.name) != len(args.runs):
        ap.error("give one --name per run, or none")
    runs = [RunDir(p) for p in args.runs]
    for run in runs:
        if not RunDir.is_run(run.path):
            ap.error(f"{run.path} is not a run folder")
    text = tables(runs, args.name or [run.path.name for run in runs])
    print(text)
    return text


if __name__ == "__main__":
    main()
