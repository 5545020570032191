#!/usr/bin/env python3
"""The longest functions in the library's .cpp files, outside the kernels.

    tools/function_lengths.py [--top N] [--limit L] [ROOT]

Lists the N longest function definitions (default 10) with their lengths, longest first, and
exits with status 1 when one is longer than L lines (--limit; 0, the default, checks nothing).
CTest runs it with --limit 80 (tests/CMakeLists.txt): a function longer than that is one to
split into named phases, each a function of its own.

A function's length is its lines from the first line of its signature to its closing brace,
not counting blank lines and lines holding only a comment: what a reader reads as code.

What counts as the library: every .cpp under the layer folders (core, ops, autograd, passes,
runtime, backends, nn, io, onnx). Exempt are the kernels, whose length is the length of their
math: backends/*/*_kernels.cpp, backends/cuda/kernels.cpp, and the CUDA sources (.cu, never
scanned).

The parser is a heuristic made for clang-formatted code, where a function definition starts
at column 0 (namespaces are not indented): a line at column 0 opens a definition when the text
up to its first '{' holds a parameter list and no '=' before it (which would make it a
variable, a table or a lambda stored in one); the definition ends at its matching '}'. Braces
inside string and character literals and comments are skipped. Member functions defined inside
a class body (a class at column 0, its members two spaces in) are found the same way. Lambdas
count as part of the function that holds them; a lambda stored in a variable or a table at
namespace scope (an OpDef's .infer) is not counted.
"""

import argparse
import os
import re
import sys

LAYERS = ["core", "ops", "autograd", "passes", "runtime", "backends", "nn", "io", "onnx"]
KERNEL_FILE = re.compile(r"^backends/[^/]+/(.*_kernels|kernels)\.cpp$")


def library_sources(root):
    """The library's .cpp files outside the kernels, as paths relative to root, sorted."""
    found = []
    for layer in LAYERS:
        for folder, _, files in os.walk(os.path.join(root, layer)):
            for name in files:
                path = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                if name.endswith(".cpp") and not KERNEL_FILE.match(path):
                    found.append(path)
    return sorted(found)


def strip_literals_and_comments(text):
    """The text with the insides of comments and string/char literals blanked (newlines kept),
    so that braces and parentheses in them are not counted."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            k = text.find("(", i)
            delimiter = ")" + text[i + 2 : k] + '"'
            j = text.find(delimiter, k)
            j = n if j < 0 else j + len(delimiter)
            out.append('"' + "".join(ch if ch == "\n" else " " for ch in text[i + 1 : j - 1]) + '"')
            i = j
        elif c in "\"'":
            # A ' between digits is a digit separator (1'000), not a character literal.
            if c == "'" and i > 0 and text[i - 1].isalnum():
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def is_code_line(line):
    stripped = line.strip()
    return stripped != "" and not stripped.startswith("//")


def function_name(signature):
    """The qualified name before the parameter list: 'Executable::run', 'compile'."""
    head = signature[: signature.find("(")]
    match = re.search(r"([~\w:]+(?:operator\s*\S+)?)\s*$", head)
    return match.group(1) if match else head.strip()


def matching_brace(lines, start):
    """The index of the line that closes the first '{' found from line `start` on."""
    depth, opened, k = 0, False, start
    while k < len(lines):
        opened = opened or "{" in lines[k]
        depth += lines[k].count("{") - lines[k].count("}")
        if opened and depth == 0:
            return k
        k += 1
    return len(lines) - 1


def scan(lines, raw, first, last, indent, scope):
    """(length, name, line) of every function defined in lines[first:last] whose signature starts
    `indent` spaces in; the bodies of classes defined there are scanned two spaces further in,
    so that member functions defined inside a class count too."""
    found = []
    i = first
    while i < last:
        line = lines[i]
        body = line[indent:]
        starts = line[:indent] == " " * indent and body != "" and (body[0].isalpha() or body[0] in "_~[")
        if not starts or re.match(r"(namespace|using|typedef|#|extern\s+\"|template\s*<[^>]*>\s*$)", body):
            i += 1
            continue
        # The signature runs up to the first '{' or ';' on this or the next lines.
        j, signature = i, ""
        while j < last:
            signature += lines[j] + "\n"
            if "{" in lines[j] or ";" in lines[j]:
                break
            j += 1
        head = signature.split("{")[0]
        record = re.match(r"(struct|class|union)\s+(\w+)", body)
        if record and "{" in signature and ";" not in head:
            k = matching_brace(lines, i)
            found += scan(lines, raw, j + 1, k, indent + 2, scope + record.group(2) + "::")
            i = k + 1
            continue
        is_function = ("{" in signature and ";" not in head and "(" in head and ")" in head
                       and "=" not in head[: head.find("(")] and not re.match(r"enum\b", body))
        if not is_function:
            i = j + 1 if ";" in signature or "{" not in signature else i + 1
            continue
        k = matching_brace(lines, i)
        length = sum(1 for t in raw[i : k + 1] if is_code_line(t))
        found.append((length, scope + function_name(head), i + 1))
        i = k + 1
    return found


def functions_in(text):
    """(length, name, line) of every function defined in the text: at column 0, or inside a
    class defined at column 0."""
    lines = strip_literals_and_comments(text).split("\n")
    return scan(lines, text.split("\n"), 0, len(lines), 0, "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--top", type=int, default=10, help="how many functions to list")
    parser.add_argument("--limit", type=int, default=0, help="fail when a function is longer than this")
    args = parser.parse_args()
    every = []
    for path in library_sources(args.root):
        with open(os.path.join(args.root, path), encoding="utf-8") as f:
            for length, name, line in functions_in(f.read()):
                every.append((length, f"{path}:{line}", name))
    every.sort(key=lambda f: (-f[0], f[1]))
    for length, where, name in every[: args.top]:
        print(f"{length:5}  {name}  ({where})")
    too_long = [f for f in every if args.limit and f[0] > args.limit]
    for length, where, name in too_long:
        print(f"error: {name} ({where}) is {length} lines, over the limit of {args.limit}; split it into "
              "named phases, each a function of its own", file=sys.stderr)
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())
