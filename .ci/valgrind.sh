#!/usr/bin/env bash
# Memcheck over the examples and a short `chi serve` + `chi load` run (STYLE 43, 55): fails on
# memory errors and on definite or indirect leaks. "Possibly lost" and "still reachable" blocks
# (thread-locals and global statics of std, tracing, signal handling) are not failures.
# Runnable locally as is; logs go to target/valgrind/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# ---- valgrind itself ------------------------------------------------------------------------
if ! command -v valgrind >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind
fi
valgrind --version

# ---- the binaries, built once (the same release artefacts as the "examples" CI step) ----------
cargo build --release -p chi --example quickstart --example process_pool
cargo build --release -p chi-cli
bin=target/release

logs=target/valgrind
rm -rf "$logs"
mkdir -p "$logs"

# Definite and indirect leaks count as errors, so "ERROR SUMMARY: 0 errors" covers both.
# shellcheck disable=SC2054 # the commas are inside option values
vg=(valgrind --tool=memcheck --leak-check=full
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
    --error-exitcode=1 --num-callers=40 --child-silent-after-fork=yes)
if [ -f .ci/valgrind.supp ]; then vg+=(--suppressions=.ci/valgrind.supp); fi

# ---- every background process is reaped on any exit path ------------------------------------
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ]; then wait "$server_pid" 2>/dev/null || true; fi
    server_pid=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed=0
unchecked=0 # worker logs without a summary
fail() {
    echo "valgrind: FAIL: $*" >&2
    failed=1
}

# check_log LABEL LOG [optional]: prints the log's summary lines and fails on errors or on
# definite/indirect leaks. A log without a summary is a failure unless "optional" is given
# (a worker the process pool killed with SIGKILL on purpose never gets to write one).
check_log() {
    local label=$1 log=$2 optional=${3:-}
    local summary definite indirect
    summary=$(grep -E 'ERROR SUMMARY:' "$log" || true)
    if [ -z "$summary" ]; then
        if [ "$optional" = optional ]; then
            echo "  $label: no summary (killed with SIGKILL)"
            unchecked=$((unchecked + 1))
            return 0
        fi
        fail "$label: no valgrind summary in $log"
        cat "$log" >&2
        return 0
    fi
    # Absent when valgrind says "All heap blocks were freed -- no leaks are possible".
    definite=$(grep -oE 'definitely lost: [0-9,]+ bytes in [0-9,]+ blocks' "$log" || echo 'definitely lost: 0 bytes')
    indirect=$(grep -oE 'indirectly lost: [0-9,]+ bytes in [0-9,]+ blocks' "$log" || echo 'indirectly lost: 0 bytes')
    echo "  $label: ${summary#*== } | $definite | $indirect"
    if ! grep -qE 'ERROR SUMMARY: 0 errors' <<<"$summary" \
        || ! grep -qE 'lost: 0 bytes' <<<"$definite" \
        || ! grep -qE 'lost: 0 bytes' <<<"$indirect"; then
        fail "$label: memory errors or leaks, see below ($log)"
        cat "$log" >&2
    fi
}

# run_vg LABEL LOG CMD...: runs CMD under memcheck (bounded), its output to LOG.out.
run_vg() {
    local label=$1 log=$2 rc=0
    shift 2
    echo "--- $label"
    timeout -k 10 240 "${vg[@]}" --log-file="$log" "$@" >"$log.out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$label: exit status $rc (1 = valgrind found errors, 124 = timed out)"
        tail -n 30 "$log.out" >&2
    fi
}

# ---- (1) the thread-pool example ------------------------------------------------------------
run_vg "quickstart" "$logs/quickstart.log" "$bin/examples/quickstart"
check_log "quickstart" "$logs/quickstart.log"

# ---- (2) the process-pool example -----------------------------------------------------------
# Its workers re-exec the same binary, and they are traced too (--trace-children): each process
# writes its own log, %p being its pid. That costs ~5 s here. The worker running `crash` aborts
# (memcheck still writes its summary) and the one running `stuck` is killed with SIGKILL at the
# task timeout, so it writes none. Valgrind 3.19 does not know pidfd_open (syscall 434, a
# warning in the log): under valgrind the supervisor takes its no-pidfd path.
# The exit status only reflects the parent: a worker's own --error-exitcode is not passed on,
# so every worker log is checked below.
run_vg "process_pool" "$logs/process_pool.%p.log" --trace-children=yes "$bin/examples/process_pool"
n=0
for log in "$logs"/process_pool.*.log; do
    [ -e "$log" ] || continue
    n=$((n + 1))
    pid=${log%.log}
    pid=${pid##*.}
    if grep -q '__chi_process_pool_worker_entry' "$log"; then
        check_log "process_pool worker $pid" "$log" optional
    else
        check_log "process_pool parent $pid" "$log"
    fi
done
if [ "$n" -lt 2 ]; then fail "process_pool: expected the parent's and the workers' logs, found $n"; fi
# Only the `stuck` task's worker may go unchecked; any other worker must exit and be checked.
if [ "$unchecked" -gt 1 ]; then fail "process_pool: $unchecked workers left no summary (1 expected)"; fi

# ---- (3) `chi serve` under memcheck, `chi load` natively against it -------------------------
# Both server models: `event` (event loops) and `pooled` (connections served by chi's ThreadPool).
for model in event pooled; do
    label="chi serve --model $model"
    log="$logs/serve-$model.log"
    out="$logs/serve-$model.stdout"
    echo "--- $label"
    : >"$out"
    # timeout forwards the SIGINT sent below to valgrind, which passes it on to chi.
    timeout -k 10 180 "${vg[@]}" --log-file="$log" \
        "$bin/chi" serve --addr 127.0.0.1:0 --model "$model" >"$out" 2>"$log.stderr" &
    server_pid=$!

    # Bounded wait for the first stdout line, `listening on IP:PORT` (~1 s under valgrind).
    addr=""
    for _ in $(seq 600); do
        addr=$(sed -n 's/^listening on \([^ ]*\)$/\1/p' "$out" | head -n 1)
        if [ -n "$addr" ] || ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        fail "$label: no 'listening on' line within 60 s"
        cat "$out" "$log.stderr" "$log" >&2 || true
        exit 1
    fi

    rc=0
    timeout -k 5 120 "$bin/chi" load --addr "$addr" --connections 20 --messages 200 --size 64 \
        --timeout 90s --json >"$logs/load-$model.json" 2>"$logs/load-$model.stderr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$label: chi load exited $rc"
        cat "$logs/load-$model.json" "$logs/load-$model.stderr" >&2
    else
        echo "  chi load: $(grep -oE '"answers":\{[^}]*\}' "$logs/load-$model.json")"
    fi

    # SIGINT drains and stops the server; memcheck then writes its summary.
    kill -INT "$server_pid"
    rc=0
    wait "$server_pid" || rc=$?
    server_pid=""
    if [ "$rc" -ne 0 ]; then
        fail "$label: exit status $rc after SIGINT (1 = valgrind found errors, 124 = timed out)"
        tail -n 30 "$log.stderr" >&2
    fi
    check_log "$label" "$log"
done

if [ "$failed" -ne 0 ]; then
    echo "valgrind: FAILED (logs in $logs/)" >&2
    exit 1
fi
echo "valgrind: ok"
