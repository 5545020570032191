#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in one go, on a machine that has one:
#   1. the CUDA tests: every op and fused op against the CPU backend, the tensor-core attention
#      against f64 references, recorded steps, the translator trained on both backends; once on
#      the default kernels and once with FOVEA_CUDA_ATTENTION=tiled;
#   2. the GPU benchmarks: attention in f32 (fused, tiled, unfused) and bf16/f16 (tensor cores),
#      and the GPT and translator training steps (f32, then mixed precision recorded as one graph).
# Their outputs go to OUT/*.txt and their figures to OUT/*.json.
#
#   tools/gpu_checks.sh <build-dir> [OUT] [--quick]
#
# --quick stops the attention benchmark at N = 4096 (a few minutes less).
set -uo pipefail
BUILD="$(cd "${1:?usage: tools/gpu_checks.sh <build-dir> [OUT] [--quick]}" && pwd)"
OUT="${2:-gpu_checks_out}"
QUICK="${3:-}"
mkdir -p "$OUT"
status=0
step() {  # step NAME COMMAND...: runs it, keeps its output, remembers a failure
  local name="$1"
  shift
  echo "== $name: $*"
  if ! "$@" > "$OUT/$name.txt" 2>&1; then
    echo "   FAILED (see $OUT/$name.txt)"
    status=1
  fi
  tail -n 4 "$OUT/$name.txt"
}
nvidia-smi -L 2>&1 | tee "$OUT/gpu.txt" || true
step tests_cuda "$BUILD/tests/fovea_tests" -sf="*cuda*"
step tests_cuda_tiled env FOVEA_CUDA_ATTENTION=tiled "$BUILD/tests/fovea_tests" -sf="*cuda*"
sizes=(1024 2048 4096 8192 16384)
[ "$QUICK" = "--quick" ] && sizes=(1024 2048 4096)
step attention_cuda "$BUILD/bench/attention_cuda" --tiled --dtypes f32 bf16 f16 --sizes "${sizes[@]}" \
  --json "$OUT/attention_cuda.json"
step transformer_cuda "$BUILD/bench/transformer" --backend cuda --big --json "$OUT/transformer_cuda.json"
step transformer_cuda_mixed "$BUILD/bench/transformer" --backend cuda --big --mixed-precision --capture \
  --json "$OUT/transformer_cuda_mixed.json"
exit $status
