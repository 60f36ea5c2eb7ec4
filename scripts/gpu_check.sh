#!/usr/bin/env bash
# Kiln on a machine with an NVIDIA GPU, in one go, most certain results first:
#   1. wgpu (Vulkan): backend_probe (first launches, launches, host round trips), a faces64
#      training step at 64×64 (images/s, peak GPU memory; batch 64 cold and with the caches
#      warm, then batch 128), beside PyTorch's same step (benches/peer/unet_step.py --device
#      cuda) in the same run;
#   2. CUDA: backend_probe, then the tiny UNet at 16×16, both with cubecl's compilation and
#      autotune logs on (kernels compiled, autotune results) and, when a run goes long, its
#      busiest threads and their stacks; then the faces64 steps as for wgpu if it finished;
#   3. the original project's run: a 30,000-face folder (examples/timing_faces) trained for
#      one epoch at 64×64, batch 64, on the faster backend; 1.5 M image-steps projected from
#      its speed; then 64 faces × 50 DDIM steps from that run; with KILN_BIN_NO_AUTOTUNE,
#      part 2 and the wgpu steps again with binaries built without burn's autotune;
#   4. the GPU test target (tests/gpu.rs, every result against the CPU) on wgpu and CUDA.
# Everything goes to one small report (default gpu-report.txt; the first argument overrides),
# which docs/performance.md quotes; each part's whole log goes to LOGS when that second
# argument is given. Each part has a time limit, so a hang costs seconds, not the machine, and
# the whole run stops starting parts after KILN_GPU_BUDGET seconds (default 540).
#
# On a GPU machine without a Rust toolchain, build elsewhere with `--features cuda,wgpu` and
# point KILN_BIN at a folder holding `face_train`, `face_sample`, `unet_step`, `timing_faces`,
# `backend_probe` and `gpu` (the test binary): scripts/gpu_kit.sh packs them. The checkout
# they were built in must exist at the same path, for the bundled faces. Without KILN_BIN the
# script builds them (about 15 minutes).
#
#   [KILN_BIN=DIR [KILN_BIN_NO_AUTOTUNE=DIR]] scripts/gpu_check.sh [REPORT [LOGS]]
set -uo pipefail
cd "$(dirname "$0")/.." || exit
repo=$PWD
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
# Kiln's kernel and autotune caches (kiln::gpu_cache) start empty, so the first runs are cold;
# so does the driver's cache of the machine code it makes from PTX.
export KILN_CACHE_DIR=$work/kiln-cache
export CUDA_CACHE_PATH=$work/nv-cache
budget=${KILN_GPU_BUDGET:-540}

note() { echo "$*" | tee -a "$report"; }

# Whether LIMIT seconds (or at least 20) are left of the budget; says so when not.
time_for() {
    local name=$1 limit=$2
    if ((budget - SECONDS < 20 || (limit > budget - SECONDS && limit < 60))); then
        note "skip  $name: $((budget - SECONDS)) s of the budget left"
        return 1
    fi
}

# LIMIT, or what is left of the budget if that is less.
within_budget() {
    echo $(($1 < budget - SECONDS ? $1 : budget - SECONDS))
}

# The report's lines for step NAME begun at BEGAN that failed: its time and its log's end.
failed() {
    local name=$1 began=$2
    note "FAIL  $name ($((SECONDS - began)) s), last lines:"
    tail -n 15 "$work/$name.log" | sed 's/^/      /' | tee -a "$report"
    return 1
}

# Runs a step with a time limit (cut to what is left of the budget); its output goes to the
# log, its verdict to the report.
step() {
    local name=$1 limit=$2
    shift 2
    time_for "$name" "$limit" || return 1
    limit=$(within_budget "$limit")
    local began=$SECONDS
    if timeout -k 5 "$limit" "$@" >"$work/$name.log" 2>&1; then
        note "ok    $name ($((SECONDS - began)) s)"
    else
        failed "$name" "$began"
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
    local status=$?
    kill "$sampler_pid" 2>/dev/null
    wait "$sampler_pid" 2>/dev/null
    [[ -s $work/$name.mem ]] &&
        note "      peak GPU memory in use: $(sort -n "$work/$name.mem" | tail -n 1) MiB"
    return $status
}

# A faces64 training step with the unet_step of folder BIN (LABEL in the names) on DEVICE:
# batch 64 twice (cold, then warm), then batch 128 (with the shapes of batch 64 tuned).
time_faces64() {
    local bin=$1 label=$2 device=$3 run ok=0
    for run in 64-cold 64-warm 128; do
        local name="faces64-$label-$device-$run"
        with_peak_memory "$name" step "$name" 120 "$bin/unet_step" --preset faces64 \
            --size 64 --batch "${run%-*}" --iterations 5 --device "$device" || ok=1
        grep -s 'images/s' "$work/$name.log" | sed 's/^/      /' | tee -a "$report"
    done
    return $ok
}

