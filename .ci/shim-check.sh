#!/usr/bin/env bash
# Fails if a file of the chi crate other than src/loom.rs names std's synchronisation types
# directly: they must come from crate::loom so the loom models check them.
set -euo pipefail
cd "$(dirname "$0")/.."
hits=$(grep -rnE 'std::sync::(atomic|Mutex|Condvar|RwLock)|std::sync::\{[^}]*(atomic|Mutex|Condvar|RwLock)|std::cell::UnsafeCell' \
    crates/chi/src --include='*.rs' | grep -v '^crates/chi/src/loom.rs:' || true)
if [ -n "$hits" ]; then
    echo "use crate::loom::… instead of std's synchronisation types:" >&2
    echo "$hits" >&2
    exit 1
fi
echo "shim check: ok"
