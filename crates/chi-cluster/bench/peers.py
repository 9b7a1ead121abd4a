"""Celery and RQ sides of BENCHMARKS §4 (chi-cluster vs Celery vs RQ on one Redis).

    python peers.py celery|rq worker <redis-url>              # run a worker (the script starts them)
    python peers.py celery|rq <scenario> <redis-url> <n>      # throughput | rtt | cpu

Tasks match chi's built-ins: upper(s) and burn(ms). Prints one JSON line like the chi client.
"""
import json
import statistics
import sys
import time


def burn(ms):
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x = (x * 31 + i) & 0xFFFFFFFF
    return "burned"


def upper(s):
    return s.upper()


def celery_app(url):
    from celery import Celery

    app = Celery("peers", broker=url, backend=url)
    app.conf.update(result_expires=3600, worker_prefetch_multiplier=1, task_acks_late=False)
    app.task(name="upper")(upper)
    app.task(name="burn")(burn)
    return app


def report(system, scenario, **kw):
    print(json.dumps({"system": system, "scenario": scenario, **kw}), flush=True)


def measure(system, scenario, n, send, wait):
    """One scenario, given how to send a task (`send(name, arg)`) and wait for it (`wait(h)`)."""
    wait(send("upper", "warm"))
    t0 = time.perf_counter()
    if scenario == "throughput":
        handles = [send("upper", f"t{i}") for i in range(n)]
        ok = sum(1 for h in handles if wait(h))
        s = time.perf_counter() - t0
        report(system, scenario, n=n, ok=ok, secs=round(s, 3), per_sec=round(ok / s))
    elif scenario == "rtt":
        us = []
        for _ in range(n):
            t = time.perf_counter()
            wait(send("upper", "x"))
            us.append((time.perf_counter() - t) * 1e6)
        us.sort()
        report(system, scenario, n=n, p50_us=round(statistics.median(us)), p99_us=round(us[int((n - 1) * 0.99)]))
    elif scenario == "cpu":
        handles = [send("burn", 5) for _ in range(n)]
        ok = sum(1 for h in handles if wait(h))
        s = time.perf_counter() - t0
        report(system, scenario, n=n, ok=ok, secs=round(s, 3), vs_ideal=round(s / (n * 0.005 / 2), 3))


def run_celery(scenario, url, n):
    app = celery_app(url)
    measure("celery", scenario, n, lambda name, arg: app.tasks[name].delay(arg), lambda r: r.get(timeout=600) is not None)


def run_rq(scenario, url, n):
    from redis import Redis
    from rq import Queue

    q = Queue("peers", connection=Redis.from_url(url))
    funcs = {"upper": upper, "burn": burn}

    def wait(job):
        r = job.latest_result(timeout=600)
        return r is not None and r.type == r.Type.SUCCESSFUL

    measure("rq", scenario, n, lambda name, arg: q.enqueue(funcs[name], arg), wait)


def main():
    system, scenario, url = sys.argv[1], sys.argv[2], sys.argv[3]
    if scenario == "worker":
        if system == "celery":
            celery_app(url).worker_main(["worker", "-P", "prefork", "-c", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"])
        else:
            from redis import Redis
            from rq import Queue, Worker

            Worker([Queue("peers", connection=Redis.from_url(url))], connection=Redis.from_url(url)).work()
        return
    n = int(sys.argv[4])
    (run_celery if system == "celery" else run_rq)(scenario, url, n)


if __name__ == "__main__":
    main()