# The busiest threads of process PID (name, state, CPU ticks) and, where eu-stack or gdb can
# attach, the top of the busiest one's stack, into the report; the whole dump into the logs.
threads_and_stacks() {
    local pid=$1 name=$2
    note "      $name's busiest threads (id, name, state, CPU ticks):"
    for task in /proc/"$pid"/task/*; do
        awk -v tid="${task##*/}" '{print tid, $2, $3, $14 + $15}' "$task/stat"
    done | sort -k4 -n -r | head -n 4 >"$work/$name.threads"
    sed 's/^/      /' "$work/$name.threads" | tee -a "$report"
    note "      libraries: $(grep -o '[^/]*\(nvrtc\|ptxjitcompiler\|libcuda\)[^ ]*' /proc/"$pid"/maps | sort -u | tr '\n' ' ')"
    if command -v eu-stack >/dev/null; then
        timeout 30 eu-stack -p "$pid" >"$work/$name.stacks" 2>&1
    elif command -v gdb >/dev/null; then
        timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt 16' >"$work/$name.stacks" 2>&1
    else
        note "      no eu-stack or gdb: no stacks"
        return
    fi
    local busiest
    busiest=$(head -n 1 "$work/$name.threads" | cut -d' ' -f1)
    note "      the busiest thread's stack (top 16 frames):"
    awk -v tid="$busiest" '/^TID / { on = ($2 == tid ":") } /^Thread / { on = ($0 ~ "LWP " tid ")") }
        on && /^#/ { print "      " substr($0, 1, 150); if (++n == 16) exit }' "$work/$name.stacks" |
        tee -a "$report"
}

# Runs COMMAND... in the background for at most LIMIT seconds; at 2/3 of the limit, and at the
# limit if it is still running, the report gets its threads and stacks; then it is stopped.
watched() {
    local name=$1 limit=$2
    shift 2
    time_for "$name" "$limit" || return 1
    limit=$(within_budget "$limit")
    local began=$SECONDS
    "$@" >"$work/$name.log" 2>&1 &
    local pid=$! looked=0
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - began < limit)); do
        sleep 1
        if ((!looked && SECONDS - began >= limit * 2 / 3)) && kill -0 "$pid" 2>/dev/null; then
            note "      $name still running at $((SECONDS - began)) s:"
            threads_and_stacks "$pid" "$name-early"
            looked=1
        fi
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "FAIL  $name: still running after $limit s; its output so far:"
        tail -n 12 "$work/$name.log" | sed 's/^/      /' | tee -a "$report"
        threads_and_stacks "$pid" "$name"
        kill "$pid"
        sleep 2
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 1
    elif wait "$pid"; then
        note "ok    $name ($((SECONDS - began)) s)"
        grep -v '^ *$' "$work/$name.log" | tail -n 12 | sed 's/^/      /' | tee -a "$report"
    else
        failed "$name" "$began"
    fi
}

# What cubecl's compilation and autotune logs in folder DIR hold, into the report.
log_counts() {
    local dir=$1
    [[ -e $dir/compilation.log || -e $dir/autotune.log ]] || return 0
    note "      kernels compiled: $(grep -c '' "$dir/compilation.log" 2>/dev/null);" \
        "autotune log lines: $(grep -c '' "$dir/autotune.log" 2>/dev/null)," \
        "errors among them: $(grep -c -i 'err' "$dir/autotune.log" 2>/dev/null)"
}

# CUDA with the binaries of folder BIN (LABEL in the names): backend_probe, then the tiny UNet
# with cubecl's compilation and autotune logs, then the faces64 steps if that finished.
diagnose_cuda() {
    local bin=$1 label=$2
    local diagnose=$work/cuda-$label
    mkdir -p "$diagnose/probe" "$diagnose/tiny"
    # cubecl reads cubecl.toml from the working folder: compilation and autotune logs to files,
    # and the caches where Kiln would put them (a user's cubecl.toml replaces Kiln's settings).
    local run
    for run in probe tiny; do
        cat >"$diagnose/$run/cubecl.toml" <<TOML
[compilation]
cache = { file = "$KILN_CACHE_DIR/$label" }
[compilation.logger]
level = "basic"
file = "$diagnose/$run/compilation.log"
[autotune]
cache = { file = "$KILN_CACHE_DIR/$label" }
[autotune.logger]
level = "full"
file = "$diagnose/$run/autotune.log"
TOML
    done
    (cd "$diagnose/probe" && watched "probe-cuda-$label" 60 "$bin/backend_probe" --device cuda:0)
    log_counts "$diagnose/probe"
    local tiny_ok=0
    (cd "$diagnose/tiny" && watched "cuda-tiny-$label" 60 "$bin/unet_step" --preset tiny \
        --size 16 --batch 2 --iterations 2 --device cuda:0) && tiny_ok=1
    log_counts "$diagnose/tiny"
    [[ -d $CUDA_CACHE_PATH ]] &&
        note "      the driver's PTX cache: $(du -sh "$CUDA_CACHE_PATH" | cut -f1)"
    ((tiny_ok)) && time_faces64 "$bin" "$label" cuda:0
    ((tiny_ok))
}

