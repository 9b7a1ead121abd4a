#!/usr/bin/env bash
# Side-by-side thread-pool comparison: chi vs rayon, tokio (spawn_blocking and spawn), the
# threadpool crate, a crossbeam-channel pool and Python's ThreadPoolExecutor, all with 2 workers.
#
#   benches/scripts/compare_thread_pool.sh              # full run: ~2 min Python, then ~2 min Rust
#   benches/scripts/compare_thread_pool.sh --quick      # smoke test, under a minute
#
# Extra arguments (--quick, --reps N, --workers N, --scenarios a,b) go to both runners.
# Writes, under ${CARGO_TARGET_DIR:-target}/bench-results/:
#   thread_pool.md    machine, date, commit, compilers, commands and the ratio table
#   thread_pool.json  every sample, medians, ratios (pool_bench, with Python merged in)
#   thread_pool.csv   the same as CSV
#   thread_pool.png   chi's advantage over each peer (needs matplotlib; installed with pip if missing)
#   python_thread_pool.json  the Python run alone
# Run it on a quiet machine: nothing else compiling or running.
set -euo pipefail

cd "$(dirname "$0")/../.."
target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/bench-results"
python="${PYTHON:-python3}"
mkdir -p "$out"

load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"

echo "== building pool_bench (release)" >&2
cargo build --release -p chi-bench --bin pool_bench

echo "== Python ThreadPoolExecutor" >&2
"$python" benches/scripts/python_thread_pool.py "$@" --out "$out/python_thread_pool.json"

echo "== Rust pools (pool_bench)" >&2
"$target_dir/release/pool_bench" --python "$out/python_thread_pool.json" --out-dir "$out" "$@" \
    > "$out/thread_pool_table.md"

echo "== chart" >&2
chart=""
if ! "$python" -c 'import matplotlib' 2>/dev/null; then
    "$python" -m pip install --quiet matplotlib || echo "pip could not install matplotlib" >&2
fi
if "$python" -c 'import matplotlib' 2>/dev/null \
    && "$python" benches/scripts/plot.py "$out/thread_pool.json" "$out/thread_pool.png"; then
    chart="thread_pool.png"
else
    echo "no chart: matplotlib unavailable or plotting failed" >&2
fi

commit="$(git rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    commit="$commit (uncommitted changes)"
fi
cpu="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
mem="$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)"

{
    echo "# chi thread pool vs peers"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- commit: $commit"
    echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, ${mem:-unknown memory}, $(uname -sr)"
    echo "- load average before the run: $load_before"
    echo "- rustc: $(rustc --version)"
    echo "- python: $("$python" --version 2>&1)"
    echo
    echo "Reproduce (from the workspace root):"
    echo
    echo '```'
    echo "benches/scripts/compare_thread_pool.sh $*"
    echo '# or the parts:'
    echo "$python benches/scripts/python_thread_pool.py $* --out $out/python_thread_pool.json"
    echo "cargo run --release -p chi-bench --bin pool_bench -- --python $out/python_thread_pool.json $*"
    echo '```'
    echo
    echo "Peers: \`chi\` = chi::ThreadPool + Task; \`rayon\` = rayon::ThreadPool::spawn + oneshot;"
    echo "\`tokio_blocking\` = tokio multi-thread runtime, spawn_blocking + JoinHandle (blocking threads = workers);"
    echo "\`tokio_spawn\` = tokio multi-thread runtime, spawn + JoinHandle; \`threadpool\` = threadpool crate + oneshot;"
    echo "\`channel_pool\` = N threads on a crossbeam channel of boxed closures + oneshot;"
    echo "\`bare_channel\` = the same channel pool with no handles (scenario 4 only);"
    echo "\`python\` = CPython concurrent.futures.ThreadPoolExecutor (run separately, same scenarios)."
    echo
    cat "$out/thread_pool_table.md"
    if [ -n "$chart" ]; then
        echo
        echo "![chi's advantage over each peer]($chart)"
    fi
} > "$out/thread_pool.md"

cat "$out/thread_pool.md"
echo "wrote $out/thread_pool.md" >&2
