#!/bin/sh
# Checks the runner's skip exit code (tests/skip.h) on the op-case table's GPU test:
#   - run alone, it exits 77 (CTest: "Skipped") when it prints "skipped: ", and 0 when it ran;
#   - run with a test case that passes, the run exits 0 (one skip does not hide a pass).
# Usage: check_skip_code.sh path/to/fovea_tests
tests="$1"
gpu_case="every op case gives the CPU's numbers on the GPU"
cpu_case="every op with a CPU kernel has a case or a documented exemption"

out=$("$tests" "--test-case=$gpu_case" 2>&1)
rc=$?
case "$out" in
  *"skipped: "*) expected=77 ;;
  *) expected=0 ;;
esac
if [ "$rc" -ne "$expected" ]; then
  echo "the GPU test case exited $rc, expected $expected:"
  echo "$out"
  exit 1
fi

"$tests" "--test-case=$gpu_case,$cpu_case" >/dev/null 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "a run with a skipped and a passing test case exited $rc, expected 0"
  exit 1
fi
echo "skip exit codes as expected (GPU test case: $expected)"
