#!/usr/bin/env bash
# Model-checks with loom, with bounded preemptions: every interleaving of each two-thread race
# of the task state machine (crates/chi/src/task/tests.rs) and of the thread pool's wake-up
# protocol (crates/chi/src/thread_pool/sleep.rs), and of the process pool's doorbell
# (crates/chi/src/process_pool/bell.rs). Runnable locally as is.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg chi_loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-10000}"
# A separate target dir: the cfg changes every crate's build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
cargo test -p chi --lib --release -- --test-threads=2 task::tests thread_pool::sleep::tests process_pool::bell::loom_models
