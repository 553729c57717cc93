"""A training run that was resumed in legs, summarised leg by leg from its ``log.jsonl``.

    python benchmarks/run_legs.py RUN/log.jsonl END [END ...]     # each leg's last sample count, in order

The README's table of the fifth candidate run takes its speed, loss and codes' cosine columns from this
(its ``candidate-run/`` snapshot holds the whole run's log: ``benchmarks/run_transfer.py unpack``).

Why the leg ends are given: the log has one line per ``log_every`` samples and does not mark a resume, so
the sample counts at which each leg stopped (the state each snapshot holds) are what split it. A line
belongs to the leg it was written in (its ``samples`` at most that leg's end). The speed is the range over
the leg's lines at the run's top resolution, less a resumed leg's first line: that line's interval spans the
resume (loading, drawing the data, and with ``compile`` the minutes of compiling), so it reads slow for a
reason other than the training step. The reconstruction loss (``recon``) and the faces' codes' cosine
(``real_code_cos``, the mean cosine between different real images' codes: near 1 is a collapse) are the
ranges over all the leg's lines. A metric's result, which the trainer writes to the same log (a line with a
``metric`` key), is not one of those lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{number}: not a JSON line ({e.msg})")
    return rows


def legs(rows: list[dict], ends: list[int]) -> list[dict]:
    """Per leg: its sample range, the number of lines, and (low, high) of speed, loss and codes' cosine."""
    if ends != sorted(ends) or len(set(ends)) != len(ends):
        raise SystemExit(f"leg ends must increase: {ends}")
    top = max(r["resolution"] for r in rows)
    out, start = [], 0
    for index, end in enumerate(ends):
        lines = [r for r in rows if start < r["samples"] <= end]
        if not lines:
            raise SystemExit(f"no log line between {start:,} and {end:,} samples")
        timed = [r for r in lines[(1 if index else 0):] if r["resolution"] == top]
        out.append({
            "from": start, "to": end, "lines": len(lines),
            "images_per_s": span(r.get("images_per_s") for r in timed),
            "recon": span(r.get("recon") for r in lines),
            "real_code_cos": span(r.get("real_code_cos") for r in lines),
        })
        start = end
    return out


def span(values) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]  # a log from before a field existed lacks it
    return (min(values), max(values)) if values else None


def show(r: tuple[float, float] | None, digits: int) -> str:
    return "—" if r is None else f"{r[0]:.{digits}f}–{r[1]:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log", type=Path)
    p.add_argument("ends", type=int, nargs="+", help="each leg's last sample count, in order")
    a = p.parse_args()
    if not a.log.is_file():
        raise SystemExit(f"{a.log}: no such file")
    rows = [r for r in read_log(a.log) if "metric" not in r]  # a metric's result line is not a loss reading
    if not rows:
        raise SystemExit(f"{a.log}: no log lines")
    print("| leg | samples | lines | images/s at top res | recon loss | codes' cosine |")
    print("|---|---|---|---|---|---|")
    for n, leg in enumerate(legs(rows, a.ends), 1):
        print(f"| {n} | {leg['from']:,}–{leg['to']:,} | {leg['lines']} | {show(leg['images_per_s'], 1)} "
              f"| {show(leg['recon'], 2)} | {show(leg['real_code_cos'], 2)} |")


if __name__ == "__main__":
    main()
