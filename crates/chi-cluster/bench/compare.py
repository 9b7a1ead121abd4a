"""BENCHMARKS §4 driver: chi-cluster vs Celery (prefork, concurrency 2) vs RQ (2 workers) on
one Redis of its own, all in one run. Started by compare.sh (which builds chi and the venv).

Scenarios (each system with its default settings; "chi-pf" is chi-cluster again with the
worker's `--prefetch N`, N from --chi-prefetch, default 16, so 18 tasks held with its 2
processes busy, where Celery holds 8 by default (prefetch multiplier 4 × concurrency 2) and
never gives them back; a, b, c, f only):
  a throughput   10,000 tiny tasks, submit all → every result (tasks/s)
  b rtt          idle round trip, sequential, p50/p99
  c cpu          2,000 × 5 ms CPU tasks on 2 worker processes: wall ÷ ideal
  d kill         a whole worker (every process of it) SIGKILLed mid-task, another worker
                 alive: time from the kill to the result (or: not delivered within 60 s)
  e outage       Redis SIGKILLed for 3 s mid-run of 1,000 × 10 ms tasks, AOF on and off:
                 results, clear errors, silently missing (nothing within 20 s of the restart)
  f rss          idle worker RSS, summed over all its processes
  g ceiling      redis-benchmark: XADD (1 and 16 pipelined) and XREADGROUP on this machine

Medians over --reps repetitions (default 5) for chi-cluster; Celery and RQ repeat a, b, c, f
at most 3 times, and RQ runs fewer tasks in a, b, c (it does about 25 tasks/s here: 10,000
would take 7 minutes a round); the rates compare all the same. d for Celery/RQ and e run once
(counts; a lost task costs the whole wait). The full run takes 10 to 15 minutes here (most of
it Celery and RQ; the quick run 2.5). Writes
<out>/cluster.{md,json,png}.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SYSTEMS = ("chi", "chi-pf", "celery", "rq")
NAMES = {"chi": "chi-cluster", "chi-pf": "chi-cluster, prefetch", "celery": "Celery", "rq": "RQ"}
# The two chi-cluster columns: as shipped (no prefetch), and with `--prefetch N` (a, b, c, f only).
CHIS = ("chi", "chi-pf")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ===== processes =====


def descendants(pid):
    """Every live process below `pid` (read from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def rss_kib(pid):
    total = 0
    for p in [pid] + descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def kill_tree(pid, sig=signal.SIGKILL):
    """Signals `pid` and everything below it (the parent first, so it cannot respawn)."""
    below = descendants(pid)
    for p in [pid] + below:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of this run on a free loopback port, stopped by its PID."""

    def __init__(self, aof=False):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="chi-cluster-bench-redis-")
        self.aof = aof
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning",
                "--appendonly", "yes" if self.aof else "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def ping(self):
        return self.cli("PING") == "PONG"

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return r.stdout.strip()

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None
        subprocess.run(["rm", "-rf", self.dir])


class Systems:
    """How each system's workers and clients are started."""

    def __init__(self, chi, bench, python, prefetch):
        self.chi, self.bench, self.python, self.prefetch = chi, bench, python, prefetch
        self.env = dict(os.environ, PYTHONPATH=HERE, PYTHONUNBUFFERED="1")
        self.logs = open(os.path.join(tempfile.gettempdir(), "chi-cluster-bench-workers.log"), "a")

    def worker(self, system, url, concurrency, name):
        if system in CHIS:
            prefetch = self.prefetch if system == "chi-pf" else 0
            cmd = [self.chi, "-q", "cluster", "worker", "--redis", url,
                   "--processes", str(concurrency), "--prefetch", str(prefetch)]
        else:
            cmd = [self.python, os.path.join(HERE, "peers.py"), system, "worker", url,
                   str(concurrency), name]
        return subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=self.logs, stderr=self.logs, start_new_session=True)

    def client(self, system, url, *args):
        if system in CHIS:
            return [self.bench, url, *map(str, args)]
        return [self.python, os.path.join(HERE, "peers.py"), system, args[0], url, *map(str, args[1:])]

    def run(self, system, url, *args, timeout=1800):
        r = subprocess.run(self.client(system, url, *args), env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode != 0 or not lines:
            raise RuntimeError(f"{system} {args}: exit {r.returncode}: {r.stderr[-2000:]}")
        return json.loads(lines[-1])

    def start(self, system, url, workers, concurrency):
        """`workers` workers of `concurrency` each, registered and warm."""
        procs = [self.worker(system, url, concurrency, f"w{i}") for i in range(workers)]
        self.run(system, url, "ready", workers, timeout=90)
        return procs


def stop_workers(procs):
    """SIGTERM each worker (it stops its own processes), SIGKILL what is left after 15 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(max(end - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        kill_tree(p.pid)
        p.wait()


def layout(system):
    """Workers × processes for "2 worker processes": chi and Celery one worker of 2, RQ 2."""
    return (2, 1) if system == "rq" else (1, 2)


# ===== scenarios =====


class Results:
    def __init__(self):
        self.raw = []

    def add(self, system, scenario, rep, row):
        row = dict(row, system=system, scenario=scenario, rep=rep)
        self.raw.append(row)
        log(f"{system} {scenario} #{rep}: {json.dumps({k: v for k, v in row.items() if k not in ('system', 'scenario', 'rep')})}")

    def medians(self):
        by = {}
        for r in self.raw:
            by.setdefault((r["system"], r["scenario"]), []).append(r)
        out = {}
        for (system, scenario), rows in by.items():
            m = {"reps": len(rows)}
            for k in rows[0]:
                vals = [r.get(k) for r in rows]
                if k != "rep" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    m[k] = statistics.median(vals)
                elif all(isinstance(v, bool) for v in vals):
                    m[k] = sum(vals) * 2 > len(vals)  # the majority
            m["first_error"] = next((r["first_error"] for r in rows if r.get("first_error")), "")
            m["error"] = next((r["error"] for r in rows if r.get("error")), "")
            out.setdefault(system, {})[scenario] = m
        return out


def interactive(sy, system, url, args, on_line, timeout):
    """Runs a client that prints JSON lines and reads lines: `on_line(row)` answers a row (a
    string to write back, or None). Returns the last row."""
    cl = subprocess.Popen(sy.client(system, url, *args), env=sy.env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    last = None
    try:
        for line in cl.stdout:
            if not line.startswith("{"):
                continue
            last = json.loads(line)
            reply = on_line(last)
            if reply is not None:
                cl.stdin.write(reply + "\n")
                cl.stdin.flush()
        cl.wait(timeout)
    finally:
        if cl.poll() is None:
            cl.kill()
            cl.wait()
    if cl.returncode != 0 or last is None:
        raise RuntimeError(f"{system} {args}: exit {cl.returncode}")
    return last


def basic(sy, system, p, res):
    """a, b, c and f: one Redis, one set of workers, `reps` rounds."""
    redis = Redis()
    procs = []
    counts = p.counts[system]
    try:
        procs = sy.start(system, redis.url, *layout(system))
        sy.run(system, redis.url, "rtt", 20)  # every worker process has run a task
        for rep in range(p.reps if system in CHIS else min(p.reps, 3)):
            if "rss" in p.scenarios:
                time.sleep(1)  # idle, not a synchronisation: RSS is read while nothing runs
                res.add(system, "rss", rep, {"kib": sum(rss_kib(w.pid) for w in procs)})
            for scenario in ("throughput", "rtt", "cpu"):
                n = counts[scenario]
                if scenario in p.scenarios:
                    res.add(system, scenario, rep, sy.run(system, redis.url, scenario, n))
    finally:
        stop_workers(procs)
        redis.stop()


def kill(sy, system, p, res):
    """d: two workers; the one holding the task is SIGKILLed with all its processes."""
    workers, per = (2, 1) if system == "rq" else (2, 2)
    for rep in range(p.reps if system == "chi" else 1):
        redis = Redis()
        procs = []
        try:
            procs = sy.start(system, redis.url, workers, per)
            pids = {w.pid for w in procs}

            def on_line(row):
                if "holder" not in row:
                    return None
                assert row["holder"] in pids, f"holder {row['holder']} is not one of {pids}"
                kill_tree(row["holder"])
                return "killed"

            row = interactive(sy, system, redis.url, ["kill", p.kill_ms, p.kill_wait], on_line, 300)
            res.add(system, "kill", rep, row)
        finally:
            stop_workers(procs)
            redis.stop()


def outage(sy, system, p, res, aof):
    """e: Redis SIGKILLed once a quarter of the tasks is done, started again 3 s later."""
    redis = Redis(aof=aof)
    procs = []
    try:
        procs = sy.start(system, redis.url, *layout(system))

        def on_line(row):
            if not row.get("progress"):
                return None
            redis.kill()
            time.sleep(3)  # the outage itself
            redis.start()
            return "restarted"

        row = interactive(sy, system, redis.url, ["outage", p.outage_n, p.outage_wait], on_line, 600)
        res.add(system, "outage_aof" if aof else "outage_no_aof", 0, row)
    finally:
        stop_workers(procs)
        redis.stop()


def ceiling(p, res):
    """g: Redis's own stream speed here (redis-benchmark, 50 clients)."""
    import csv

    redis = Redis()
    try:
        def bench(pipeline, *cmd):
            out = subprocess.run(["redis-benchmark", "-p", str(redis.port), "-n", str(p.ceiling_n),
                                  "-P", str(pipeline), "--csv", *cmd],
                                 capture_output=True, text=True, check=True).stdout
            rows = list(csv.reader(out.splitlines()))
            return round(float(rows[-1][1]))

        row = {"xadd_p1": bench(1, "XADD", "bench:s", "*", "f", "v"),
               "xadd_p16": bench(16, "XADD", "bench:s", "*", "f", "v")}
        redis.cli("XGROUP", "CREATE", "bench:s", "g", "0")
        row["xreadgroup_p1"] = bench(1, "XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "bench:s", ">")
        res.add("redis", "ceiling", 0, row)
    finally:
        redis.stop()


# ===== report =====


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v < 10:
        return f"{v:.2f}{unit}"
    return f"{v:,.0f}{unit}"


def rows(med, p):
    """The table: (label, {system: shown value}, chi vs peers, target, met) per line."""
    def get(system, scenario, key):
        return med.get(system, {}).get(scenario, {}).get(key)

    def kill_cell(system):
        m = med.get(system, {}).get("kill")
        if not m:
            return None, "–"
        if m.get("delivered"):
            return m["secs"], f"{m['secs']:.2f} s"
        return None, f"not delivered in {p.kill_wait} s"

    out = []

    def line(label, key_of, higher_better, target=None, met=None, unit=""):
        """`met(system)`: the target judged for one chi-cluster column (None: not measured)."""
        vals = {s: key_of(s) for s in SYSTEMS}
        vs = []
        for chi in CHIS:
            for peer in ("celery", "rq"):
                v, c = vals[peer], vals[chi]
                if c and v:
                    r = c / v if higher_better else v / c
                    who = "" if chi == "chi" else f"prefetch {p.chi_prefetch}: "
                    vs.append(f"{who}{r:.1f}× {'more' if higher_better else 'less'} than {NAMES[peer]}")
        shown = {s: fmt(v, unit) for s, v in vals.items()}
        out.append((label, shown, "; ".join(vs), target or "", {c: met(c) for c in CHIS} if met else None))

    per_sec = lambda s: get(s, "throughput", "per_sec")
    line(f"a. end to end, {p.counts['chi']['throughput']:,} tiny tasks (tasks/s)", per_sec, True, "≥ 30× Celery",
         lambda c: _ratio_met(per_sec(c), per_sec("celery"), 30))
    p50 = lambda s: _ms(get(s, "rtt", "p50_us"))
    line("b. idle round trip p50 (ms)", p50, False, "≤ 1/5 of Celery",
         lambda c: _ratio_met(p50("celery"), p50(c), 5))
    line("b. idle round trip p99 (ms)", lambda s: _ms(get(s, "rtt", "p99_us")), False)
    ideal = lambda s: get(s, "cpu", "vs_ideal")
    line(f"c. {p.counts['chi']['cpu']:,} × 5 ms CPU, 2 processes: wall ÷ ideal", ideal, False, "≤ 1.10",
         lambda c: None if ideal(c) is None else ideal(c) <= 1.10)
    cells = {s: kill_cell(s) for s in SYSTEMS}
    chi_kill = cells["chi"][0]
    out.append((f"d. whole worker SIGKILLed mid-task ({p.kill_ms} ms task): kill → result",
                {s: c[1] for s, c in cells.items()}, "", "≤ 6 s, defaults",
                {"chi": None if "kill" not in med.get("chi", {}) else chi_kill is not None and chi_kill <= 6}))
    for aof in (True, False):
        sc = "outage_aof" if aof else "outage_no_aof"
        shown = {}
        for s in SYSTEMS:
            m = med.get(s, {}).get(sc)
            shown[s] = "–" if not m else (f"{m['ok']:.0f} ok, {m['errors']:.0f} clear errors, "
                                          f"{m['missing']:.0f} silently missing")
        m = med.get("chi", {}).get(sc)
        met = None if not m else (m["errors"] + m["missing"] == 0 if aof else m["missing"] == 0)
        target = "0 lost" if aof else "0 silently missing"
        out.append((f"e. Redis down 3 s mid-run, {p.outage_n:,} tasks, AOF {'on' if aof else 'off'}",
                    shown, "", target, {"chi": met}))
    mib = lambda s: None if get(s, "rss", "kib") is None else get(s, "rss", "kib") / 1024
    line("f. idle worker RSS, all its processes (MiB)", mib, False, "≤ 1/10 of Celery",
         lambda c: _ratio_met(mib("celery"), mib(c), 10))
    return out


def _ms(us):
    return None if us is None else us / 1000


def _ratio_met(big, small, factor):
    if big is None or small is None or small == 0:
        return None
    return big / small >= factor


def markdown(med, meta, p):
    lines = [f"# chi-cluster vs Celery vs RQ ({meta['date']})", "",
             f"{meta['machine']}; Redis {meta['redis']}, Celery {meta['celery']}, RQ {meta['rq']}; "
             f"chi {meta['commit']}. Medians of {p.reps} repetition(s)"
             f"{' — QUICK SMOKE RUN, small counts: not a measurement' if p.quick else ''}. "
             f"Command: `{meta['command']}` ({meta['minutes']:.1f} min).", "",
             f"| scenario | chi-cluster | chi-cluster, prefetch {p.chi_prefetch} | Celery | RQ | chi vs peers "
             "| target (issue 13) | met (as shipped / prefetch) |",
             "|---|---:|---:|---:|---:|---|---|---|"]
    for label, shown, vs, target, met in rows(med, p):
        def mark(m):
            return "–" if m is None else ("met" if m else "**not met**")
        marks = "–" if met is None else " / ".join(mark(met.get(c)) for c in CHIS)
        lines.append(f"| {label} | {shown['chi']} | {shown['chi-pf']} | {shown['celery']} | {shown['rq']} | {vs} "
                     f"| {target} | {marks} |")
    c = med.get("redis", {}).get("ceiling", {})
    if c:
        chi = med.get("chi", {}).get("throughput", {}).get("per_sec")
        share = f" chi-cluster's end-to-end rate is {100 * chi / c['xadd_p16']:.1f}% of pipelined XADD." if chi else ""
        lines += ["", f"g. Redis's own ceiling here (redis-benchmark, 50 clients): XADD {c['xadd_p1']:,} ops/s, "
                      f"{c['xadd_p16']:,} ops/s pipelined ×16; XREADGROUP COUNT 1 {c['xreadgroup_p1']:,} ops/s.{share}"]
    lines += ["", "Tasks per round (throughput / round trips / CPU tasks): " + "; ".join(
        f"{NAMES[s]} {c['throughput']:,} / {c['rtt']:,} / {c['cpu']:,}" for s, c in p.counts.items()
        if s != "chi-pf") +
        f". Rounds: chi-cluster {p.reps} (both columns), Celery and RQ {min(p.reps, 3)} (d and e: once for the "
        "peers, not run for the prefetch column)."]
    notes = [(s, sc, m.get("first_error") or m.get("error")) for s in SYSTEMS
             for sc, m in med.get(s, {}).items() if m.get("first_error") or m.get("error")]
    if notes:
        lines += ["", "Errors seen (first of each):", ""]
        lines += [f"- {NAMES[s]} {sc}: `{e[:200]}`" for s, sc, e in notes]
    return "\n".join(lines) + "\n"


def chart(med, path, p):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"chi": "#c0392b", "chi-pf": "#e67e22", "celery": "#2e86c1", "rq": "#7d7d7d"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))

    def label(s):
        return f"chi-cluster\nprefetch {p.chi_prefetch}" if s == "chi-pf" else NAMES[s]
    panels = [
        ("a. tasks/s end to end (log)", lambda s: med.get(s, {}).get("throughput", {}).get("per_sec"), True),
        ("b. round trip p50, ms (log)", lambda s: _ms(med.get(s, {}).get("rtt", {}).get("p50_us")), True),
        ("c. CPU tasks: wall ÷ ideal", lambda s: med.get(s, {}).get("cpu", {}).get("vs_ideal"), False),
        (f"d. SIGKILL → result, s (none: lost in {p.kill_wait} s)",
         lambda s: med.get(s, {}).get("kill", {}).get("secs") if med.get(s, {}).get("kill", {}).get("delivered") else None, False),
        ("e. Redis 3 s outage, AOF off: silently missing", lambda s: med.get(s, {}).get("outage_no_aof", {}).get("missing"), False),
        ("f. idle worker RSS, MiB", lambda s: (med.get(s, {}).get("rss", {}).get("kib") or 0) / 1024 or None, False),
    ]
    for ax, (title, value, logy) in zip(axes.flat, panels):
        vals = [value(s) for s in SYSTEMS]
        ax.bar([label(s) for s in SYSTEMS], [v or 0 for v in vals], color=[colors[s] for s in SYSTEMS])
        for i, v in enumerate(vals):
            lost = title.startswith("d.") and "kill" in med.get(SYSTEMS[i], {})
            text = fmt(v) if v is not None else ("lost" if lost else "–")
            ax.annotate(text, (i, v or 0), ha="center", va="bottom", fontsize=9)
        ax.set_title(title, fontsize=10)
        if logy and all(v for v in vals if v is not None) and any(vals):
            ax.set_yscale("log")
    fig.suptitle("chi-cluster vs Celery vs RQ on one Redis" + (" (quick smoke run)" if p.quick else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ===== main =====


def versions(python):
    def py(code):
        r = subprocess.run([python, "-c", code], capture_output=True, text=True)
        return r.stdout.strip() or "?"

    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"redis": next((w[2:] for w in redis if w.startswith("v=")), "?"),
            "celery": py("import celery; print(celery.__version__)"),
            "rq": py("import rq; print(rq.__version__)"), "commit": commit,
            "machine": f"{os.cpu_count()} CPUs ({model})"}


def params():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 rep, small counts, short waits")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--scenarios", default="throughput,rtt,cpu,kill,outage,rss,ceiling")
    ap.add_argument("--chi-prefetch", type=int, default=16,
                    help="the chi-pf column's worker --prefetch (default 16)")
    ap.add_argument("--chi", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--out", required=True)
    p = ap.parse_args()
    p.systems = [s for s in p.systems.split(",") if s]
    p.scenarios = set(p.scenarios.split(","))
    big = dict(throughput=10_000, rtt=500, cpu=2_000)
    full = dict(outage_n=1_000, kill_ms=500, kill_wait=60, outage_wait=20, ceiling_n=200_000,
                counts=dict(chi=big, celery=big, rq=dict(throughput=1_000, rtt=200, cpu=300)))
    full["counts"]["chi-pf"] = big
    small = dict(throughput=500, rtt=50, cpu=100)
    quick = dict(outage_n=200, kill_ms=500, kill_wait=15, outage_wait=10, ceiling_n=20_000,
                 counts=dict(chi=small, celery=small, rq=dict(throughput=100, rtt=20, cpu=50)))
    quick["counts"]["chi-pf"] = small
    for k, v in (quick if p.quick else full).items():
        setattr(p, k, v)
    if p.quick:
        p.reps = 1
    return p


def main():
    p = params()
    t0 = time.monotonic()
    sy = Systems(p.chi, p.bench, p.python, p.chi_prefetch)
    res = Results()
    if "ceiling" in p.scenarios:
        ceiling(p, res)
    for system in p.systems:
        log(f"== {NAMES[system]} ==")
        if p.scenarios & {"throughput", "rtt", "cpu", "rss"}:
            basic(sy, system, p, res)
        if "kill" in p.scenarios and system != "chi-pf":
            kill(sy, system, p, res)
        if "outage" in p.scenarios and system != "chi-pf":
            for aof in (True, False):
                outage(sy, system, p, res, aof)
    med = res.medians()
    meta = dict(versions(p.python), date=time.strftime("%Y-%m-%d"),
                minutes=(time.monotonic() - t0) / 60,
                command="crates/chi-cluster/bench/compare.sh " + ("--quick" if p.quick else f"--reps {p.reps}"))
    os.makedirs(p.out, exist_ok=True)
    md = markdown(med, meta, p)
    with open(os.path.join(p.out, "cluster.md"), "w") as f:
        f.write(md)
    params_out = {k: getattr(p, k) for k in ("reps", "quick", "counts", "outage_n", "kill_ms",
                                              "kill_wait", "outage_wait", "ceiling_n", "chi_prefetch")}
    table = [dict(scenario=l, values=v, vs=vs, target=t, met=m) for l, v, vs, t, m in rows(med, p)]
    with open(os.path.join(p.out, "cluster.json"), "w") as f:
        json.dump({"meta": meta, "params": params_out, "medians": med, "table": table, "raw": res.raw}, f, indent=1)
    chart(med, os.path.join(p.out, "cluster.png"), p)
    print(md)
    log(f"wrote {p.out}/cluster.md, cluster.json, cluster.png in {meta['minutes']:.1f} min")


if __name__ == "__main__":
    main()
