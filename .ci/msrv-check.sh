#!/usr/bin/env bash
# `rust-version` must be at least the `rust-version` of every crate the publishable crates
# build with (normal and build dependencies, every target, at the locked versions): a user on
# the stated toolchain has to be able to build them. Clippy's `incompatible_msrv` covers our
# own code's use of std.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo metadata --format-version 1 | python3 -c '
import json, sys

meta = json.load(sys.stdin)
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
members = [i for i in meta["workspace_members"] if pkgs[i]["publish"] != []]

def version(v):
    return tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])

seen, todo = set(), list(members)
while todo:
    node = nodes[todo.pop()]
    for dep in node["deps"]:
        kinds = {k["kind"] for k in dep["dep_kinds"]}
        if kinds & {None, "build"} and dep["pkg"] not in seen:
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])

ours = min(version(pkgs[m]["rust_version"] or "0") for m in members)
needs = sorted(
    ((version(pkgs[d]["rust_version"]), pkgs[d]["name"] + " " + pkgs[d]["version"])
     for d in seen if pkgs[d]["rust_version"]),
    reverse=True,
)
top = needs[0] if needs else ((0, 0, 0), "nothing")
show = lambda v: ".".join(map(str, v))
if top[0] > ours:
    for v, name in needs:
        if v > ours:
            print(f"{name} needs Rust {show(v)}")
    print(f"rust-version is {show(ours)}: raise it or pin older dependencies")
    sys.exit(1)
print(f"rust-version {show(ours)} covers every dependency (the highest: {top[1]}, {show(top[0])})")
'
