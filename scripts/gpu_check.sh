#!/usr/bin/env bash
# Kiln on a machine with an NVIDIA GPU, in one go, most certain results first:
#   1. wgpu (Vulkan): a faces64 training step at 64×64, batch 64 and 128 (images/s, peak GPU
#      memory, first step cold and again with the caches warm), beside PyTorch's same step
#      (benches/peer/unet_step.py --device cuda) in the same run;
#   2. CUDA: the tiny UNet at 16×16 with cubecl's compilation and autotune logs on (kernels
#      compiled, autotune results, and where the host thread is when it runs long), then the
#      faces64 steps as for wgpu if it finished;
#   3. the original project's run: a 30,000-face folder (examples/timing_faces) trained for
#      one epoch at 64×64, batch 64, on the faster backend; 1.5 M image-steps projected from
#      its speed; then 64 faces × 50 DDIM steps from that run;
#   4. the GPU test target (tests/gpu.rs, every result against the CPU) on wgpu and CUDA.
# Everything goes to one small report (default gpu-report.txt; the first argument overrides),
# which docs/performance.md quotes; each part's whole log goes to LOGS when that second
# argument is given. Each part has a time limit, so a hang costs seconds, not the machine:
# about 9 minutes in all when every part runs to its limit.
#
# On a GPU machine without a Rust toolchain, build elsewhere with `--features cuda,wgpu` and
# point KILN_BIN at a folder holding `face_train`, `face_sample`, `unet_step`, `timing_faces`
# and `gpu` (the test binary); the checkout they were built in must exist at the same path,
# for the bundled faces. Without KILN_BIN the script builds them (about 15 minutes).
#
#   [KILN_BIN=DIR] scripts/gpu_check.sh [REPORT [LOGS]]
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
# Kiln's kernel and autotune caches (kiln::gpu_cache) start empty, so the first runs are cold.
export KILN_CACHE_DIR=$work/kiln-cache

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
    local status=$?
    kill "$sampler_pid" 2>/dev/null
    wait "$sampler_pid" 2>/dev/null
    note "      peak GPU memory in use: $(sort -n "$work/$name.mem" | tail -n 1) MiB"
    return $status
}

# A faces64 training step on DEVICE at batch 64 and 128, each run twice (cold, then warm).
time_faces64() {
    local device=$1 batch run ok=0
    for batch in 64 128; do
        for run in cold warm; do
            local name="faces64-$device-$batch-$run"
            with_peak_memory "$name" step "$name" 120 "$bin/unet_step" --preset faces64 \
                --size 64 --batch "$batch" --iterations 5 --device "$device" || ok=1
            note "      $(grep 'images/s' "$work/$name.log")"
        done
    done
    return $ok
}

: >"$report"
note "# Kiln GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
note "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads"
note "nvrtc: $( (ldconfig -p 2>/dev/null | grep -o 'libnvrtc[^ ]*' | sort -u | tr '\n' ' '); ls -d /usr/local/cuda*/ 2>/dev/null | tr '\n' ' ')"

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
time_faces64 wgpu
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
# cubecl reads cubecl.toml from the working folder: compilation and autotune logs to files,
# and the caches where Kiln would put them (a user's cubecl.toml replaces Kiln's settings).
diagnose=$work/cuda-diagnosis
mkdir -p "$diagnose"
cat >"$diagnose/cubecl.toml" <<EOF
[compilation]
cache = { file = "$KILN_CACHE_DIR" }
[compilation.logger]
level = "basic"
file = "$diagnose/compilation.log"
[autotune]
cache = { file = "$KILN_CACHE_DIR" }
[autotune.logger]
level = "minimal"
file = "$diagnose/autotune.log"
EOF
(cd "$diagnose" && "$bin/unet_step" --preset tiny --size 16 --batch 2 --iterations 2 \
    --device cuda:0 >"$work/cuda-tiny.log" 2>&1) &