: >"$report"
note "# Kiln GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
note "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads"
note "nvrtc: $( (ldconfig -p 2>/dev/null | grep -o 'libnvrtc[^ ]*' | sort -u | tr '\n' ' '); ls -d /usr/local/cuda*/ 2>/dev/null | tr '\n' ' ')CUDA_PATH=${CUDA_PATH:-unset}"

if [[ -n ${KILN_BIN:-} ]]; then
    bin=$(realpath "$KILN_BIN")
    note "binaries: built elsewhere, from $bin"
    gpu_tests=("$bin/gpu")
else
    note "rustc: $(rustc --version)"
    step build 1200 bash -c "cargo build --release --features $features --examples &&
        cargo test --release --features $features --test gpu --no-run" ||
        { note "nothing else can run without the build"; exit 1; }
    bin=target/release/examples
    gpu_tests=(cargo test --release --features "$features" --test gpu --)
fi

note "## 1. wgpu, and PyTorch beside it"
watched probe-wgpu 60 "$bin/backend_probe" --device wgpu
time_faces64 "$bin" kiln wgpu
if python3 -c 'import torch, diffusers; assert torch.cuda.is_available()' 2>/dev/null; then
    for batch in 64 128; do
        step "pytorch-faces64-$batch" 120 python3 benches/peer/unet_step.py --preset faces64 \
            --size 64 --batch "$batch" --iterations 5 --device cuda &&
            note "      $(tail -n 1 "$work/pytorch-faces64-$batch.log")"
    done
else
    note "PyTorch with CUDA and diffusers not importable: no peer figures"
fi

note "## 2. CUDA"
cuda_ok=0
diagnose_cuda "$bin" kiln && cuda_ok=1
if [[ -n ${KILN_BIN_NO_AUTOTUNE:-} ]]; then
    plain_bin=$(realpath "$KILN_BIN_NO_AUTOTUNE")
    note "## 2b. CUDA without burn's autotune (binaries from $plain_bin)"
    diagnose_cuda "$plain_bin" no-autotune
fi

note "## 3. The original project's run: 30,000 faces at 64×64"
fastest=wgpu
if ((cuda_ok)); then
    wgpu_speed=$(sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p' "$work/faces64-kiln-wgpu-64-warm.log")
    cuda_speed=$(sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p' "$work/faces64-kiln-cuda:0-64-warm.log")
    awk "BEGIN { exit !(${cuda_speed:-0} > ${wgpu_speed:-0}) }" && fastest=cuda:0
fi
step timing-faces 120 "$bin/timing_faces" --from "$repo/assets/faces" --out "$work/faces30k" &&
    with_peak_memory face-train step face-train-30k 150 "$bin/face_train" --data "$work/faces30k" \
        --channels 3 --image-size 64 --preset faces64 --batch-size 64 --epochs 1 \
        --sample-every 100 --device "$fastest" --out "$work/faces30k-run"
# The progress line's last training speed (images/s over the last stretches, smoothed).
speed=$(tr '\r' '\n' <"$work/face-train-30k.log" 2>/dev/null | grep -o '[0-9.]* img/s' | tail -n 1 | cut -d' ' -f1)
note "      on $fastest: ${speed:-no} training images/s; $(grep '^done' "$work/face-train-30k.log" 2>/dev/null)"
[[ -n $speed ]] && note "      1.5 M image-steps at that speed: $(awk "BEGIN { printf \"%.1f\", 1500000 / $speed / 60 }") min"
with_peak_memory sample step sample-64-ddim-50 120 "$bin/face_sample" \
    --checkpoint "$work/faces30k-run" --sampler ddim --steps 50 --count 64 --device "$fastest" \
    --out "$work/samples.png" && note "      $(grep '^sampled' "$work/sample-64-ddim-50.log")"

if [[ -n ${KILN_BIN_NO_AUTOTUNE:-} ]]; then
    note "## 3b. wgpu without burn's autotune"
    time_faces64 "$plain_bin" no-autotune wgpu
fi

note "## 4. Every result against the CPU"
devices=(wgpu)
((cuda_ok)) && devices+=(cuda:0)
for device in "${devices[@]}"; do
    step "tests-$device" 150 env KILN_TEST_DEVICE="$device" KILN_TEST_DEVICE_REQUIRED=1 \
        "${gpu_tests[@]}" --nocapture
done
note "total: $SECONDS s"
