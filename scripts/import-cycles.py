#!/usr/bin/env python3
"""Lists the circles of references between the files of a Rust module tree.

A file refers to another when it names it by path: `super::x`, `crate::a::x`, or, in a
`mod.rs`, a child module `x::` or `use x`. Usage: import-cycles.py DIR [DIR ...]; exit status 1
when a circle is found.
"""
import pathlib
import re
import sys

CRATE_SRC = None


def module_of(path: pathlib.Path, src: pathlib.Path) -> list[str]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def resolve(segments: list[str], files: dict[tuple, pathlib.Path]):
    """The longest prefix of `segments` that is a file's module."""
    for n in range(len(segments), 0, -1):
        key = tuple(segments[:n])
        if key in files:
            return key
    return None


def expand(tree: str) -> list[str]:
    """The paths of a `use` tree: `a::{b, c::{d}}` gives `a::b` and `a::c::d`."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree.split(" as ")[0]]
    head, rest = tree.split("{", 1)
    body = rest[: rest.rindex("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for part in filter(None, parts):
        for sub in expand(part):
            out.append(head + ("" if sub == "self" else sub) if not head.endswith("::") or sub != "self" else head[:-2])
    return out


def strip_tests(text: str) -> str:
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def main() -> int:
    dirs = [pathlib.Path(d) for d in sys.argv[1:]]
    src = next(p for p in dirs[0].resolve().parents if (p / "lib.rs").exists() or (p / "main.rs").exists())
    files = {}
    for d in dirs:
        for f in d.resolve().rglob("*.rs"):
            files[tuple(module_of(f, src))] = f
    edges = {k: set() for k in files}
    for mod, f in files.items():
        text = strip_tests(f.read_text())
        text = re.sub(r"//[^\n]*", "", text)
        text = re.sub(r"(?m)^\s*(?:pub(?:\(crate\))?\s+)?use\s+([^;]+);", lambda u: " ".join(expand(u.group(1))) + " ;", text)
        is_dir = f.name == "mod.rs"
        here = list(mod) if is_dir else list(mod[:-1])
        for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+|\w+(?:::\w+)+)", text):
            segs = m.group(1).split("::")
            base = list(mod) if is_dir else list(mod)
            if segs[0] == "crate":
                target = segs[1:]
            elif segs[0] in ("super", "self"):
                b = here if not is_dir else list(mod)
                b = list(mod)
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        b = b[:-1]
                    segs = segs[1:]
                target = b + segs
            else:
                target = list(mod) + segs
                if resolve(target, files) is None or len(resolve(target, files)) <= len(mod):
                    continue
            key = resolve(target, files)
            if key is not None and key != mod and not (len(key) < len(mod) and key == mod[: len(key)] and len(target) == len(key)):
                edges[mod].add(key)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    for comp in sccs:
        names = sorted("::".join(c) for c in comp)
        print("circle:", ", ".join(names))
        for c in sorted(comp):
            inner = sorted("::".join(e) for e in edges[c] if e in comp)
            print(f"  {'::'.join(c)} -> {', '.join(inner)}")
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
