#!/usr/bin/env bash
# Installs what frugal builds and tests with, on Debian 12 as root: the system packages (only those
# missing) and a Python venv at .venv with the test tools (onnxruntime, onnx, numpy, pytest).
# Usage: third_party/install_deps.sh [--no-python]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(cmake ninja-build g++ pkg-config libonnx-dev libprotobuf-dev protobuf-compiler libeigen3-dev
      libcli11-dev catch2 nlohmann-json3-dev libzip-dev zlib1g-dev python3-venv chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-python" ]; then
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import onnx, onnxruntime, numpy, pytest" 2>/dev/null; then
    echo "creating .venv with the Python test tools"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  fi
fi
