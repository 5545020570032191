#!/usr/bin/env python3
"""Checks that the library's folders include each other in one direction only.

    python3 tools/check_layering.py [SOURCE_ROOT]

Every folder of the library has a level (the table LEVELS below; docs/architecture.md, "Layers",
draws it and says why). A file may include headers from its own folder and from folders of a
LOWER level, never from its own level's other folders nor from above, and never from the folders
outside the library (tests/, tools/, examples/, bench/, fuzz/). Those outside folders, and the
umbrella headers fovea.h and engine.h, may include anything.

Includes are read as written: "fovea/<folder>/..." or <fovea/<folder>/...>. An include in a
library file that names a header by a relative path ("../ops/x.h") is reported too, since this
check could not see where it points.

Second, independent of the table: the graph "top-level folder A includes a header of folder B"
over the whole repository (outside folders included) must have no cycle.

Exits 0 when both hold; otherwise prints one line per offending include (file:line, what it
includes, and what to do) and every cycle, and exits 1. Uses only the standard library.
"""

import os
import re
import sys

# Level of each library folder: a folder may include folders of lower levels only. Folders on
# one level are independent of each other. Keep in step with docs/architecture.md.
LEVELS = {
    "core": 0,  # IR, tensors, errors, RNG, thread pool: depends on nothing of ours
    "ops": 1,  # op definitions: shape rules, gradient rules (ops/vjp.h), builders
    "autograd": 2,  # reverse mode as a graph transform: walks the graph, calls the ops' rules
    "backends": 2,  # kernels per (op, dtype) and device memory; CPU and CUDA
    "nn": 3,  # layers, losses, optimizers, schedules as compositions of ops
    "runtime": 3,  # schedule, memory plan, Executable: runs kernels from a backend
    "distributed": 3,  # communicators over MPI and NCCL (core/communicator.h's implementations)
    "passes": 4,  # the optimizer and the compile pipeline (passes, then runtime)
    "io": 5,  # files in and out: checkpoints, datasets, plots
    "explore": 5,  # the explorer: one HTML page of the graph, its passes, memory, time and values
    "onnx": 6,  # ONNX import and export (the library Fovea::onnx, built when libonnx-dev is present)
}

# Folders outside the library: they may include anything, and nothing in the library may
# include them.
OUTSIDE = {"tests", "tools", "examples", "bench", "fuzz"}

# Folders with no C++ in them, or none of the library's.
IGNORED = {"docs", "cmake", ".git", ".github"}

SOURCE_SUFFIXES = (".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh", ".inl")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def top_folder_of(relative_path):
    """'ops/vjp.h' -> 'ops'; 'fovea.h' (a file at the root) -> '(root)'."""
    parts = relative_path.split("/")
    return parts[0] if len(parts) > 1 else "(root)"


def is_build_tree(path):
    return os.path.exists(os.path.join(path, "CMakeCache.txt"))


def source_files(root):
    """Every C++/CUDA file of the repository, as paths relative to root, build trees skipped."""
    for entry in sorted(os.listdir(root)):
        full = os.path.join(root, entry)
        if os.path.isfile(full) and entry.endswith(SOURCE_SUFFIXES):
            yield entry
        if not os.path.isdir(full) or entry in IGNORED or entry.startswith(".") or is_build_tree(full):
            continue
        for directory, subdirectories, files in os.walk(full):
            subdirectories[:] = sorted(d for d in subdirectories if not is_build_tree(os.path.join(directory, d)))
            for name in sorted(files):
                if name.endswith(SOURCE_SUFFIXES):
                    yield os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/")


def includes_of(root, relative_path):
    """(line number, bracket, included path) for every #include of a file."""
    with open(os.path.join(root, relative_path), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            match = INCLUDE.match(line)
            if match:
                yield number, match.group(1), match.group(2)


def check_table():
    """Every folder named must have a level; the table itself cannot hold a cycle (levels)."""
    problems = []
    for folder in OUTSIDE & set(LEVELS):
        problems.append(f"tools/check_layering.py: '{folder}' is both a layer and outside the library")
    return problems


def check_folders(root):
    """A new top-level folder with C++ in it must be given a level (or listed as outside)."""
    problems = []
    for entry in sorted(os.listdir(root)):
        full = os.path.join(root, entry)
        if not os.path.isdir(full) or entry in IGNORED or entry.startswith(".") or is_build_tree(full):
            continue
        if entry in LEVELS or entry in OUTSIDE:
            continue
        has_sources = any(name.endswith(SOURCE_SUFFIXES) for _, _, files in os.walk(full) for name in files)
        if has_sources:
            problems.append(
                f"{entry}/: a folder with C++ sources that has no level; add it to LEVELS (a library "
                f"layer) or OUTSIDE in tools/check_layering.py, and to docs/architecture.md"
            )
    return problems


def check_includes(root, files):
    """Upward, sideways and outward includes from library files; returns (problems, edges)."""
    problems = []
    edges = {}  # folder -> {included folder: first "file:line" that includes it}
    for path in files:
        source = top_folder_of(path)
        for line, bracket, included in includes_of(root, path):
            where = f"{path}:{line}"
            if included in ("fovea/fovea.h", "fovea/engine.h") and source in LEVELS:
                problems.append(
                    f'{where}: #include "{included}": the umbrella header includes every layer; include '
                    f"the headers this file uses instead"
                )
                continue
            if included.startswith("fovea/") and included.count("/") >= 2:
                target = included.split("/")[1]
                if target != source:
                    edges.setdefault(source, {}).setdefault(target, where)
            elif bracket == '"' and ("/" in included) and source in LEVELS:
                problems.append(
                    f'{where}: #include "{included}": write a library include as "fovea/<folder>/<file>" '
                    f"so that its layer can be checked"
                )
                continue
            else:
                continue
            if source not in LEVELS or target == source:
                continue  # outside folders and the umbrella header may include anything
            if target in OUTSIDE:
                problems.append(
                    f"{where}: #include \"{included}\": the library ({source}/) includes {target}/, which "
                    f"is outside it; move what it needs into the library, or make the outside code "
                    f"include it first"
                )
            elif target not in LEVELS:
                problems.append(f'{where}: #include "{included}": {target}/ is no folder of the library')
            elif LEVELS[target] >= LEVELS[source]:
                direction = "up the stack" if LEVELS[target] > LEVELS[source] else "sideways, within a level"
                problems.append(
                    f'{where}: #include "{included}" points {direction}: {source}/ (level '
                    f"{LEVELS[source]}) may include only lower levels, and {target}/ is level "
                    f"{LEVELS[target]}; move the piece both need down to a level below {source}/ "
                    f"(docs/architecture.md, \"Layers\")"
                )
    return problems, edges


def cycles_of(edges):
    """The strongly connected components with more than one folder (Tarjan's algorithm)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, {})):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    nodes = set(edges) | {t for targets in edges.values() for t in targets}
    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return components


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    files = list(source_files(root))
    problems = check_table() + check_folders(root)
    include_problems, edges = check_includes(root, files)
    problems += include_problems
    for component in cycles_of(edges):
        members = set(component)
        links = [
            f"{a}/ -> {b}/ ({where})"
            for a in component
            for b, where in sorted(edges.get(a, {}).items())
            if b in members
        ]
        problems.append("include cycle between folders " + ", ".join(component) + ": " + "; ".join(links))
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_layering: {len(problems)} problem(s) in {len(files)} files under {root}")
        return 1
    print(f"check_layering: {len(files)} files, every library include points down the stack, no folder cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
