#!/usr/bin/env python3
"""Runs the network benchmark: every scenario against every server peer, side by side, in one
run, with the same `chi load` driving all of them; writes net.md, net.json and net.png.

    benches/scripts/compare_net.sh [--quick] [--reps N] [--scenarios A,B] [--peers chi_event,tokio]
    benches/scripts/compare_net.sh --syscalls --scenarios B,D --peers chi_event,chi_uring,tokio,monoio

(compare_net.sh builds the binaries, raises the descriptor limit and calls this script.)

Method (see benches/NET_BENCHMARKS_METHOD.md): each run starts its server fresh, pinned to
CPU 0 with taskset, and waits for its `listening on` line; `chi load --threads 1 --json`
runs pinned to CPU 1; the server's CPU time (utime + stime from /proc/<pid>/stat) is read
before and after the load, its RSS (VmRSS, VmHWM from /proc/<pid>/status) after; then the
server gets SIGTERM (SIGKILL if it is still there 10 s later) and is reaped. Each scenario is
repeated (3 times by default, the peer order rotated each time) and medians are reported.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
LOAD_CPU = "1"
LISTEN_WAIT = 20.0  # seconds a server may take to print `listening on`
HOLD_WAIT = 120.0  # seconds the idle-connection holder may take to connect everything
LOAD_SLACK = 60.0  # seconds past its own --timeout before a `chi load` is killed

# ===== scenarios =====

# name -> what `chi load` does. `timeout` is chi load's --timeout in seconds; `idle` idle
# connections come from a second `chi load` process (scenario E).
SCENARIOS = {
    "A": dict(title="A. 3 clients × 20,000 messages × 11 B (`hello world`)",
              connections=3, messages=20_000, size="11", timeout=60),
    "B": dict(title="B. 50 clients × 5,000 messages × 64 B",
              connections=50, messages=5_000, size="64", timeout=60),
    "D": dict(title="D. 1,000 clients × 100 messages × 64 B",
              connections=1_000, messages=100, size="64", timeout=60),
    "E": dict(title="E. 10,000 idle clients + 1 active client × 20,000 messages × 64 B",
              connections=1, messages=20_000, size="64", idle=10_000, timeout=8),
    "F": dict(title="F. 10 clients × 30 messages × 1 MiB",
              connections=10, messages=30, size="1MiB", timeout=60),
    "P": dict(title="P. The seed's pooled design: 4 clients, 3 workers — when does the 4th get its first answer?",
              connections=4, messages=5_000, size="11", timeout=60),
}
QUICK = {  # --quick: a smoke test of the whole pipeline, not a measurement
    "A": dict(messages=2_000), "B": dict(messages=500), "D": dict(messages=10),
    "E": dict(messages=2_000, idle=2_000), "F": dict(messages=3), "P": dict(messages=500),
}

# ===== peers =====

MAX_POOL_WORKERS = 4096  # chi_net::MAX_WORKERS


def peer_table(bins, python, script_dir):
    """name -> (label, description, function(scenario) -> server argv or None to skip)."""
    chi = os.path.join(bins, "chi")
    chi_serve = [chi, "serve", "--addr", "127.0.0.1:0", "--max-connections", "20000"]

    def pooled_w(s):
        clients = s["connections"] + s.get("idle", 0)
        if clients > MAX_POOL_WORKERS:
            return None
        return chi_serve + ["--model", "pooled", "--workers", str(clients)]

    return {
        "chi_event": ("chi event", "`chi serve` (event model: one mio loop per core, here 1)",
                      lambda s: chi_serve),
        "chi_uring": ("chi uring", "`chi serve --model uring` (one io_uring loop per core, here 1)",
                      lambda s: chi_serve + ["--model", "uring"]),
        "chi_pooled3": ("chi pooled W=3", "`chi serve --model pooled` (the seed's design, 3 workers)",
                        lambda s: chi_serve + ["--model", "pooled"]),
        "chi_pooledW": ("chi pooled W=clients", "`chi serve --model pooled --workers C` (one worker per client)",
                        pooled_w),
        "tokio": ("tokio", "`peer_tokio_echo`: tokio multi-thread runtime, a task per connection",
                  lambda s: [os.path.join(bins, "peer_tokio_echo"), "--addr", "127.0.0.1:0"]),
        "monoio": ("monoio", "`peer_monoio_echo`: monoio thread-per-core io_uring runtime, a task per connection",
                   lambda s: [os.path.join(bins, "peer_monoio_echo"), "--addr", "127.0.0.1:0"]),
        "thread": ("thread/conn", "`peer_thread_echo`: std blocking I/O, a thread per connection",
                   lambda s: [os.path.join(bins, "peer_thread_echo"), "--addr", "127.0.0.1:0"]),
        "mio": ("mio loop", "`peer_mio_echo`: one thread, one mio event loop",
                lambda s: [os.path.join(bins, "peer_mio_echo"), "--addr", "127.0.0.1:0"]),
        "python_seed": ("Python seed", "`python_seed_server.py`: the seed's ThreadPoolExecutor(3), recv(1024), send(data.upper())",
                        lambda s: [python, os.path.join(script_dir, "python_seed_server.py"),
                                   "--addr", "127.0.0.1:0", "--workers", "3"]),
    }


# ===== processes =====

PIN = True  # cleared by --unpinned: the scheduler places every process


def pinned(cpu, argv):
    return (["taskset", "-c", cpu] + argv) if PIN and shutil.which("taskset") else argv


def where(cpu):
    return f"pinned to CPU {cpu}" if PIN else "not pinned"


def line_reader(stream, q):
    """Forwards the lines of `stream` into `q`, then None."""
    for line in stream:
        q.put(line.rstrip("\n"))
    q.put(None)


def wait_for_line(q, prefix, limit, proc):
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no line starting with {prefix!r} within {limit} s")
        try:
            line = q.get(timeout=min(left, 0.5))
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} before printing {prefix!r}")
            continue
        if line is None:
            raise RuntimeError(f"output ended before a line starting with {prefix!r}")
        if line.startswith(prefix):
            return line


def stop_process(proc, grace=10.0):
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """A server process pinned to SERVER_CPU, started and waited for until it listens."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(pinned(SERVER_CPU, argv), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=line_reader, args=(self.proc.stdout, self.lines), daemon=True).start()
        try:
            line = wait_for_line(self.lines, "listening on ", LISTEN_WAIT, self.proc)
        except Exception:
            self.stop()
            raise
        self.addr = line[len("listening on "):].strip()

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def memory_kib(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out.get("VmRSS", 0), out.get("VmHWM", 0)

    def stop(self):
        if self.argv[:1] == ["strace"] and self.proc.poll() is None:
            # SIGTERM the traced server, not strace (which would exit without its summary).
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                children = []
            for child in children:
                os.kill(child, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc)
        self.log.close()


def run_load(chi, addr, s, load_usage, extra=()):
    """Runs `chi load` pinned to LOAD_CPU; returns (report dict or None, exit code, argv, stderr
    tail) and puts its CPU and wall seconds into `load_usage`."""
    argv = [chi, "load", "--addr", addr, "--connections", str(s["connections"]),
            "--messages", str(s["messages"]), "--size", s["size"], "--threads", "1",
            "--timeout", f"{s['timeout']}s", "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        done = subprocess.run(pinned(LOAD_CPU, argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=s["timeout"] + LOAD_SLACK)
    except subprocess.TimeoutExpired:
        return None, None, argv, "killed: chi load outlived its own --timeout"
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Only this child was reaped in between, so the difference is chi load's own CPU time.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load_usage.update(load_cpu_s=cpu, load_wall_s=wall)
    report = None
    if done.stdout.strip():
        try:
            report = json.loads(done.stdout.strip().splitlines()[-1])
        except json.JSONDecodeError:
            pass
    return report, done.returncode, argv, done.stderr[-2000:]


class IdleHolder:
    """A second `chi load` process holding K idle connections to the server (scenario E)."""

    def __init__(self, chi, addr, idle):
        self.argv = [chi, "load", "--addr", addr, "--connections", "0", "--idle", str(idle),
                     "--threads", "1", "--duration", "10m", "--json"]
        self.proc = subprocess.Popen(pinned(LOAD_CPU, self.argv), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err = queue.Queue()
        threading.Thread(target=line_reader, args=(self.proc.stderr, self.err), daemon=True).start()
        try:
            wait_for_line(self.err, "holding ", HOLD_WAIT, self.proc)
        except Exception:
            self.stop()
            raise

    def stop(self):
        stop_process(self.proc)
        out = self.proc.stdout.read()
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return None


# ===== one measurement =====

def measure(chi, name, argv, s, log_path, reuse_port_copies=1, count_served=False):
    """Starts the server(s), (E) the idle holder, runs the load, reads /proc, stops everything."""
    row = dict(peer=name, server_argv=argv, ok=False)
    servers, holder = [], None
    try:
        servers.append(Server(argv, log_path))
        addr = servers[0].addr
        for i in range(1, reuse_port_copies):
            more = [a if a != "127.0.0.1:0" else addr for a in argv]
            servers.append(Server(more, f"{log_path}.{i}"))
        if s.get("idle"):
            holder = IdleHolder(chi, addr, s["idle"])
        cpu_before = sum(x.cpu_seconds() for x in servers)
        usage = {}
        report, code, load_argv, stderr = run_load(chi, addr, s, usage)
        row.update(usage)
        cpu = sum(x.cpu_seconds() for x in servers) - cpu_before
        mem = [x.memory_kib() for x in servers]
        row.update(load_argv=load_argv, exit=code, report=report, stderr_tail=stderr,
                   server_cpu_s=cpu, rss_kib=sum(m[0] for m in mem), hwm_kib=sum(m[1] for m in mem))
        row["ok"] = report is not None and code in (0, 3)
    except Exception as e:  # a peer that does not start: record it and go on
        row.update(error=str(e))
    finally:
        if holder is not None:
            row["idle_report"] = holder.stop()
        for x in servers:
            x.stop()
    if count_served and row.get("ok"):
        row["served"] = [served_count(p) for p in [log_path] + [f"{log_path}.{i}" for i in range(1, reuse_port_copies)]]
    return row


def served_count(log_path):
    """Connections a `chi serve` reports at shutdown (`served N connections`)."""
    try:
        with open(log_path) as f:
            for line in f:
                if "served " in line and " connections" in line:
                    return int(line.split("served ", 1)[1].split()[0])
    except (OSError, ValueError):
        pass
    return None


def flatten(row):
    """The numbers of one run, for medians."""
    r = row.get("report") or {}
    lat = r.get("latency_us", {})
    msgs = r.get("messages", 0)
    out = dict(
        msgs_per_s=r.get("msgs_per_s", 0.0), mb_per_s=r.get("mb_per_s", 0.0),
        p50_us=lat.get("p50", 0.0), p99_us=lat.get("p99", 0.0), p99_9_us=lat.get("p99_9", 0.0),
        max_us=lat.get("max", 0.0), errors=r.get("errors", 0),
        connect_failed=r.get("connect_failed", 0), messages=msgs,
        expected=r.get("answers", {}).get("expected", 0),
        first_answer_max_ms=r.get("first_answer_ms", {}).get("max", 0.0),
        server_cpu_s=row.get("server_cpu_s", 0.0),
        cpu_us_per_msg=(row.get("server_cpu_s", 0.0) / msgs * 1e6) if msgs else None,
        rss_mib=row.get("rss_kib", 0) / 1024, hwm_mib=row.get("hwm_kib", 0) / 1024,
    )
    wall = row.get("load_wall_s")
    out["load_cpu_pct"] = 100 * row["load_cpu_s"] / wall if wall else None
    idle = row.get("idle_report") or {}
    out["idle_connected"] = idle.get("idle_connected")
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ===== report =====

def fmt_num(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def fmt_us(v):
    if v is None:
        return "–"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def summarize(runs, peers, scenarios):
    """(scenario, peer) -> medians and the runs' notes."""
    out = {}
    for sc in scenarios:
        for p in peers:
            rows = [r for r in runs if r["scenario"] == sc and r["peer"] == p]
            if not rows:
                continue
            good = [r for r in rows if r.get("ok")]
            flat = [flatten(r) for r in good]
            m = {k: median([f[k] for f in flat]) for k in (flat[0] if flat else {})}
            m["runs"] = len(rows)
            m["failed_runs"] = len(rows) - len(good)
            m["runs_with_errors"] = sum(1 for f in flat if f["errors"] or f["connect_failed"])
            m["server_argv"] = rows[0].get("server_argv")
            m["load_argv"] = next((r.get("load_argv") for r in rows if r.get("load_argv")), None)
            m["errors_text"] = next((r.get("error") for r in rows if r.get("error")), None)
            out[(sc, p)] = m
    return out


def shell(argv, bins):
    if not argv:
        return ""
    words = []
    for a in argv:
        if a.startswith(bins + os.sep):
            a = a[len(bins) + 1:]
        elif a.endswith("python_seed_server.py"):
            a = "benches/scripts/python_seed_server.py"
        elif a == sys.executable or os.path.basename(a).startswith("python"):
            a = "python3"
        words.append(a)
    return " ".join(words)


def table(sc, s, med, peers, labels, bins):
    lines = []
    rows = [(p, med[(sc, p)]) for p in peers if (sc, p) in med]
    if not rows:
        return lines
    load_argv = next((m["load_argv"] for _, m in rows if m.get("load_argv")), None)
    lines.append(f"Load: `{shell(load_argv, bins)}` ({where(LOAD_CPU)})" if load_argv else "")
    if s.get("idle"):
        lines.append(f"Idle clients: `chi load --connections 0 --idle {s['idle']} --threads 1` "
                     f"(a second process, {where(LOAD_CPU)}), started first and held during the run.")
    lines.append("")
    tokio = med.get((sc, "tokio"), {}).get("msgs_per_s")
    best = max((m.get("msgs_per_s") or 0 for _, m in rows), default=0)
    mb = sc == "F"
    head = ["server", "command", "MB/s" if mb else "msgs/s", "p50 µs", "p99 µs", "p99.9 µs",
            "server CPU µs/msg", "server RSS MiB" + (" (idle clients open)" if s.get("idle") else " (peak)"),
            "load CPU %", "vs tokio", "vs best"]
    if sc == "P":
        head.insert(3, "last first answer ms")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for p, m in rows:
        rate = m.get("msgs_per_s")
        served_all = m.get("errors") == 0 and m.get("connect_failed") == 0
        if m.get("failed_runs") == m.get("runs"):
            note = f"did not run: {m.get('errors_text') or 'see net.json'}"
            cells = [labels[p], f"`{shell(m['server_argv'], bins)}`", note] + ["–"] * (len(head) - 3)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        value = fmt_num(m.get("mb_per_s"), 1) if mb else fmt_num(rate)
        if not served_all:
            missing = m.get("errors") or 0
            value += f" ⚠ {fmt_num(missing)} of {fmt_num(m.get('expected'))} answers wrong/missing"
        rss = m.get("rss_mib") if s.get("idle") else m.get("hwm_mib")
        vs_tokio = f"{rate / tokio:.2f}×" if tokio and rate else "–"
        vs_best = f"{best / rate:.2f}×" if rate and best else "–"
        cells = [labels[p], f"`{shell(m['server_argv'], bins)}`", value,
                 fmt_us(m.get("p50_us")), fmt_us(m.get("p99_us")), fmt_us(m.get("p99_9_us")),
                 fmt_num(m.get("cpu_us_per_msg"), 1), fmt_num(rss, 1), fmt_num(m.get("load_cpu_pct")),
                 vs_tokio, vs_best]
        if sc == "P":
            cells.insert(3, fmt_num(m.get("first_answer_max_ms"), 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("`vs tokio`: msgs/s ÷ tokio's (above 1 is faster than tokio). `vs best`: the fastest "
                 "server's msgs/s ÷ this one's (the winner is 1.00×). `load CPU %`: chi load's CPU time ÷ its "
                 "wall time; near 100 the client's core was saturated and the figure is a lower bound "
                 "for the server.")
    return lines


def targets(med):
    """The issue's targets for chi's event model; each (text, met or None when not measured)."""
    out = []

    def get(sc, p, k):
        return med.get((sc, p), {}).get(k)

    def check(text, a, b, ratio):
        if a is None or b is None or not b:
            out.append((text + ": not measured", None))
        else:
            out.append((f"{text}: {a / b:.2f}× (target ≥ {ratio}×)", a / b >= ratio))

    check("B: chi event msgs/s ÷ tokio", get("B", "chi_event", "msgs_per_s"), get("B", "tokio", "msgs_per_s"), 1.2)
    check("B: chi event msgs/s ÷ mio loop", get("B", "chi_event", "msgs_per_s"), get("B", "mio", "msgs_per_s"), 1.0)
    check("D: chi event msgs/s ÷ tokio", get("D", "chi_event", "msgs_per_s"), get("D", "tokio", "msgs_per_s"), 1.2)
    a, b = get("D", "chi_event", "p99_us"), get("D", "tokio", "p99_us")
    out.append((f"D: chi event p99 {fmt_us(a)} µs vs tokio {fmt_us(b)} µs (target ≤ tokio's)", a <= b)
               if a is not None and b is not None else ("D: p99: not measured", None))
    r = get("E", "chi_event", "rss_mib")
    out.append((f"E: chi event server RSS {fmt_num(r, 1)} MiB with the idle clients open (target ≤ 5 MiB)", r <= 5)
               if r is not None else ("E: RSS: not measured", None))
    a, b = get("E", "chi_event", "p99_us"), get("E", "tokio", "p99_us")
    out.append((f"E: active client's p99 {fmt_us(a)} µs vs tokio {fmt_us(b)} µs (target ≤ tokio's)", a <= b)
               if a is not None and b is not None else ("E: p99: not measured", None))
    # chi's io_uring model (issue 16): less CPU per message than tokio, faster than tokio and monoio.
    for sc in ("B", "D"):
        a, b = get(sc, "chi_uring", "cpu_us_per_msg"), get(sc, "tokio", "cpu_us_per_msg")
        out.append((f"{sc}: chi uring server CPU {fmt_num(a, 2)} µs/msg vs tokio {fmt_num(b, 2)} "
                    f"(target ≤ 0.8× tokio's): {a / b:.2f}×", a / b <= 0.8)
                   if a is not None and b else (f"{sc}: chi uring CPU per message: not measured", None))
        check(f"{sc}: chi uring msgs/s ÷ tokio", get(sc, "chi_uring", "msgs_per_s"), get(sc, "tokio", "msgs_per_s"), 1.2)
        check(f"{sc}: chi uring msgs/s ÷ monoio", get(sc, "chi_uring", "msgs_per_s"), get(sc, "monoio", "msgs_per_s"), 1.0)
    r = get("E", "chi_uring", "rss_mib")
    out.append((f"E: chi uring server RSS {fmt_num(r, 1)} MiB with the idle clients open (target ≤ 5 MiB)", r <= 5)
               if r is not None else ("E: uring RSS: not measured", None))
    return out


def write_markdown(path, meta, runs, med, peers, labels, scenarios, reuse, bins):
    L = ["# chi network benchmark: chi's server vs tokio, mio, thread-per-connection and the seed", ""]
    L += [f"- date: {meta['date']}", f"- commit: {meta['commit']}", f"- machine: {meta['machine']}",
          f"- load average before the run: {meta['loadavg']}", f"- rustc: {meta['rustc']}",
          f"- python: {meta['python']}",
          (f"- pinning: every server on CPU {SERVER_CPU}, every `chi load` on CPU {LOAD_CPU} (taskset)"
           + ("" if meta["taskset"] else " — **taskset missing: nothing was pinned**")
           if PIN else "- pinning: none (--unpinned): the scheduler places servers and loads"),
          f"- repetitions: {meta['reps']} per scenario and server, medians shown"
          + (" — **--quick: reduced counts, a smoke test, not a measurement**" if meta["quick"] else ""),
          "", "Reproduce (from the workspace root):", "", "```", f"benches/scripts/compare_net.sh {meta['args']}".rstrip(), "```", ""]
    L += ["Servers:", ""]
    for p in peers:
        L.append(f"- **{labels[p]}** — {meta['peer_descriptions'][p]}")
    L.append("")
    L += ["## Targets (chi event and uring models)", ""]
    for text, met in targets(med):
        mark = "✅ met" if met else ("❌ missed" if met is False else "–")
        L.append(f"- {mark} — {text}")
    L += ["", "Where a target is missed, profile the server during that scenario (see "
          "benches/NET_BENCHMARKS_METHOD.md, \"Profiling\") and note what the profile shows.", ""]
    for sc in scenarios:
        s = meta["scenarios"][sc]
        L += [f"## {s['title']}" + (" — quick: counts reduced, see the command" if meta["quick"] else ""), ""]
        L += table(sc, s, med, peers, labels, bins)
        L.append("")
        if sc == "E":
            L += ["A server that leaves the active client's answers missing cannot serve it while the idle "
                  "clients are connected (the seed's design: its 3 workers are held by idle clients). "
                  f"The run ends at --timeout {s['timeout']}s.", ""]
        if sc == "P":
            L += ["`last first answer ms`: when the last of the 4 clients got its first answer, counted from the "
                  "moment all 4 sent their first request. With 3 workers the 4th client waits for a whole "
                  "client's run (5,000 messages) to finish; with one loop serving everyone it is answered at once.", ""]
    if reuse:
        L += ["## Past one process: `SO_REUSEPORT`", ""]
        L += ["Two `chi serve --reuse-port --workers 1` processes on the same port against one "
              "`chi serve --workers 1`, all pinned to CPU " + SERVER_CPU + " (the same CPU budget; "
              "this machine has no spare core to spread onto), `chi load` on CPU " + LOAD_CPU + ".", ""]
        L += ["| scenario | servers | msgs/s | p50 µs | p99 µs | p99.9 µs | connections per process |", "|---|---|---|---|---|---|---|"]
        for (sc, copies), rows in sorted(reuse.items()):
            flat = [flatten(r) for r in rows if r.get("ok")]
            served = next((r.get("served") for r in rows if r.get("served")), None)
            L.append(f"| {sc} | {copies} | {fmt_num(median([f['msgs_per_s'] for f in flat]))} | "
                     f"{fmt_us(median([f['p50_us'] for f in flat]))} | {fmt_us(median([f['p99_us'] for f in flat]))} | "
                     f"{fmt_us(median([f['p99_9_us'] for f in flat]))} | {' + '.join(map(str, served)) if served else '–'} |")
        L.append("")
    if meta.get("chart"):
        L += ["## Chart", "", f"![throughput relative to tokio, and server memory]({meta['chart']})", ""]
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        L += ["## Runs that did not produce a report", ""]
        for r in failed:
            L.append(f"- {r['scenario']} / {r['peer']} (rep {r['rep']}): {r.get('error') or 'exit ' + str(r.get('exit'))}")
        L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def write_chart(path, med, peers, labels, scenarios):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    panels = [(sc, "msgs_per_s" if sc != "F" else "mb_per_s") for sc in scenarios if sc in ("A", "B", "D", "F")]
    has_e = "E" in scenarios
    n = len(panels) + (1 if has_e else 0)
    if n == 0:
        return False
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 + 2.0 * n), squeeze=False)
    for ax, (sc, key) in zip(axes[:, 0], panels):
        tokio = med.get((sc, "tokio"), {}).get(key)
        rows = [(labels[p], med[(sc, p)].get(key) or 0) for p in peers if (sc, p) in med]
        if not tokio:
            continue
        names = [r[0] for r in rows][::-1]
        vals = [r[1] / tokio for r in rows][::-1]
        raw = [r[1] for r in rows][::-1]
        colors = ["tab:blue" if "chi" in nm else "tab:gray" for nm in names]
        bars = ax.barh(names, vals, color=colors)
        unit = "MB/s" if key == "mb_per_s" else "msgs/s"
        ax.bar_label(bars, labels=[f" {v:.2f}× ({r:,.0f} {unit})" for v, r in zip(vals, raw)], fontsize=7)
        ax.set_xlim(0, max(vals + [1.0]) * 1.45)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{sc}: {'MB/s' if key == 'mb_per_s' else 'msgs/s'} relative to tokio (1.0)", fontsize=9)
        ax.tick_params(labelsize=8)
    if has_e:
        ax = axes[-1, 0]
        rows = [(labels[p], med[("E", p)].get("rss_mib") or 0) for p in peers if ("E", p) in med]
        names = [r[0] for r in rows][::-1]
        vals = [max(r[1], 0.1) for r in rows][::-1]
        bars = ax.barh(names, vals, color=["tab:blue" if "chi" in nm else "tab:gray" for nm in names])
        ax.bar_label(bars, labels=[f" {v:,.1f} MiB" for v in vals], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(min(vals) / 2, max(vals) * 4)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title("E: server RSS (MiB, log scale) with the idle clients open", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ===== syscalls per message (counts, not timing) =====

# Shorter runs than the timing ones: strace slows every call down, the counts do not change.
SYSCALL_RUNS = {"B": dict(messages=1_000), "D": dict(messages=20)}
SYSCALL_NAMES = ("io_uring_enter", "epoll_wait", "recvfrom", "sendto", "read", "write", "futex")


def parse_strace_summary(path):
    """{syscall: calls} and the total, from `strace -c` output."""
    calls, total = {}, 0
    with open(path) as f:
        for line in f:
            cols = line.split()
            if len(cols) < 5 or not cols[3].isdigit():
                continue
            name = cols[-1]
            if name == "total":
                total = int(cols[3])
            else:
                calls[name] = int(cols[3])
    return calls, total


def count_syscalls(chi, peers, table_, scenarios, logs, out_dir):
    """Runs each scenario once per server under `strace -c -f`; writes net-syscalls.md/json."""
    rows = []
    for sc in [x for x in scenarios if x in SYSCALL_RUNS]:
        s = dict(SCENARIOS[sc], **SYSCALL_RUNS[sc])
        for p in peers:
            argv = table_[p][2](s)
            if argv is None:
                continue
            summary = os.path.join(logs, f"strace-{sc}-{p}.txt")
            traced = ["strace", "-c", "-f", "-o", summary, "--", *argv]
            row = measure(chi, p, traced, s, os.path.join(logs, f"strace-{sc}-{p}.log"))
            msgs = (row.get("report") or {}).get("messages", 0)
            if not row.get("ok") or not msgs or not os.path.exists(summary):
                print(f"syscalls {sc} {p}: FAILED {row.get('error') or row.get('stderr_tail', '')[-200:]}",
                      file=sys.stderr)
                continue
            calls, total = parse_strace_summary(summary)
            rows.append(dict(scenario=sc, peer=p, messages=msgs, total=total, calls=calls))
            print(f"syscalls {sc} {p:12} {total / msgs:6.2f} per message", file=sys.stderr, flush=True)
    lines = ["# Server syscalls per message (`strace -c -f`, whole server process, startup included)", "",
             "| scenario | server | messages | all | " + " | ".join(SYSCALL_NAMES) + " |",
             "|---|---|---|---|" + "---|" * len(SYSCALL_NAMES)]
    for r in rows:
        per = [f"{r['calls'].get(n, 0) / r['messages']:.3f}" for n in SYSCALL_NAMES]
        lines.append(f"| {r['scenario']} | {table_[r['peer']][0]} | {r['messages']:,} | "
                     f"{r['total'] / r['messages']:.3f} | " + " | ".join(per) + " |")
    with open(os.path.join(out_dir, "net-syscalls.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "net-syscalls.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n".join(lines))


# ===== main =====

def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def reproducible_args(argv):
    """The arguments a person passes to compare_net.sh (without the paths it adds itself)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--bins", "--out-dir", "--python"):
            skip = True
            continue
        if a.startswith(("--bins=", "--out-dir=", "--python=")):
            continue
        out.append(a)
    return " ".join(out)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
            mem = f", {kib / 1048576:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description="chi network benchmark (see the module docstring)")
    ap.add_argument("--quick", action="store_true", help="reduced counts and 1 repetition: a smoke test")
    ap.add_argument("--reps", type=int, help="repetitions per scenario and server [3; 1 with --quick]")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of " + ",".join(SCENARIOS))
    ap.add_argument("--peers", help="comma-separated server names [all]")
    ap.add_argument("--no-reuse-port", action="store_true", help="skip the SO_REUSEPORT comparison")
    ap.add_argument("--syscalls", action="store_true",
                    help="instead of timing: count server syscalls per message under strace -c -f (B, D)")
    ap.add_argument("--unpinned", action="store_true",
                    help="do not pin: the scheduler places servers and loads (write to another --out-dir)")
    ap.add_argument("--bins", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release"))
    ap.add_argument("--out-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "bench-results"))
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    global PIN
    PIN = not args.unpinned

    script_dir = os.path.dirname(os.path.abspath(__file__))
    bins = os.path.abspath(args.bins)
    chi = os.path.join(bins, "chi")
    os.makedirs(args.out_dir, exist_ok=True)
    logs = os.path.join(args.out_dir, "net-logs")
    os.makedirs(logs, exist_ok=True)
    reps = args.reps or (1 if args.quick else 3)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for sc in scenarios:
        if sc not in SCENARIOS:
            sys.exit(f"unknown scenario {sc!r}; known: {', '.join(SCENARIOS)}")
    table_ = peer_table(bins, args.python, script_dir)
    peers = [p.strip() for p in (args.peers or ",".join(table_)).split(",") if p.strip()]
    for p in peers:
        if p not in table_:
            sys.exit(f"unknown peer {p!r}; known: {', '.join(table_)}")
    labels = {p: table_[p][0] for p in table_}
    specs = {sc: dict(SCENARIOS[sc], **(QUICK.get(sc, {}) if args.quick else {})) for sc in scenarios}
    if args.syscalls:
        if not shutil.which("strace"):
            sys.exit("--syscalls needs strace")
        return count_syscalls(chi, peers, table_, scenarios, logs, args.out_dir)

    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        commit=(git("rev-parse", "--short", "HEAD") or "no commit")
        + (" (uncommitted changes)" if git("status", "--porcelain") else ""),
        machine=machine(), loadavg=" ".join(open("/proc/loadavg").read().split()[:3]),
        rustc=subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
        python=platform.python_implementation() + " " + platform.python_version(),
        taskset=bool(shutil.which("taskset")), reps=reps, quick=args.quick,
        args=reproducible_args(sys.argv[1:]), scenarios=specs,
        peer_descriptions={p: table_[p][1] for p in table_},
    )

    started = time.monotonic()
    runs = []
    for rep in range(reps):
        order = peers[rep % len(peers):] + peers[:rep % len(peers)]
        for sc in scenarios:
            s = specs[sc]
            for p in order:
                argv = table_[p][2](s)
                if argv is None:
                    continue
                t0 = time.monotonic()
                row = measure(chi, p, argv, s, os.path.join(logs, f"{sc}-{p}-{rep}.log"))
                row.update(scenario=sc, rep=rep, seconds=time.monotonic() - t0)
                runs.append(row)
                f = flatten(row)
                status = "ok" if row.get("ok") else f"FAILED: {row.get('error') or row.get('stderr_tail', '')[-200:]}"
                print(f"[{time.monotonic() - started:6.1f}s] rep {rep + 1}/{reps} {sc} {p:12} "
                      f"{f['msgs_per_s']:>11,.0f} msgs/s p99 {f['p99_us']:>9,.1f} µs "
                      f"errors {f['errors']} rss {f['rss_mib']:.1f}/{f['hwm_mib']:.1f} MiB {status}",
                      file=sys.stderr, flush=True)

    reuse = {}
    if not args.no_reuse_port:
        base = [chi, "serve", "--addr", "127.0.0.1:0", "--max-connections", "20000", "--workers", "1"]
        for rep in range(reps):
            for sc in [x for x in ("B", "D") if x in specs]:
                for copies in (1, 2):
                    argv = base + (["--reuse-port"] if copies > 1 else [])
                    row = measure(chi, f"reuse{copies}", argv, specs[sc],
                                  os.path.join(logs, f"reuse-{sc}-{copies}-{rep}.log"), reuse_port_copies=copies,
                                  count_served=True)
                    row.update(scenario=sc, rep=rep)
                    reuse.setdefault((sc, copies), []).append(row)
                    f = flatten(row)
                    print(f"[{time.monotonic() - started:6.1f}s] reuse-port {sc} x{copies} "
                          f"{f['msgs_per_s']:>11,.0f} msgs/s served {row.get('served')}", file=sys.stderr, flush=True)

    med = summarize(runs, peers, scenarios)
    chart_path = os.path.join(args.out_dir, "net.png")
    if write_chart(chart_path, med, peers, labels, scenarios):
        meta["chart"] = "net.png"
    md_path = os.path.join(args.out_dir, "net.md")
    write_markdown(md_path, meta, runs, med, peers, labels, scenarios, reuse, bins)
    doc = dict(meta=meta, runs=runs,
               medians=[dict(scenario=sc, peer=p, **{k: v for k, v in m.items()}) for (sc, p), m in med.items()],
               targets=[dict(text=t, met=m) for t, m in targets(med)],
               reuse_port=[dict(scenario=sc, processes=c, runs=rows) for (sc, c), rows in sorted(reuse.items())])
    with open(os.path.join(args.out_dir, "net.json"), "w") as f:
        json.dump(doc, f, indent=1, default=str)
    print(open(md_path).read())
    print(f"wrote {md_path}, net.json{', net.png' if meta.get('chart') else ''} "
          f"in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
