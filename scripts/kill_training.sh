#!/usr/bin/env bash
# Kills face_train with SIGKILL at random moments, again and again, resuming after each kill,
# and after every kill verifies each checkpoint of the run against its checksums
# (`face_train --check`): a kill, even in the middle of a checkpoint write, must never leave
# `latest` (or any checkpoint) damaged. Checkpoints are written after every 5 steps, so many
# kills land during a write; the script counts those (a `.partial` folder left behind).
#
#   scripts/kill_training.sh [KILLS]        (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-100}

cargo build --release --quiet --example face_train
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=target/release/examples/face_train
out=$work/run
args=(--data assets/faces/s1 --channels 1 --image-size 16 --preset tiny --batch-size 2
    --epochs 1000000 --checkpoint-every 1 --sample-every 1000000 --keep-checkpoints 2 --out "$out")
mid_write=0
# The half-written checkpoint folders (with their times), which a kill mid-write leaves behind.
partials() {
    find "$out/checkpoints" -maxdepth 1 -name '.step-*.partial' -printf '%f %T@\n' 2>/dev/null || true
}
for ((kill = 1; kill <= kills; kill++)); do
    resume=()
    [[ -e $out/checkpoints/latest ]] && resume=(--resume)
    partials_before=$(partials)
    "$bin" "${args[@]}" "${resume[@]}" >"$work/log" 2>&1 &
    pid=$!
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.2 + 1.5 * r / 32768 }')"
    if ! kill -KILL "$pid" 2>/dev/null; then
        echo "face_train ended before kill $kill:"
        tail -n 5 "$work/log"
        exit 1
    fi
    wait "$pid" 2>/dev/null || true
    if [[ $(partials) != "$partials_before" && -n $(partials) ]]; then
        mid_write=$((mid_write + 1))
    fi
    if [[ -e $out/checkpoints/latest ]] && ! "$bin" --check --out "$out" >"$work/check"; then
        cat "$work/check"
        echo "a checkpoint is damaged after kill $kill"
        exit 1
    fi
done
echo "$kills kills ($mid_write during a checkpoint write); every checkpoint intact after each;"
echo "the run reached $(cat "$out/checkpoints/latest")"
