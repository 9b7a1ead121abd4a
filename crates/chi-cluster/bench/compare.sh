#!/usr/bin/env bash
# BENCHMARKS §4: chi-cluster vs Celery (prefork, concurrency 2) vs RQ (2 workers), one Redis,
# all in one run, medians of REPS repetitions. Run it on a quiet machine (no builds running).
#
#   crates/chi-cluster/bench/compare.sh   # env: REPS=3 N=10000 RTT_N=1000 CPU_N=2000 PREFETCH=0
#
# Needs redis-server, redis-benchmark, python3 with venv. Installs celery[redis] and rq into
# target/cluster-bench-venv. Prints one JSON line per measurement, then the medians.
set -euo pipefail
cd "$(dirname "$0")/../../.."
REPS=${REPS:-3}; N=${N:-10000}; RTT_N=${RTT_N:-1000}; CPU_N=${CPU_N:-2000}
PREFETCH=${PREFETCH:-0} # chi worker --prefetch (Celery prefetches by default; chi does not)
HERE=crates/chi-cluster/bench
VENV=target/cluster-bench-venv
OUT=target/cluster-bench.jsonl
: > "$OUT"

cargo build --release -p chi-cli -p chi-cluster --example cluster_bench
CHI=target/release/chi; BENCH=target/release/examples/cluster_bench
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'celery[redis]' rq
fi
PY="$VENV/bin/python"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="redis://127.0.0.1:$PORT"
DIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize no --loglevel warning &
REDIS=$!
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait "${PIDS[@]}" 2>/dev/null || true; kill "$REDIS"; wait "$REDIS" || true; rm -rf "$DIR"; }
trap cleanup EXIT
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done

echo "== Redis's own ceiling (redis-benchmark, XADD) =="
redis-benchmark -p "$PORT" -q -n 200000 -P 1 xadd bench:s '*' f v | tee -a "$DIR/ceiling.txt"
redis-benchmark -p "$PORT" -q -n 200000 -P 16 xadd bench:s '*' f v | tee -a "$DIR/ceiling.txt"
redis-cli -p "$PORT" del bench:s >/dev/null

stop_workers() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); redis-cli -p "$PORT" flushall >/dev/null; }
rss_of() { # RSS in KiB of a process and all its descendants
    local total c
    total=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    for c in $(pgrep -P "$1"); do total=$((total + $(rss_of "$c"))); done
    echo "$total"
}

for sys in chi celery rq; do
    case $sys in
    chi) "$CHI" -q cluster worker --redis "$URL" --processes 2 --prefetch "$PREFETCH" & PIDS+=($!) ;;
    celery) "$PY" "$HERE/peers.py" celery worker "$URL" & PIDS+=($!) ;;
    rq) "$PY" "$HERE/peers.py" rq worker "$URL" & PIDS+=($!); "$PY" "$HERE/peers.py" rq worker "$URL" & PIDS+=($!) ;;
    esac
    sleep 3 # workers start (not a measurement; each client warms up with one task first)
    rss=0; for p in "${PIDS[@]}"; do rss=$((rss + $(rss_of "$p"))); done
    echo "{\"system\":\"$sys\",\"scenario\":\"idle_rss\",\"kib\":$rss}" | tee -a "$OUT"
    for rep in $(seq "$REPS"); do
        for sc in "throughput $N" "rtt $RTT_N" "cpu $CPU_N"; do
            if [ $sys = chi ]; then "$BENCH" "$URL" $sc; else "$PY" "$HERE/peers.py" $sys $sc; fi | tee -a "$OUT"
        done
    done
    stop_workers
done

echo "== medians =="
python3 - "$OUT" <<'PY'
import json, statistics, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = collections.defaultdict(list)
for r in rows:
    by[(r["system"], r["scenario"])].append(r)
for (s, sc), rs in sorted(by.items()):
    keys = [k for k in rs[0] if k not in ("system", "scenario", "n")]
    print(s, sc, {k: statistics.median(r[k] for r in rs) for k in keys if isinstance(rs[0][k], (int, float))})
PY
echo "Not scripted yet: SIGKILL-a-whole-worker recovery time and the 3 s Redis outage (see the example's 'wait' scenario)."
