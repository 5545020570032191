#!/usr/bin/env python3
"""Checks that the CPU kernels compiled for AVX2 and AVX-512 cannot be called from other code.

The kernel files are compiled once per instruction set (CMakeLists.txt, "The CPU kernels"), the
AVX2 and AVX-512 copies with -fno-weak, so that the code they instantiate from shared headers
(the standard library, core/) is local to each object instead of a weak symbol that the linker
would let every caller share. This script reads the symbols of those objects with nm and fails
when one could still leak or split across copies:

  - a global or weak symbol outside the copy's namespace, fovea::cpu_backend::<isa>:: (another
    object could call it, or the linker could pick it for another object's calls); the only
    ones let through are data with no instructions and no state: the pointer to the C++
    personality routine, and the empty function objects of std::ranges (common symbols);
  - writable data with a C++ name outside that namespace (a static inside a shared inline
    function, or a mutable inline variable): -fno-weak gives each object a copy of its own,
    where the program expects one for the whole process.

Usage: check_isa_symbols.py ISA OBJECT... (ISA: avx2 or avx512). Exit status 1 on a finding.
"""
import subprocess
import sys

# Read-only data the compiler emits per class: vtables, VTTs, typeinfo and its name.
RTTI_PREFIXES = ("_ZTV", "_ZTT", "_ZTC", "_ZTI", "_ZTS")


def symbols(path, demangle):
    args = ["nm", "--defined-only"] + (["-C"] if demangle else []) + [path]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            rows.append((parts[1], parts[2]))
    return rows


def finding(kind, mangled, name, isa):
    namespace = f"fovea::cpu_backend::{isa}::"
    # The demangled name of a function template starts with its return type, so the namespace is
    # read from the mangled name: _ZN, then each nested name as its length and its letters.
    mangled_namespace = f"_ZN5fovea11cpu_backend{len(isa)}{isa}"
    if name.startswith(namespace) or mangled.startswith(mangled_namespace):
        return None
    if kind.isupper() or kind in "uvw":
        if mangled == "DW.ref.__gxx_personality_v0":
            return None
        if kind == "C" and name.startswith("std::ranges::"):
            return None
        return f"global or weak symbol outside {namespace}"
    if kind in "db" and mangled.startswith("_Z") and not mangled.startswith(("_ZL",) + RTTI_PREFIXES):
        if namespace in name:
            return None  # a static of a template instantiated with this copy's own types
        return "writable data of a shared header, duplicated in this copy"
    return None


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("avx2", "avx512"):
        sys.exit(__doc__)
    isa = sys.argv[1]
    failures = 0
    checked = 0
    for path in sys.argv[2:]:
        raw = symbols(path, demangle=False)
        readable = symbols(path, demangle=True)
        for (kind, mangled), (_, name) in zip(raw, readable):
            checked += 1
            why = finding(kind, mangled, name, isa)
            if why:
                failures += 1
                print(f"{path}: {kind} {name}: {why}")
    print(f"{checked} symbols in {len(sys.argv) - 2} {isa} objects, {failures} findings")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
