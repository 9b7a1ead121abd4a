#!/usr/bin/env python3
"""Python's process pools on the scenarios of `benches/benches/process_pool.rs`.

Runs concurrent.futures.ProcessPoolExecutor ("python_ppe") and multiprocessing.Pool
("python_mp_pool") with 2 workers each and prints one JSON document on stdout, with the
same metric names as the Rust bench (which runs this script and merges the result in).
Progress goes to stderr.

    python3 benches/scripts/python_process_pool.py [--quick]

Scenarios: startup_ms (new pool to first result, median of 5), round_trip_us / _p99_us
(submit one tiny task, wait, repeat), tiny_submit_per_s (submit N tiny tasks, then every
result in order), tiny_map_per_s (map with chunksize=1000), cpu_submit_x_ideal and
cpu_map_x_ideal (20,000 tasks of 50 us CPU each, wall time over N * 50 us / 2), and
idle_worker_rss_kib (VmRSS of an idle worker, from /proc).
"""

import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import time

WORKERS = 2


def inc(x):
    return x + 1


def spin(us):
    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass
    return us


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def pct(v, p):
    v = sorted(v)
    return v[round((len(v) - 1) * p)]


def sizes(quick):
    d = 10 if quick else 1
    return {
        "round_trips": 2000 // d,
        "tiny_n": 20_000 // d,
        "map_n": 1_000_000 // d,
        "cpu_n": 20_000 // d,
        "startups": 2 if quick else 5,
    }


class PPE:
    name = "python_ppe"

    def new(self):
        return concurrent.futures.ProcessPoolExecutor(max_workers=WORKERS)

    def submit(self, ex, f, x):
        return ex.submit(f, x)

    def get(self, fut):
        return fut.result()

    def map(self, ex, f, it, chunksize):
        return ex.map(f, it, chunksize=chunksize)

    def pids(self, ex):
        return list(getattr(ex, "_processes", {}) or {})

    def close(self, ex):
        ex.shutdown(wait=True)


class MpPool:
    name = "python_mp_pool"

    def new(self):
        return multiprocessing.Pool(WORKERS)

    def submit(self, ex, f, x):
        return ex.apply_async(f, (x,))

    def get(self, fut):
        return fut.get()

    def map(self, ex, f, it, chunksize):
        return ex.imap(f, it, chunksize=chunksize)

    def pids(self, ex):
        return [p.pid for p in getattr(ex, "_pool", [])]

    def close(self, ex):
        ex.close()
        ex.join()


def bench(peer, s):
    out = {}
    starts = []
    for _ in range(s["startups"]):
        t = time.perf_counter()
        ex = peer.new()
        peer.get(peer.submit(ex, inc, 1))
        starts.append((time.perf_counter() - t) * 1e3)
        peer.close(ex)
    out["startup_ms"] = statistics.median(starts)

    ex = peer.new()
    for f in [peer.submit(ex, inc, i) for i in range(1000)]:
        peer.get(f)
    rss = [r for r in (rss_kib(p) for p in peer.pids(ex)) if r is not None]
    if rss:
        out["idle_worker_rss_kib"] = sum(rss) / len(rss)

    rt = []
    for i in range(s["round_trips"]):
        t = time.perf_counter()
        peer.get(peer.submit(ex, inc, i))
        rt.append((time.perf_counter() - t) * 1e6)
    out["round_trip_us"] = pct(rt, 0.5)
    out["round_trip_p99_us"] = pct(rt, 0.99)

    n = s["tiny_n"]
    t = time.perf_counter()
    futs = [peer.submit(ex, inc, i) for i in range(n)]
    for i, f in enumerate(futs):
        assert peer.get(f) == i + 1
    out["tiny_submit_per_s"] = n / (time.perf_counter() - t)

    n = s["map_n"]
    t = time.perf_counter()
    total = sum(peer.map(ex, inc, range(n), 1000))
    assert total == n * (n + 1) // 2
    out["tiny_map_per_s"] = n / (time.perf_counter() - t)

    n = s["cpu_n"]
    ideal = n * 50e-6 / WORKERS
    t = time.perf_counter()
    for f in [peer.submit(ex, spin, 50) for _ in range(n)]:
        peer.get(f)
    out["cpu_submit_x_ideal"] = (time.perf_counter() - t) / ideal
    t = time.perf_counter()
    assert sum(1 for _ in peer.map(ex, spin, [50] * n, 250)) == n
    out["cpu_map_x_ideal"] = (time.perf_counter() - t) / ideal
    peer.close(ex)
    return out


def main():
    quick = "--quick" in sys.argv[1:]
    s = sizes(quick)
    result = {"python_version": sys.version.split()[0]}
    for peer in (PPE(), MpPool()):
        print(f"== {peer.name}", file=sys.stderr)
        result[peer.name] = bench(peer, s)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
