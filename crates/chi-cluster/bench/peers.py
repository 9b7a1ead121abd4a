"""Celery and RQ sides of BENCHMARKS §4 (chi-cluster vs Celery vs RQ on one Redis).

    python peers.py celery|rq worker <redis-url> [concurrency] [name]   # a worker (the driver starts them)
    python peers.py celery|rq <scenario> <redis-url> [n] [wait s]       # a client

Scenarios and the JSON lines they print are those of chi's `cluster_bench` example: ready,
throughput, rtt, cpu, kill, outage. Tasks match chi's built-ins: upper(s), burn(ms), sleep(ms);
`mark(path, ms)` also writes its worker's pid to `path` when it starts (for the kill scenario).
Both systems run with their default settings, apart from the Redis URLs.
"""
import json
import os
import statistics
import sys
import tempfile
import time

QUEUE = "peers"


def burn(ms):
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x = (x * 31 + i) & 0xFFFFFFFF
    return "burned"


def upper(s):
    return s.upper()


def sleep(ms):
    time.sleep(ms / 1000)
    return ms


def mark(path, ms):
    """Writes the pid of the worker running it (the parent of a prefork child or RQ work horse)."""
    with open(path, "w") as f:
        f.write(str(os.getppid()))
    time.sleep(ms / 1000)
    return ms


def say(**kw):
    print(json.dumps(kw), flush=True)


