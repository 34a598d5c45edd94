#!/usr/bin/env bash
# Builds frugal and runs every test: C++ unit and kernel tests, ONNX conformance, and the Python
# onnxruntime-oracle tests. Installs missing dependencies first (Debian 12, root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
./third_party/install_deps.sh
jobs=$(nproc)
start=$(date +%s)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRUGAL_PYTHON="$PWD/.venv/bin/python" >/dev/null
cmake --build build -j"$jobs"
built=$(date +%s)
echo "build: $((built - start)) s on $jobs core(s)"
status=0
ctest --test-dir build --output-on-failure -j"$jobs" || status=$?
# The conformance pass/fail/excluded counts, which ctest's summary does not show.
ctest --test-dir build -L conformance -V 2>/dev/null | grep -E "conformance: [0-9]+ passed" || true
echo "tests: $(( $(date +%s) - built )) s"
exit $status