tiny_pid=$!
cuda_ok=1
for second in $(seq 1 90); do
    sleep 1
    kill -0 "$tiny_pid" 2>/dev/null || break
    if ((second % 30 == 0)); then
        note "      cuda tiny at ${second} s: $(grep -c '' "$diagnose/compilation.log" 2>/dev/null) compilation log lines, $(grep -c '' "$diagnose/autotune.log" 2>/dev/null) autotune log lines"
    fi
done
if kill -0 "$tiny_pid" 2>/dev/null; then
    note "FAIL  cuda-tiny: still running after 90 s; its threads (name, state, CPU ticks):"
    pid=$(pgrep -n -f "unet_step --preset tiny")
    for task in /proc/"$pid"/task/*; do
        awk '{print "      " $2, $3, $14 + $15}' "$task/stat"
    done | sort -k3 -n -r | head -n 8 | tee -a "$report"
    if command -v gdb >/dev/null; then
        timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt 12' >"$work/cuda-tiny.gdb" 2>&1
        note "      backtraces in $work/cuda-tiny.gdb; the busiest thread's top frames:"
        grep -m 12 '^#' "$work/cuda-tiny.gdb" | sed 's/^/      /' | tee -a "$report"
    fi
    kill "$tiny_pid"
    cuda_ok=0
elif wait "$tiny_pid"; then
    note "ok    cuda-tiny: $(grep 'images/s' "$work/cuda-tiny.log")"
else
    note "FAIL  cuda-tiny, last lines:"
    tail -n 15 "$work/cuda-tiny.log" | sed 's/^/      /' | tee -a "$report"
    cuda_ok=0
fi
note "      kernels compiled: $(grep -c '' "$diagnose/compilation.log" 2>/dev/null), by kind:"
sed -n 's/^.*\(kernel\|Kernel\)[^a-zA-Z]*\([A-Za-z_]*\).*$/\2/p' "$diagnose/compilation.log" 2>/dev/null |
    sort | uniq -c | sort -n -r | head -n 8 | sed 's/^/      /' | tee -a "$report"
note "      autotune log lines: $(grep -c '' "$diagnose/autotune.log" 2>/dev/null)"
((cuda_ok)) && time_faces64 cuda:0

note "## 3. The original project's run: 30,000 faces at 64×64"
fastest=wgpu
if ((cuda_ok)); then
    wgpu_speed=$(sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p' "$work/faces64-wgpu-64-warm.log")
    cuda_speed=$(sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p' "$work/faces64-cuda:0-64-warm.log")
    awk "BEGIN { exit !(${cuda_speed:-0} > ${wgpu_speed:-0}) }" && fastest=cuda:0
fi
step timing-faces 120 "$bin/timing_faces" --from "$repo/assets/faces" --out "$work/faces30k" &&
    with_peak_memory face-train step face-train-30k 240 "$bin/face_train" --data "$work/faces30k" \
        --channels 3 --image-size 64 --preset faces64 --batch-size 64 --epochs 1 \
        --sample-every 100 --device "$fastest" --out "$work/faces30k-run"
# The progress line's last training speed (images/s over the last stretches, smoothed).
speed=$(tr '\r' '\n' <"$work/face-train-30k.log" | grep -o '[0-9.]* img/s' | tail -n 1 | cut -d' ' -f1)
note "      on $fastest: ${speed:-no} training images/s; $(grep '^done' "$work/face-train-30k.log")"
[[ -n $speed ]] && note "      1.5 M image-steps at that speed: $(awk "BEGIN { printf \"%.1f\", 1500000 / $speed / 60 }") min"
with_peak_memory sample step sample-64-ddim-50 120 "$bin/face_sample" \
    --checkpoint "$work/faces30k-run" --sampler ddim --steps 50 --count 64 --device "$fastest" \
    --out "$work/samples.png" && note "      $(grep '^sampled' "$work/sample-64-ddim-50.log")"

note "## 4. Every result against the CPU"
devices=(wgpu)
((cuda_ok)) && devices+=(cuda:0)
for device in "${devices[@]}"; do
    step "tests-$device" 150 env KILN_TEST_DEVICE="$device" KILN_TEST_DEVICE_REQUIRED=1 \
        "${gpu_tests[@]}" --nocapture
done
note "total: $SECONDS s"
