#!/usr/bin/env bash
# BENCHMARKS §4: chi-cluster vs Celery (prefork, concurrency 2) vs RQ (2 workers), one Redis
# of its own, all in one run; medians of repetitions. Run it on a quiet machine (no builds).
#
#   crates/chi-cluster/bench/compare.sh            # full run: --reps 5 (10 to 15 minutes)
#   crates/chi-cluster/bench/compare.sh --quick    # smoke run: 1 rep, small counts (2.5 minutes)
#   ... --reps 3 --systems chi,chi-pf,celery --scenarios throughput,rtt --chi-prefetch 32
#
# Needs redis-server, redis-cli, redis-benchmark, python3 with venv, and pip access. Builds
# `chi` and the `cluster_bench` example in release, installs celery[redis], rq and matplotlib
# into target/cluster-bench-venv, and writes target/bench-results/cluster.{md,json,png}.
# Scenarios and method: compare.py's docstring.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree
cd "$(dirname "$0")/../../.."
HERE=crates/chi-cluster/bench
VENV=target/cluster-bench-venv

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool not found (apt-get install redis-server python3-venv)" >&2; exit 1; }
done
cargo build --release -q -p chi-cli --bin chi
cargo build --release -q -p chi-cluster --example cluster_bench
if ! "$VENV/bin/python" -c 'import celery, rq, matplotlib' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'celery[redis]' rq matplotlib
fi
exec "$VENV/bin/python" "$HERE/compare.py" \
    --chi target/release/chi --bench target/release/examples/cluster_bench \
    --python "$(pwd)/$VENV/bin/python" --out target/bench-results "$@"
