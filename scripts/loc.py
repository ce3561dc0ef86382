#!/usr/bin/env python3
"""loc.py - how big the code is, where it matters (make loc).

Counts lines of code (not blank, not only comment) of the edge's own
sources, the shared code both daemons link, the agent's and
sallyportctl's; lists the largest files and every function longer than
FUNC_MAX lines. The edge is the part facing the internet: its own code
should stay small enough to audit in a day (EDGE_MAX lines)."""

import re
import sys
from pathlib import Path

EDGE_MAX = 4000
FILE_MAX = 800
FUNC_MAX = 80


def code_lines(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"),
                  text, flags=re.S)
    return [ln for ln in text.splitlines() if ln.strip()]


def functions(path):
    """(name, lines) of each function: its name at column 0 followed by
    '(', its body from a '{' to a '}' at column 0."""
    lines = path.read_text().splitlines()
    out, name, start = [], None, None
    for i, ln in enumerate(lines):
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\(", ln)
        if m and name is None and start is None:
            name = m.group(1)
        elif ln == "{" and name is not None:
            start = i
        elif ln == "}" and start is not None:
            out.append((name, i - start + 1))
            name, start = None, None
        elif ln and not ln[0].isspace() and start is None and not m:
            name = None
    return out


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    areas = {"edge (src/edge, the DMZ's own)": "src/edge",
             "shared (src/common, both daemons)": "src/common",
             "agent (src/agent)": "src/agent",
             "sallyportctl (src/ctl)": "src/ctl"}
    sizes, total = {}, {}
    for label, d in areas.items():
        n = 0
        for f in sorted((root / d).glob("*.[ch]")):
            sizes[f] = len(code_lines(f.read_text()))
            n += sizes[f]
        total[label] = n
    w = max(len(k) for k in total)
    for label, n in total.items():
        print(f"{label:<{w}}  {n:6d} lines of code")
    edge = total["edge (src/edge, the DMZ's own)"]
    print(f"{'edge binary (edge + shared)':<{w}}  "
          f"{edge + total['shared (src/common, both daemons)']:6d}")
    print(f"\nlargest files (lines of code; at most about {FILE_MAX}):")
    for f, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {n:5d}  {f.relative_to(root)}")
    longest = []
    for f in sizes:
        if f.suffix == ".c":
            longest += [(n, name, f) for name, n in functions(f)]
    longest.sort(reverse=True)
    print(f"\nlongest functions (lines; at most about {FUNC_MAX}):")
    for n, name, f in longest[:8]:
        print(f"  {n:5d}  {name} ({f.relative_to(root)})")
    over = [x for x in longest if x[0] > FUNC_MAX]
    bad = edge > EDGE_MAX or any(n > FILE_MAX for n in sizes.values())
    print(f"\nedge's own code: {edge} of at most {EDGE_MAX}; "
          f"{len(over)} function(s) over {FUNC_MAX} lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
