"""Command line: ``python -m rlbench [--quick] [--subjects ...] [--sections ...] [--out DIR] [--doc PATH]``.

Writes ``<out>/results.json``; with ``--doc`` also the Markdown report and its
PNG chart (``--chart``, default: the doc's name with .png). Prints the
target lines (PASS / MISS / NOT RUN) and, where a target is missed, the
profile of our hooks. Exit status 0 unless the run itself failed: a MISS is
a finding, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from rlbench import report, runner
from rlbench.subjects import SUBJECTS


def _csv(choices: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return items

    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rlbench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-run sizes (about 1-2 minutes)")
    ap.add_argument("--subjects", type=_csv(SUBJECTS), default=SUBJECTS, help=f"default: {','.join(SUBJECTS)}")
    ap.add_argument("--sections", type=_csv(runner.SECTIONS), default=runner.SECTIONS,
                    help=f"default: {','.join(runner.SECTIONS)}")  # fmt: skip
    ap.add_argument("--rounds", type=int, help="override the number of latency rounds")
    ap.add_argument("--batch", type=int, help="override the calls per latency batch")
    ap.add_argument("--out", type=Path, default=Path("bench/out"), help="directory for results.json")
    ap.add_argument("--doc", type=Path, help="write the Markdown report here (e.g. docs/benchmarks.md)")
    ap.add_argument("--chart", type=Path, help="PNG chart path (default: the doc's path with .png)")
    ap.add_argument("--command", default="", help="the command line to print in the doc's method section")
    args = ap.parse_args(argv)

    settings = runner.Settings.quick() if args.quick else runner.Settings()
    overrides = {k: v for k, v in (("rounds", args.rounds), ("batch", args.batch)) if v is not None}
    if any(v < 1 for v in overrides.values()):
        ap.error("--rounds and --batch must be at least 1")
    if overrides:
        settings = dataclasses.replace(settings, **overrides)

    results = asyncio.run(runner.run(settings, args.subjects, args.sections))
    results["mode"] = "quick" if args.quick else "full"
    results["command"] = args.command or "python -m rlbench " + " ".join(argv if argv is not None else sys.argv[1:])

    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "results.json"
    results["results_path"] = str(out_json)
    out_json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    runner.log(f"wrote {out_json}")

    print(report.summary_text(results))
    if args.doc is not None:
        chart = args.chart or args.doc.with_suffix(".png")
        report.write(results, args.doc, chart)
        runner.log(f"wrote {args.doc} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
