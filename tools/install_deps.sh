#!/usr/bin/env bash
# Installs the Debian packages Fovea builds and tests with. Uses sudo when not root.
# The CUDA backend is built too when nvcc is found (/usr/local/cuda or on PATH); it is optional.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(cmake make g++ python3 libopenblas-dev libfmt-dev doctest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev graphviz dataset-fashion-mnist fortunes)
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
