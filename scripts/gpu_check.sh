#!/usr/bin/env bash
# Kiln on a machine with an NVIDIA GPU, in one go (about 8 minutes with the build):
#   1. builds with `--features cuda,wgpu`;
#   2. runs the GPU test target (tests/gpu.rs: forward, training steps and samplers against the
#      CPU) on cuda:0 and on wgpu, and the face_train round trip (GPU <-> CPU checkpoints);
#   3. times training of `faces64` at 64×64 (images/s at batch 64 and 128, peak GPU memory)
#      and sampling of 64 images with 50 DDIM steps, on cuda:0.
# Everything goes to one small report (default gpu-report.txt; the first argument overrides),
# which docs/performance.md quotes.
#
# On a GPU machine without a Rust toolchain, build here with the same features and point
# KILN_BIN at a folder holding the binaries `face_train`, `face_sample`, `unet_step` and `gpu`
# (the test binary); the build step is then skipped. The GPU tests and face_train find the
# bundled faces by the path of the checkout they were built in, which must exist there too.
#
# Each step's whole output is kept in LOGS when that second argument is given.
#
#   [KILN_BIN=DIR] scripts/gpu_check.sh [REPORT [LOGS]]
set -uo pipefail
cd "$(dirname "$0")/.." || exit
report=$(realpath -m "${1:-gpu-report.txt}")
features=cuda,wgpu
if [[ -n ${2:-} ]]; then
    work=$(realpath -m "$2")
    mkdir -p "$work"
    trap 'kill "$sampler_pid" 2>/dev/null' EXIT
else
    work=$(mktemp -d)
    trap 'kill "$sampler_pid" 2>/dev/null; rm -rf "$work"' EXIT
fi
sampler_pid=

note() { echo "$*" | tee -a "$report"; }

# Runs a step with a time limit; its output goes to the log, its verdict to the report.
step() {
    local name=$1 limit=$2
    shift 2
    local began=$SECONDS
    if timeout "$limit" "$@" >"$work/$name.log" 2>&1; then
        note "ok    $name ($((SECONDS - began)) s)"
    else
        note "FAIL  $name ($((SECONDS - began)) s), last lines:"
        tail -n 15 "$work/$name.log" | sed 's/^/      /' | tee -a "$report"
        return 1
    fi
}

# Peak GPU memory in use while a command runs, sampled every 100 ms by nvidia-smi.
with_peak_memory() {
    local name=$1
    shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 \
        >"$work/$name.mem" 2>/dev/null &
    sampler_pid=$!
    "$@"
    kill "$sampler_pid" 2>/dev/null
    wait "$sampler_pid" 2>/dev/null
    note "      peak GPU memory in use: $(sort -n "$work/$name.mem" | tail -n 1) MiB"
}

: >"$report"
note "# Kiln GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
note "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads"

if [[ -n ${KILN_BIN:-} ]]; then
    bin=$(realpath "$KILN_BIN")
    note "binaries: built elsewhere, from $bin"
    gpu_tests=("$bin/gpu")
else
    note "rustc: $(rustc --version)"
    step build 420 bash -c "cargo build --release --features $features --examples &&
        cargo test --release --features $features --test gpu --no-run" ||
        { note "nothing else can run without the build"; exit 1; }
    bin=target/release/examples
    gpu_tests=(cargo test --release --features "$features" --test gpu --)
fi

for device in cuda:0 wgpu; do
    step "tests-$device" 240 env KILN_TEST_DEVICE=$device KILN_TEST_DEVICE_REQUIRED=1 \
        "${gpu_tests[@]}" --nocapture
done
step round-trip-cuda 180 env KILN_BIN="$bin" scripts/face_train_round_trip.sh cuda:0 $features
for batch in 64 128; do
    with_peak_memory "train-$batch" step "train-faces64-batch-$batch" 180 \
        "$bin/unet_step" --preset faces64 --size 64 --batch "$batch" --iterations 5 --device cuda:0
    note "      $(grep 'images/s' "$work/train-faces64-batch-$batch.log")"
done

# A faces64 checkpoint to sample from: one epoch on the 400 bundled faces at 64×64.
step train-faces64-epoch 180 "$bin/face_train" --preset faces64 --image-size 64 --epochs 1 \
    --batch-size 64 --device cuda:0 --out "$work/faces64"
with_peak_memory sample step sample-64-ddim-50 180 "$bin/face_sample" --checkpoint "$work/faces64" \
    --sampler ddim --steps 50 --count 64 --device cuda:0 --out "$work/samples.png"
note "      $(grep '^sampled' "$work/sample-64-ddim-50.log")"
note "total: $SECONDS s"
