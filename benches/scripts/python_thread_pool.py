#!/usr/bin/env python3
"""Python's concurrent.futures.ThreadPoolExecutor on the scenarios of pool_bench.

Same scenarios, sizes, checks and metric names as `benches/src/bin/pool_bench.rs` (see the
scenario docs in `benches/src/lib.rs`); prints a JSON document that `pool_bench --python FILE`
merges in as the `python` peer. Progress goes to stderr, the JSON to stdout (or --out).

    python3 benches/scripts/python_thread_pool.py [--quick] [--reps N] [--workers N] [--out FILE]

Scenarios:
  tiny_tasks    one thread submits N tasks x + 1, keeps every future, then takes result() in order
  round_trip    submit one task, wait for its result, repeat; p50/p99 of each round trip
  cpu_tasks     N tasks of ~50 us CPU each (a calibrated spin loop), wall time / ideal
  multi_submit  4 submitter threads submit tiny tasks and keep their futures; the main thread
                collects them all at the end
  idle_cpu      new executor, one task, then process CPU ticks over an idle window
  round_trip_idle  as round_trip, but sleep 1 ms before each submit (the workers are asleep)
Both round-trip scenarios also report the process CPU time per round trip (cpu_us).
"""

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import threading
import time

MASK = 0xFFFFFFFFFFFFFFFF
PEER = "python"


def sizes(quick, workers):
    """Problem sizes, named and valued as in pool_bench (`--quick` divides by 10)."""
    div = 10 if quick else 1
    return {
        "tiny_n": 200_000 // div,
        "round_trips": 20_000 // div,
        "cpu_tasks": 20_000 // div,
        "cpu_task_us": 50,
        "submitters": 4,
        "per_submitter": 250_000 // div,
        "idle_window_ms": 2_000 // div,
        "idle_round_trips": 2_000 // div,
        "idle_gap_us": 1_000,
        "workers": workers,
    }


def inc(x):
    return x + 1


def new_pool(workers):
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers)


def warm_up(ex, workers):
    """Every worker started (they meet at a barrier), 100 round trips run off the calling
    thread, then a batch of tiny tasks. False if a check failed."""
    barrier = threading.Barrier(workers, timeout=5)

    def meet():
        try:
            barrier.wait()
            return True
        except threading.BrokenBarrierError:
            return False

    ok = all(f.result() for f in [ex.submit(meet) for _ in range(workers)])
    caller = threading.get_ident()
    for _ in range(100):
        ok = ok and ex.submit(threading.get_ident).result() != caller
    tiny_tasks(ex, 2_000)
    return ok


# ----- scenarios -----


def tiny_tasks(ex, n):
    start = time.perf_counter()
    futures = [ex.submit(inc, x) for x in range(n)]
    total = 0
    for f in futures:
        total += f.result()
    elapsed = time.perf_counter() - start
    assert total == n * (n + 1) // 2, "tiny tasks: wrong sum"
    return elapsed


def round_trips(ex, iters, gap_s=0.0):
    out = []
    clock = time.perf_counter_ns
    for i in range(iters):
        if gap_s:
            time.sleep(gap_s)
        start = clock()
        v = ex.submit(inc, i).result()
        out.append(clock() - start)
        assert v == i + 1, "round trip: wrong value"
    return out


