#!/usr/bin/env bash
# Writes the split that `face_train --hold-out K` makes as two image folders, for scoring
# samples with `face_sample --eval OUT/faces-train --eval-held-out OUT/faces-held`: the last K
# images of each person's folder (in natural order, as face_train orders them: 9.png before
# 10.png) go to OUT/faces-held, the rest to OUT/faces-train.
#
#   scripts/hold_out_folders.sh [OUT] [K] [DATA]     (defaults: runs, 2, assets/faces)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs}
keep=${2:-2}
data=${3:-assets/faces}

rm -rf "$out/faces-train" "$out/faces-held"
for folder in "$data"/*/; do
    person=$(basename "$folder")
    mapfile -t images < <(find "$folder" -maxdepth 1 -type f -name '*.png' -printf '%f\n' | sort -V)
    (( ${#images[@]} > keep )) || { echo "$folder has ${#images[@]} images, not more than $keep" >&2; exit 1; }
    mkdir -p "$out/faces-train/$person" "$out/faces-held/$person"
    split=$(( ${#images[@]} - keep ))
    for i in "${!images[@]}"; do
        to=$([[ $i -lt $split ]] && echo faces-train || echo faces-held)
        cp "$folder/${images[$i]}" "$out/$to/$person/"
    done
done
echo "$(find "$out/faces-train" -type f | wc -l) training and $(find "$out/faces-held" -type f | wc -l) held-out images in $out"
