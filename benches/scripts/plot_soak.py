#!/usr/bin/env python3
"""Plots a soak CSV (from soak.py): server RSS, open descriptors and the loads' p99 over time.

    benches/scripts/plot_soak.py [benches/results/soak.csv] [-o benches/results/soak.png]

Needs matplotlib (e.g. `python3 -m venv /tmp/plot && /tmp/plot/bin/pip install matplotlib`).
"""

import argparse
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv", nargs="?", default=os.path.join(RESULTS, "soak.csv"))
    p.add_argument("-o", "--out", default=os.path.join(RESULTS, "soak.png"))
    args = p.parse_args()
    with open(args.csv) as f:
        rows = list(csv.DictReader(f))
    t = [int(r["t_s"]) / 60 for r in rows]
    series = [
        ("server RSS (MiB)", [int(r["rss_kib"]) / 1024 for r in rows]),
        ("server open descriptors", [int(r["fds"]) for r in rows]),
        ("load p99 (µs, worst run per sample)",
         [float(r["p99_us"]) if r["p99_us"] else float("nan") for r in rows]),
    ]
    fig, axes = plt.subplots(len(series), 1, sharex=True, figsize=(8, 7))
    for ax, (label, ys) in zip(axes, series):
        ax.plot(t, ys, marker=".")
        ax.set_ylabel(label, fontsize=8)
        finite = [y for y in ys if y == y]  # drop NaN (a window without a load run)
        ax.set_ylim(0, max(finite, default=1) * 1.25 or 1)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("chi serve soak: repeated short chi load runs with connection churn")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