def percentile(sorted_ns, p):
    """Nearest-rank quantile, as pool_bench computes it."""
    rank = -(-int(p * 1_000_000) * len(sorted_ns) // 1_000_000)  # ceil(p * n)
    return sorted_ns[min(max(rank, 1), len(sorted_ns)) - 1]


def spin(iters):
    """The same multiply-xorshift chain as chi_bench::scenario::spin."""
    x = 0x9E3779B97F4A7C15
    for i in range(iters):
        x = (x * 0x5851F42D4C957F2D + i) & MASK
        x ^= x >> 33
    return x


def measure_spin(iters):
    """Cost of one task: minimum over 7 batches of 20 (interference only adds time)."""
    best = None
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(20):
            spin(iters)
        per = (time.perf_counter() - start) / 20
        best = per if best is None else min(best, per)
    return best


def calibrate(target_s):
    iters = 10
    took = 0.0
    while True:
        start = time.perf_counter()
        spin(iters)
        took = time.perf_counter() - start
        if took >= 0.002:
            break
        iters *= 2
    iters = max(1, int(iters * target_s / took))
    for _ in range(2):
        iters = max(1, int(iters * target_s / measure_spin(iters)))
    return iters, measure_spin(iters)


def cpu_tasks(ex, n, iters):
    start = time.perf_counter()
    futures = [ex.submit(spin, iters) for _ in range(n)]
    count = sum(1 for f in futures if f.result() is not None)
    elapsed = time.perf_counter() - start
    assert count == n, "cpu tasks: lost a task"
    return elapsed


def multi_submit(ex, submitters, per):
    gate = threading.Barrier(submitters + 1)
    batches = [None] * submitters

    def submitter(slot):
        gate.wait()
        batches[slot] = [ex.submit(inc, x) for x in range(per)]

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(submitters)]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    total = 0
    for futures in batches:
        for f in futures:
            total += f.result()
    elapsed = time.perf_counter() - start
    assert total == submitters * (per * (per + 1) // 2), "multi submit: wrong sum"
    return elapsed


# ----- idle CPU, read from /proc as pool_bench does -----


def process_ticks():
    with open("/proc/self/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 1 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def thread_counters():
    """tid -> (ns on CPU, context switches) for every thread but the calling one."""
    me = threading.get_native_id()
    out = {}
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        if tid == me:
            continue
        try:
            with open(f"/proc/self/task/{name}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/self/task/{name}/status") as f:
                switches = sum(
                    int(line.split()[1])
                    for line in f
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
                )
        except (OSError, ValueError, IndexError):
            continue  # the thread exited meanwhile
        out[tid] = (ns, switches)
    return out


def idle_cpu(ex, window_s):
    assert ex.submit(inc, 41).result() == 42
    threads0 = thread_counters()
    ticks0 = process_ticks()
    time.sleep(window_s)
    ticks1 = process_ticks()
    threads1 = thread_counters()
    cpu_ns = wakeups = 0
    for tid, (ns, sw) in threads1.items():
        ns0, sw0 = threads0.get(tid, (0, 0))
        cpu_ns += max(0, ns - ns0)
        wakeups += max(0, sw - sw0)
    return {"ticks": ticks1 - ticks0, "cpu_us": cpu_ns / 1e3, "wakeups": wakeups}


# ----- driver -----


def run_one(name, p, spin_iters, spin_per_task):
    workers = p["workers"]
    ex = new_pool(workers)
    try:
        warm_ok = True
        if name != "idle_cpu":
            warm_ok = warm_up(ex, workers)
        if name == "tiny_tasks":
            metrics = {"tasks_per_s": p["tiny_n"] / tiny_tasks(ex, p["tiny_n"])}
        elif name in ("round_trip", "round_trip_idle"):
            idle = name == "round_trip_idle"
            n = p["idle_round_trips"] if idle else p["round_trips"]
            cpu0 = time.process_time()
            rt = sorted(round_trips(ex, n, p["idle_gap_us"] / 1e6 if idle else 0.0))
            cpu = time.process_time() - cpu0
            metrics = {"p50_us": percentile(rt, 0.50) / 1e3, "p99_us": percentile(rt, 0.99) / 1e3,
                       "cpu_us": cpu * 1e6 / n}
        elif name == "cpu_tasks":
            wall = cpu_tasks(ex, p["cpu_tasks"], spin_iters)
            ideal = spin_per_task * p["cpu_tasks"] / workers
            metrics = {"x_ideal": wall / ideal, "wall_ms": wall * 1e3}
        elif name == "multi_submit":
            total = p["submitters"] * p["per_submitter"]
            metrics = {"tasks_per_s": total / multi_submit(ex, p["submitters"], p["per_submitter"])}
        else:
            metrics = idle_cpu(ex, p["idle_window_ms"] / 1e3)
    finally:
        ex.shutdown(wait=True)
    return metrics, warm_ok


SCENARIOS = ["tiny_tasks", "round_trip", "cpu_tasks", "multi_submit", "idle_cpu", "round_trip_idle"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="sizes / 10, 2 repetitions: a smoke test")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 5, 2 with --quick)")
    ap.add_argument("--workers", type=int, default=2, help="executor max_workers (default 2)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    ap.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    # Flags of pool_bench that mean nothing here, accepted so one command line serves both.
    ap.add_argument("--peers", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    reps = max(1, args.reps if args.reps is not None else (2 if args.quick else 5))
    p = sizes(args.quick, args.workers)
    chosen = [s for s in args.scenarios.replace("-", "_").split(",") if s]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")

    print(f"calibrating the {p['cpu_task_us']} us task...", file=sys.stderr)
    spin_iters, spin_per_task = calibrate(p["cpu_task_us"] / 1e6)
    print(f"  {spin_iters} rounds, {spin_per_task * 1e6:.2f} us per task", file=sys.stderr)

    samples = {}
    warnings = []
    for name in [s for s in SCENARIOS if s in chosen]:
        for rep in range(reps):
            if name == "idle_cpu":
                time.sleep(0.1)  # let the previous executor's threads exit outside the window
            metrics, warm_ok = run_one(name, p, spin_iters, spin_per_task)
            if not warm_ok:
                warnings.append(f"{name}: warm-up: workers did not all run at once, or a task ran on the caller")
            shown = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            print(f"[{name}] rep {rep + 1}/{reps} {PEER:<15} {shown}", file=sys.stderr)
            for k, v in metrics.items():
                samples.setdefault((name, k), []).append(float(v))

    doc = {
        "tool": "python_thread_pool.py",
        "python": sys.version.split()[0],
        "params": p,
        "reps": reps,
        "spin": {"iters": spin_iters, "per_task_ns": int(spin_per_task * 1e9)},
        "results": [
            {"scenario": s, "metric": m, "peer": PEER, "samples": xs, "median": statistics.median(xs)}
            for (s, m), xs in samples.items()
        ],
        "warnings": warnings,
    }
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
