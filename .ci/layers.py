#!/usr/bin/env python3
"""Checks that modules inside each crate import each other one way only.

For every `.rs` file under `crates/*/src`, it collects the modules the file names through
`crate::…`, `super::…` and `self::…` paths (in `use` items and in code). Each reference is
lifted to the folder where the two modules meet: `a/x.rs → a/y.rs` is an edge x → y among the
children of `a/`; `a/x.rs → b/z.rs` is an edge a → b among the crate's top-level modules. A
folder's own `mod.rs` and its children are parent and child, not siblings, so references
between them are not edges. A cycle among the siblings of any folder fails the check.

Usage: .ci/layers.py [--graph]   (--graph also prints every folder's edges)
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")


def module_files(src):
    """Maps module path (tuple) -> file, for one crate's src dir."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        mods[tuple(parts)] = f
    return mods


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def expand_braces(text):
    """Turns `crate::a::{b, c::d}` into `crate::a::b crate::a::c::d` (nested one level deep)."""
    out = []
    for m in re.finditer(r"\b(crate|super|self)((?:::[A-Za-z_]\w*)*)::\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", text):
        head = m.group(1) + m.group(2)
        for item in split_top(m.group(3)):
            item = item.strip()
            if not item or item == "self":
                out.append(head)
                continue
            inner = re.match(r"([\w:]*)::\{(.*)\}$", item, flags=re.S)
            if inner:
                for sub in split_top(inner.group(2)):
                    out.append(f"{head}::{inner.group(1)}::{sub.strip()}")
            else:
                out.append(f"{head}::{item}")
    return " ".join(out)


def split_top(s):
    depth, cur, parts = 0, "", []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def resolve(owner, is_folder_mod, kind, segs, mods):
    """The module a path points into: the longest prefix that is a module."""
    if kind == "crate":
        base = []
    elif kind == "self":
        base = list(owner) if is_folder_mod or not owner else list(owner)
    else:  # super
        base = list(owner[:-1])
    segs = [s for s in segs if s]
    while segs and segs[0] == "super":
        base = base[:-1]
        segs = segs[1:]
    best = tuple(base)
    path = list(base)
    for s in segs:
        path.append(s)
        if tuple(path) in mods:
            best = tuple(path)
        else:
            break
    return best


def edges_of(crate_src):
    mods = module_files(crate_src)
    edges = set()
    for owner, f in mods.items():
        text = strip_comments(f.read_text())
        text = text + " " + expand_braces(text)
        # A file's own `mod.rs` resolves `self::`/`super::` from the folder.
        is_folder_mod = f.name in ("mod.rs", "lib.rs", "main.rs")
        super_owner = owner + ("_",) if is_folder_mod else owner
        for m in PATH_RE.finditer(text):
            kind, rest = m.group(1), m.group(2)
            if rest == "::{":
                continue
            segs = rest.split("::")[1:]
            target = resolve(super_owner if kind == "super" else owner, is_folder_mod, kind, segs, mods)
            if target != owner:
                edges.add((owner, target))
    return mods, edges


def lift(a, b):
    """(folder, child_a, child_b) where a and b meet, or None for parent/child pairs."""
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    if i == len(a) or i == len(b):
        return None
    return a[:i], a[i], b[i]


def find_cycle(graph):
    color, stack = {}, []

    def dfs(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if color.get(m) is None:
                c = dfs(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(graph):
        if color.get(n) is None:
            c = dfs(n)
            if c:
                return c
    return None


def main():
    show = "--graph" in sys.argv
    bad = 0
    for src in sorted(ROOT.glob("crates/*/src")):
        crate = src.parent.name
        _, edges = edges_of(src)
        folders = defaultdict(lambda: defaultdict(set))
        for a, b in edges:
            lifted = lift(a, b)
            if lifted:
                folder, x, y = lifted
                folders[folder][x].add(y)
        for folder, graph in sorted(folders.items()):
            name = crate + ("/" + "/".join(folder) if folder else "")
            if show:
                for x in sorted(graph):
                    print(f"{name}: {x} -> {', '.join(sorted(graph[x]))}")
            cycle = find_cycle(graph)
            if cycle:
                bad += 1
                print(f"cycle in {name}: {' -> '.join(cycle)}", file=sys.stderr)
    if bad:
        sys.exit(1)
    print("layers: no import cycle between sibling modules")


if __name__ == "__main__":
    main()
