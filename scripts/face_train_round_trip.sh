#!/usr/bin/env bash
# face_train on a device and on the CPU, each run continued on the other: one epoch on DEVICE
# resumed on flex for a second, and one epoch on flex resumed on DEVICE. Each run must write
# a sample grid and a checkpoint per epoch. Small on purpose (10 bundled faces at 16×16, the
# tiny UNet), so a software GPU runs it in CI.
#
#   scripts/face_train_round_trip.sh DEVICE FEATURES     e.g. wgpu wgpu, or cuda:0 cuda
#
# With KILN_BIN set, its face_train (built elsewhere with FEATURES) is used and nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:?usage: $0 DEVICE FEATURES}
features=${2:?usage: $0 DEVICE FEATURES}

if [[ -n ${KILN_BIN:-} ]]; then
    face_train=$KILN_BIN/face_train
else
    cargo build --release --quiet --features "$features" --example face_train
    face_train=${CARGO_TARGET_DIR:-target}/release/examples/face_train
fi
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
train() {
    "$face_train" --data assets/faces/s1 --channels 1 --image-size 16 \
        --preset tiny --batch-size 4 --sample-every 1 --checkpoint-every 1 "$@"
}
expect() {
    for file in "$@"; do
        [[ -s $file ]] || { echo "missing: $file"; return 1; }
    done
}
for first in "$device" flex; do
    second=$([[ $first == flex ]] && echo "$device" || echo flex)
    run=$runs/$first-then-$second
    echo "== one epoch on $first, a second on $second"
    train --device "$first" --epochs 1 --out "$run"
    expect "$run/samples/epoch-0001.png" "$run/checkpoints/step-00000002/state.json"
    train --device "$second" --epochs 2 --out "$run" --resume
    expect "$run/samples/epoch-0002.png" "$run/checkpoints/step-00000004/state.json"
done
echo "face_train round trip $device <-> flex: ok"