def retrying(once, timeout):
    """`once(seconds left)` until it answers or the time is up; connection-level errors (a
    broker that went away and came back) are retried, any other error is the answer."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError, TimeoutError

    end = time.monotonic() + timeout
    while True:
        try:
            return once(max(end - time.monotonic(), 0))
        except (ConnectionError, TimeoutError, OperationalError, OSError):
            if time.monotonic() >= end:
                return "missing"
            time.sleep(0.05)
        except Exception as e:
            return "error: " + repr(e)[:300]


# ===== the two systems behind one small interface =====


class CelerySide:
    def __init__(self, url):
        from celery import Celery

        self.app = Celery("peers", broker=url, backend=url)
        for f in (upper, burn, sleep, mark):
            self.app.task(name=f.__name__)(f)

    def send(self, name, *args):
        return self.app.tasks[name].delay(*args)

    def wait(self, handle, timeout):
        """'ok', 'error: …' (the task failed, or the backend said so) or 'missing' (nothing
        within the timeout). A lost connection is retried until then: it says nothing about
        the task."""
        from celery.exceptions import TimeoutError as Silent

        def once(left):
            if left < 0.05:  # time is up: look, do not wait (a get() waits for a subscription)
                if not handle.ready():
                    return "missing"
                left = 5
            try:
                handle.get(timeout=left)
                return "ok"
            except Silent:
                return "missing"

        return retrying(once, timeout)

    def workers(self):
        return len(self.app.control.ping(timeout=0.5) or [])

    def serve(self, concurrency, name):
        argv = ["worker", "-P", "prefork", "-c", str(concurrency), "-Q", "celery",
                "--loglevel", "WARNING", "-n", f"{name}@%h"]
        self.app.worker_main(argv)


class RqSide:
    def __init__(self, url):
        from redis import Redis
        from rq import Queue

        self.redis = Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.redis)

    def send(self, name, *args):
        return self.queue.enqueue(f"peers.{name}", *args)

    def wait(self, job, timeout):
        def once(left):
            # Whole seconds, one at a time: a long blocking read can outlast the socket timeout.
            end = time.monotonic() + left
            while True:
                r = job.latest_result(timeout=1 if end - time.monotonic() >= 1 else 0)
                if r is not None:
                    return "ok" if r.type == r.Type.SUCCESSFUL else "error: " + str(r.exc_string)[-200:]
                if time.monotonic() >= end:
                    return "missing"

        return retrying(once, timeout)

    def workers(self):
        from rq import Worker

        return len(Worker.all(connection=self.redis))

    def serve(self, concurrency, name):
        from rq import Worker

        Worker([self.queue], connection=self.redis, name=f"{name}-{os.getpid()}").work()


# ===== scenarios =====


def ready(side, n):
    end = time.monotonic() + 60
    while (got := side.workers()) < n:
        if time.monotonic() > end:
            sys.exit(f"only {got} of {n} workers after 60 s")
        time.sleep(0.05)
    say(ready=got)


def throughput(side, n):
    t0 = time.perf_counter()
    handles = [side.send("upper", f"t{i}") for i in range(n)]
    ok = sum(side.wait(h, 600) == "ok" for h in handles)
    s = time.perf_counter() - t0
    say(n=n, ok=ok, secs=round(s, 3), per_sec=round(ok / s))


def rtt(side, n):
    us = []
    for _ in range(n):
        t = time.perf_counter()
        side.wait(side.send("upper", "x"), 60)
        us.append((time.perf_counter() - t) * 1e6)
    us.sort()
    say(n=n, p50_us=round(statistics.median(us)), p99_us=round(us[int((n - 1) * 0.99)]))


def cpu(side, n):
    t0 = time.perf_counter()
    handles = [side.send("burn", 5) for _ in range(n)]
    ok = sum(side.wait(h, 600) == "ok" for h in handles)
    s = time.perf_counter() - t0
    say(n=n, ok=ok, secs=round(s, 3), vs_ideal=round(s / (n * 0.005 / 2), 3))


def kill(side, ms, wait):
    path = os.path.join(tempfile.mkdtemp(prefix="peers-kill-"), "holder")
    h = side.send("mark", path, ms)
    end = time.monotonic() + 30
    while not os.path.exists(path) or not open(path).read():
        if time.monotonic() > end:
            sys.exit("no worker took the task within 30 s")
        time.sleep(0.005)
    say(holder=int(open(path).read()))
    sys.stdin.readline()
    killed = time.perf_counter()
    got = side.wait(h, wait)
    secs = round(time.perf_counter() - killed, 3)
    if got == "ok":
        say(delivered=True, secs=secs)
    elif got == "missing":
        say(delivered=False, secs=None)
    else:
        say(delivered=False, secs=secs, error=got)


def outage(side, n, wait):
    handles = [side.send("sleep", 10) for _ in range(n)]
    say(submitted=n)
    side.wait(handles[n // 4], 60)
    say(progress=True)
    sys.stdin.readline()
    deadline = time.monotonic() + wait
    counts = {"ok": 0, "errors": 0, "missing": 0}
    first_error = ""
    for h in handles:
        got = side.wait(h, deadline - time.monotonic())
        if got.startswith("error"):
            first_error = first_error or got
            counts["errors"] += 1
        else:
            counts["ok" if got == "ok" else "missing"] += 1
    say(n=n, submit_failed=0, first_error=first_error[:300], **counts)


def main():
    system, scenario, url = sys.argv[1], sys.argv[2], sys.argv[3]
    side = (CelerySide if system == "celery" else RqSide)(url)
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if scenario == "worker":
        side.serve(n, sys.argv[5] if len(sys.argv) > 5 else "w")
        return
    if scenario == "ready":
        return ready(side, n)
    side.wait(side.send("upper", "warm"), 60)
    if scenario in ("kill", "outage"):
        wait = float(sys.argv[5]) if len(sys.argv) > 5 else 60
        return {"kill": kill, "outage": outage}[scenario](side, n, wait)
    {"throughput": throughput, "rtt": rtt, "cpu": cpu}[scenario](side, n)


if __name__ == "__main__":
    main()
    # A client is done once it printed: skip interpreter teardown, where Celery's result
    # handles try to unsubscribe over a closing Redis client and print tracebacks.
    if sys.argv[2] != "worker":
        sys.stdout.flush()
        os._exit(0)
