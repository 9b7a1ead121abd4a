#!/usr/bin/env python3
"""Draws chi's advantage over each peer from pool_bench's JSON as one PNG.

    python3 benches/scripts/plot.py target/bench-results/thread_pool.json target/bench-results/thread_pool.png

One panel per headline metric; each bar is how many times better chi's median is than the
peer's (peer/chi for lower-is-better metrics, chi/peer for higher-is-better ones), on a log
scale with the break-even line at 1: bars right of it are peers chi beats.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

HEADLINE = [
    ("tiny_tasks", "tasks_per_s", "1 tiny tasks: throughput"),
    ("round_trip", "p50_us", "2 round trip: p50 latency"),
    ("round_trip", "p99_us", "2 round trip: p99 latency"),
    ("cpu_tasks", "x_ideal", "3 50 µs tasks: wall / ideal"),
    ("multi_submit", "tasks_per_s", "4 4 submitters: throughput"),
]


def advantages(results, scenario, metric):
    """[(peer, times chi is better)] for one metric, skipping zero medians."""
    rows = [r for r in results if r["scenario"] == scenario and r["metric"] == metric]
    chi = next((r["median"] for r in rows if r["peer"] == "chi"), None)
    if not chi:
        return []
    out = []
    for r in rows:
        if r["peer"] == "chi" or not r["median"]:
            continue
        adv = chi / r["median"] if r["higher_is_better"] else r["median"] / chi
        out.append((r["peer"], adv))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py RESULTS.json OUT.png")
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    panels = [(title, advantages(doc["results"], s, m)) for s, m, title in HEADLINE]
    panels = [(t, a) for t, a in panels if a]
    if not panels:
        sys.exit("plot.py: no chi results to plot")

    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.1 + 0.45 * sum(len(a) for _, a in panels)), squeeze=False)
    for ax, (title, adv) in zip(axes[:, 0], panels):
        peers = [p for p, _ in adv][::-1]
        values = [v for _, v in adv][::-1]
        colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
        ax.barh(peers, values, color=colors)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        lo, hi = min(values + [1.0]), max(values + [1.0])
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}×", va="center", fontsize=8)
        ax.set_title(title, fontsize=10, loc="left")
        ax.tick_params(axis="both", labelsize=8)
    p = doc.get("params", {})
    fig.suptitle(
        f"chi vs peers, {p.get('workers', '?')} workers: times better than the peer (> 1 = chi better)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    print(f"wrote {sys.argv[2]}", file=sys.stderr)


if __name__ == "__main__":
    main()
