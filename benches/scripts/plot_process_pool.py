"""Bar chart of chi's process pool against Python's executors, from process_pool.json.

Usage: python3 benches/scripts/plot_process_pool.py target/bench-results/process_pool.json out.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (label, key, higher_is_better)
METRICS = [
    ("start-up to first result", "startup_ms", False),
    ("idle round trip p50", "round_trip_us", False),
    ("tiny tasks, submit", "tiny_submit_per_s", True),
    ("tiny tasks, chunked map", "tiny_map_per_s", True),
    ("50 µs tasks, submit (× ideal)", "cpu_submit_x_ideal", False),
    ("50 µs tasks, chunked (× ideal)", "cpu_map_x_ideal", False),
    ("RSS per idle worker", "idle_worker_rss_kib", False),
]


def main() -> None:
    data = json.load(open(sys.argv[1]))
    chi = data["chi"]
    labels, ppe, mpp = [], [], []
    for label, key, higher in METRICS:
        c = chi.get(key)
        a = data.get("python_ppe", {}).get(key)
        b = data.get("python_mp_pool", {}).get(key)
        if c is None or a is None or b is None:
            continue
        # chi's advantage: > 1 means chi is better, whichever way the metric points.
        labels.append(label)
        ppe.append(c / a if higher else a / c)
        mpp.append(c / b if higher else b / c)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ys = range(len(labels))
    ax.barh([y + 0.2 for y in ys], ppe, height=0.4, label="vs ProcessPoolExecutor")
    ax.barh([y - 0.2 for y in ys], mpp, height=0.4, label="vs multiprocessing.Pool")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels)
    ax.set_xlabel("chi's advantage (× better, log scale; 1 = equal)")
    ax.set_title("chi::ProcessPool vs Python, 2 workers, same run")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
