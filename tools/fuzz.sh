#!/usr/bin/env bash
# Fuzzes every loader of untrusted bytes for a bounded time each (libFuzzer, AddressSanitizer and
# UBSan), one target after another, and prints the executions and findings of each.
#
#   tools/fuzz.sh [seconds-per-target]        (default 60)
#
# Builds with clang-16 in its own build folder (build-fuzz/, or $FOVEA_FUZZ_BUILD_DIR). Seeds come
# from fuzz/corpus/<target>/ and fuzz/regressions/<target>/; new interesting inputs collect in
# build-fuzz/fuzz-work/<target>/, crashing inputs in build-fuzz/fuzz-findings/<target>/. Copy a
# crashing input into fuzz/regressions/<target>/ so the ordinary test suite replays it, then fix
# the bug. Exits 1 when any target found something.
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FOVEA_FUZZ_BUILD_DIR:-$root/build-fuzz}
cxx=${FOVEA_FUZZ_CXX:-clang++-16}
targets=(safetensors idx text npy)
# The ONNX importer's target is built with the ONNX library, where libonnx-dev is installed.
if dpkg-query -W -f='${Status}' libonnx-dev 2>/dev/null | grep -q "install ok installed"; then targets+=(onnx); fi

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DFOVEA_FUZZ=ON -DFOVEA_ENABLE_CUDA=OFF \
  -DFOVEA_BUILD_TESTS=OFF -DFOVEA_BUILD_EXAMPLES=OFF -DFOVEA_BUILD_BENCHMARKS=OFF "${launcher[@]}" >/dev/null
cmake --build "$build" -j"${FOVEA_FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}"

summary=()
found_any=0
for target in "${targets[@]}"; do
  work=$build/fuzz-work/$target
  findings=$build/fuzz-findings/$target
  log=$build/fuzz-$target.log
  mkdir -p "$work" "$findings"
  echo "== fuzz_$target for ${seconds}s (log: $log)"
  # The first folder receives new inputs; the seeds are read only. -timeout: an input taking
  # longer than 10 s is a finding (a hang); -rss_limit_mb: so is a loader using over 2 GB.
  set +e
  "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/" "$work" "$root/fuzz/corpus/$target" "$root/fuzz/regressions/$target" \
    >"$log" 2>&1
  status=$?
  set -e
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  if [[ -z $executions ]]; then executions=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#' || true); fi
  count=$(find "$findings" -type f | wc -l)
  if ((status != 0 || count > 0)); then
    found_any=1
    tail -n 30 "$log"
  fi
  summary+=("$(printf '%-12s %12s executions  %d findings  (exit %d)' "$target" "${executions:-?}" "$count" "$status")")
done

echo "== summary (${seconds}s per target; findings in $build/fuzz-findings/)"
printf '%s\n' "${summary[@]}"
exit $found_any
