#!/usr/bin/env bash
# What `cargo publish` would upload, crate by crate (every workspace member not marked
# `publish = false`): each package carries README.md, LICENSE-MIT and LICENSE-APACHE, and no
# `include_str!` / `include_bytes!` / `#[path]` in it reaches outside its own directory (a
# file outside the package builds here but breaks the crate, or its doctests, once published).
set -euo pipefail
cd "$(dirname "$0")/.."

crates=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["publish"] != []:
        print(p["name"], p["manifest_path"].rsplit("/", 1)[0])
')

status=0
while read -r name dir; do
    listing=$(cargo package --list --allow-dirty -p "$name" 2>/dev/null)
    for f in README.md LICENSE-MIT LICENSE-APACHE; do
        if ! grep -qx "$f" <<<"$listing"; then
            echo "$name: the package lacks $f"
            status=1
        fi
    done
    python3 - "$name" "$dir" "$listing" <<'PY' || status=1
import os, re, sys
name, root, listing = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
ref = re.compile(r'(?:include_str!|include_bytes!)\(\s*"([^"]+)"|#\[path\s*=\s*"([^"]+)"\]')
bad = 0
for rel in listing.split():
    if not rel.endswith(".rs"):
        continue
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for m in ref.finditer(text):
        target = os.path.realpath(os.path.join(os.path.dirname(path), m.group(1) or m.group(2)))
        if os.path.commonpath([root, target]) != root:
            print(f"{name}: {rel} includes {m.group(1) or m.group(2)}, outside the package")
            bad = 1
sys.exit(bad)
PY
    echo "$name: package contents checked"
done <<<"$crates"
exit "$status"
