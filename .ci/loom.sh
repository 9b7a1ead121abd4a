#!/usr/bin/env bash
# Model-checks the task state machine with loom: every interleaving of each two-thread race
# in crates/chi/src/task/tests.rs, with bounded preemptions. Runnable locally as is.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg chi_loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-10000}"
# A separate target dir: the cfg changes every crate's build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
cargo test -p chi --lib --release -- --test-threads=2 task::tests
