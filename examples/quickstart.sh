#!/usr/bin/env bash
# frugal's main job on the bundled example, from a fresh Debian 12 machine (root or sudo):
# installs what is missing, builds, then shrinks a trained digits CNN — 50% magnitude pruning,
# then INT8 static quantization calibrated on 256 samples — checks fidelity on 500 held-out samples
# and compares the energy per inference of the original and the compressed model.
set -euo pipefail
cd "$(dirname "$0")/.."
./third_party/install_deps.sh --no-python
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target frugal
frugal=build/apps/frugal/frugal
ex=examples/digits
out=${OUT:-build/example}
mkdir -p "$out"
$frugal inspect $ex/model.onnx
$frugal prune $ex/model.onnx -o "$out/pruned.onnx" --sparsity 0.5 --data $ex/calib.npz --reconstruct \
  --holdout $ex/heldout.npz --report "$out/prune.json"
$frugal quantize "$out/pruned.onnx" -o "$out/int8.onnx" --data $ex/calib.npz --method entropy \
  --holdout $ex/heldout.npz --max-drop top1=0.5% --report "$out/quantize.json"
$frugal energy $ex/model.onnx --compare "$out/int8.onnx" --profile xeon --region eu \
  --html "$out/energy.html" --report "$out/energy.json"
echo "wrote $out/int8.onnx and reports prune.json, quantize.json, energy.json, energy.html in $out"
