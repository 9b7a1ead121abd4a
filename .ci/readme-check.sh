#!/usr/bin/env bash
# Every ```rust block of the root README.md must appear verbatim (fence line included) in
# crates/chi/README.md: that file is the crate's README on crates.io and runs as chi's doctest,
# so the examples shown at the root are compiled and run through it.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - README.md crates/chi/README.md <<'PY'
import re
import sys

root_path, crate_path = sys.argv[1], sys.argv[2]
BLOCK = re.compile(r"^```rust[^\n]*\n.*?^```[ \t]*$", re.S | re.M)

with open(root_path, encoding="utf-8") as f:
    blocks = BLOCK.findall(f.read())
with open(crate_path, encoding="utf-8") as f:
    crate_readme = f.read()

missing = [b for b in blocks if b not in crate_readme]
for block in missing:
    first = next((l for l in block.splitlines()[1:] if l.strip()), "")
    print(f"{crate_path} lacks a rust block of {root_path} (starting {first.strip()!r})")
if missing:
    print("copy the block(s) verbatim, or change both files together")
    sys.exit(1)
print(f"readme check: all {len(blocks)} rust block(s) of {root_path} are in {crate_path}")
PY
