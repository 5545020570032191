#!/usr/bin/env bash
# Installs the Debian packages Fovea builds and tests with. Uses sudo when not root.
# The CUDA backend is built too when nvcc is found (/usr/local/cuda or on PATH); it is optional.
# ONNX import and export (onnx/) need libonnx-dev and libprotobuf-dev; libonnx-testdata holds
# ONNX's own operator test cases. The ONNX tests run exported models in onnxruntime, from a
# Python environment made at the end in the repository's .venv (skipped, with a message, when pip
# cannot reach its index: those tests then report themselves skipped).
# The explorer (explore/) compiles Debian's dagre (node-dagre-layout) into its pages; its browser
# test opens one in headless Chromium through Selenium (chromium, chromium-driver, python3-selenium).
# Data-parallel training across processes (distributed/) uses Open MPI: libopenmpi-dev to build
# MpiCommunicator, openmpi-bin for mpirun, which the MPI tests start their ranks with.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(cmake make g++ python3 libopenblas-dev libfmt-dev doctest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev graphviz dataset-fashion-mnist fortunes
          libonnx-dev libprotobuf-dev libonnx-testdata python3-venv
          node-dagre-layout chromium chromium-driver python3-selenium libopenmpi-dev openmpi-bin)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  echo "all Debian packages present"
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$repo/.venv/bin/python" ] && "$repo/.venv/bin/python" -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
  echo ".venv has onnx, onnxruntime and numpy"
elif python3 -m venv "$repo/.venv" && "$repo/.venv/bin/pip" install -q onnx onnxruntime numpy; then
  echo "made .venv with onnx, onnxruntime and numpy"
else
  echo "could not make .venv with onnx, onnxruntime and numpy (no python3-venv, or pip cannot reach its index);" \
       "the ONNX tests that need onnxruntime will be skipped"
fi
