#!/usr/bin/env python3
"""Soak test (not run in CI): `chi serve` under repeated short `chi load` runs at a fixed rate,
with connection churn, for a long time; samples the server's RSS and open descriptors (from
/proc) and the loads' p99 latency into a CSV every --sample seconds.

    benches/scripts/soak.py [--duration 600] [--model event] [--out benches/results/soak.csv]
    benches/scripts/plot_soak.py benches/results/soak.csv   # -> benches/results/soak.png

Every --period seconds (default 1) a fresh `chi load` opens --connections connections, sends
--messages messages of --size bytes on each in lockstep, checks every answer and closes: that
is the churn (20 new connections a second by default) at a modest, fixed rate. A load run that
overruns its period delays the next one (never two at once). A healthy server stays flat in
all three series; see benches/NET_BENCHMARKS_METHOD.md.
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--period", type=float, default=1.0, help="seconds between load runs")
    p.add_argument("--connections", type=int, default=20, help="connections per load run")
    p.add_argument("--messages", type=int, default=50, help="messages per connection")
    p.add_argument("--size", default="64", help="bytes per message (chi load --size)")
    p.add_argument("--model", default="event", choices=["event", "pooled"])
    p.add_argument("--workers", type=int, help="chi serve --workers")
    p.add_argument("--idle-timeout", default="1h", help="chi serve --idle-timeout")
    p.add_argument("--out", default=os.path.join(ROOT, "benches", "results", "soak.csv"))
    p.add_argument("--no-build", action="store_true", help="use the existing release build")
    return p.parse_args()


def proc_status(pid):
    """(VmRSS in KiB, open descriptors) of a running process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def start_server(chi, args):
    argv = [chi, "serve", "--addr", "127.0.0.1:0", "--model", args.model,
            "--idle-timeout", args.idle_timeout, "-q"]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        server.kill()
        server.wait()
        sys.exit(f"soak: chi serve did not start: {line!r}")
    return server, line.split()[-1]


def load_once(chi, addr, args):
    """One `chi load` run; returns (p99 in µs or None, errors)."""
    argv = [chi, "load", "--addr", addr, "--connections", str(args.connections),
            "--messages", str(args.messages), "--size", args.size, "--threads", "1",
            "--json", "-q"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        report = json.loads(out.stdout)
        errors = int(report.get("errors", 0)) + int(report.get("connect_failed", 0))
        return report["latency_us"]["p99"], errors + (out.returncode != 0)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, 1


def main():
    args = parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "chi-cli"], cwd=ROOT,
                       check=True)
    chi = os.path.join(ROOT, "target", "release", "chi")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    server, addr = start_server(chi, args)
    start = time.monotonic()
    rows, p99s, errors, loads = [], [], 0, 0
    next_load, next_sample = start, start + args.sample
    try:
        rss, fds = proc_status(server.pid)
        rows.append(dict(t_s=0, rss_kib=rss, fds=fds, p99_us="", loads=0, errors=0))
        while time.monotonic() - start < args.duration:
            now = time.monotonic()
            if now >= next_sample:
                rss, fds = proc_status(server.pid)
                row = dict(t_s=round(now - start), rss_kib=rss, fds=fds,
                           p99_us=max(p99s) if p99s else "", loads=loads, errors=errors)
                rows.append(row)
                print(f"soak: {row}", flush=True)
                p99s, errors, loads = [], 0, 0
                next_sample += args.sample
            if now >= next_load:
                p99, errs = load_once(chi, addr, args)
                loads += 1
                errors += errs
                if p99 is not None:
                    p99s.append(p99)
                next_load = max(next_load + args.period, time.monotonic())
            time.sleep(max(0.0, min(next_load, next_sample) - time.monotonic()))
        rss, fds = proc_status(server.pid)
        rows.append(dict(t_s=round(time.monotonic() - start), rss_kib=rss, fds=fds,
                         p99_us=max(p99s) if p99s else "", loads=loads, errors=errors))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"soak: {len(rows)} samples in {args.out}; server exit status {server.returncode}")
    return 0 if server.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
