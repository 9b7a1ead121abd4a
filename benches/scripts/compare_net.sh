#!/usr/bin/env bash
# Side-by-side network benchmark: chi's server (event; uring; pooled with 3 workers, the seed's
# design; pooled with one worker per client) against a tokio task-per-connection echo, a monoio
# thread-per-core io_uring echo, a std
# thread-per-connection echo, a one-thread mio loop and the seed's Python server, all driven
# by the same `chi load`, each server started fresh and pinned to CPU 0, the load to CPU 1.
#
#   benches/scripts/compare_net.sh              # full run: 3 repetitions, ~6-9 minutes
#   benches/scripts/compare_net.sh --quick      # smoke test of the whole pipeline, ~1-2 minutes
#   benches/scripts/compare_net.sh --syscalls --scenarios B,D   # syscalls per message (strace)
#
# Extra arguments go to benches/scripts/net_bench.py (--reps N, --scenarios A,B,D,E,F,P,
# --peers chi_event,tokio,..., --no-reuse-port; see `net_bench.py --help`).
# Writes, under ${CARGO_TARGET_DIR:-target}/bench-results/:
#   net.md     machine, date, commit, commands, one table per scenario, targets, SO_REUSEPORT
#   net.json   every run (each `chi load` report, server CPU and memory), medians, targets
#   net.png    throughput relative to tokio per scenario, and scenario E's server memory
#   net-logs/  each server's stderr
# Run it on a quiet machine: nothing else compiling or running.
set -euo pipefail

cd "$(dirname "$0")/../.."
target_dir="${CARGO_TARGET_DIR:-target}"
python="${PYTHON:-python3}"

if [ "$(nproc)" -lt 2 ]; then
    echo "compare_net.sh: needs 2 CPUs (server on CPU 0, load on CPU 1)" >&2
    exit 1
fi
command -v taskset >/dev/null || echo "compare_net.sh: taskset missing: nothing will be pinned" >&2

# Scenario E needs 10,001 descriptors in the server and 10,000 in the idle-client process;
# every process started from here inherits this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
    echo "compare_net.sh: the descriptor limit is $(ulimit -n) (hard $(ulimit -Hn)); scenario E needs" \
         "about 10,100: raise the hard limit (ulimit -Hn, limits.conf) or pass --scenarios A,B,D,F,P" >&2
fi

echo "== building chi and the peers (release)" >&2
cargo build --release -p chi-cli --bin chi
cargo build --release -p chi-bench --bin peer_tokio_echo --bin peer_thread_echo --bin peer_mio_echo \
    --bin peer_monoio_echo

if ! "$python" -c 'import matplotlib' 2>/dev/null; then
    "$python" -m pip install --quiet matplotlib || echo "pip could not install matplotlib: no chart" >&2
fi

echo "== running (server on CPU 0, chi load on CPU 1)" >&2
"$python" benches/scripts/net_bench.py --bins "$target_dir/release" --out-dir "$target_dir/bench-results" \
    --python "$python" "$@"
