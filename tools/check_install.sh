#!/usr/bin/env bash
# Installs the built library into a temporary prefix and builds a consumer project that does
# find_package(Fovea) and links Fovea::fovea (and Fovea::onnx when it was built), then runs it.
# Used by CTest (install_and_find_package).
#   tools/check_install.sh <build-dir>
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cmake --install "$BUILD" --prefix "$WORK/prefix" > /dev/null
mkdir -p "$WORK/consumer"
cat > "$WORK/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(consumer CXX)
find_package(Fovea REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE Fovea::fovea)
CMAKE
cat > "$WORK/consumer/main.cpp" <<'CPP'
#include <fovea/fovea.h>
#include <cstdio>
int main() {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2});
  auto y = fovea::relu(x * 2.0f + 1.0f);
  auto exe = fovea::compile(g, {y}, fovea::cpu());
  auto out = exe.run({{x, fovea::Tensor::from<float>({-3.0f, 1.0f}, {2})}});
  std::printf("%s\n", out[0].to_string().c_str());
  return out[0].at(0) == 0.0 && out[0].at(1) == 3.0 ? 0 : 1;
}
CPP
# With the ONNX library installed, a second consumer links Fovea::onnx and lists its ops.
if [ -f "$WORK/prefix/include/fovea/onnx/import.h" ]; then
  cat >> "$WORK/consumer/CMakeLists.txt" <<'CMAKE'
add_executable(consumer_onnx onnx.cpp)
target_link_libraries(consumer_onnx PRIVATE Fovea::onnx)
CMAKE
  cat > "$WORK/consumer/onnx.cpp" <<'CPP'
#include <fovea/onnx/import.h>
#include <cstdio>
int main() {
  const auto ops = fovea::onnx::supported_ops();
  std::printf("Fovea::onnx imports %zu ONNX ops\n", ops.size());
  return ops.size() > 100 ? 0 : 1;
}
CPP
fi
cmake -S "$WORK/consumer" -B "$WORK/consumer/build" -DCMAKE_PREFIX_PATH="$WORK/prefix" > /dev/null
cmake --build "$WORK/consumer/build" > /dev/null
"$WORK/consumer/build/consumer"
if [ -x "$WORK/consumer/build/consumer_onnx" ]; then "$WORK/consumer/build/consumer_onnx"; fi
