#!/usr/bin/env bash
# Builds what scripts/gpu_check.sh runs, for a GPU machine without a Rust toolchain, and packs
# it into one archive:
#   bin/           the examples and the GPU test target, `--features cuda,wgpu`, release;
#   no-autotune/   unet_step and backend_probe again without burn's autotune (Kiln's
#                  default feature `gpu-autotune` off);
#   lib/           the Vulkan loader wgpu opens (Debian's libvulkan1, for machines that ship only
#                  NVIDIA's driver) and what eu-stack (elfutils, in bin/) needs to read the
#                  stacks of a run that stalls.
# The two that gpu_check.sh watches keep their symbols, for those stacks; the rest are
# stripped. The binaries share most of their code, so one xz stream with a large window holds
# them in a fraction of their sizes; Python's tarfile unpacks it where `xz` is missing.
#
# cudarc, burn's CUDA driver binding, is built for the CUDA version in CUDARC_CUDA_VERSION
# (default 13000: CUDA 13.0, the H200's driver 580 and its NVRTC); left to itself without
# nvcc it takes its newest.
#
#   scripts/gpu_kit.sh KIT.tar.xz
# then on the GPU machine, from a checkout of the same commit at the same path:
#   mkdir kit && tar -xJf KIT.tar.xz -C kit
#   PATH=$PWD/kit/bin:$PATH LD_LIBRARY_PATH=$PWD/kit/lib KILN_BIN=$PWD/kit/bin \
#       KILN_BIN_NO_AUTOTUNE=$PWD/kit/no-autotune scripts/gpu_check.sh report.txt logs
set -euo pipefail
cd "$(dirname "$0")/.."
kit=$(realpath -m "$1")
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
watched=(unet_step backend_probe)
examples=(face_train face_sample timing_faces "${watched[@]}")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/no-autotune" "$stage/lib"

# Builds the examples named with Cargo's FEATURE-FLAGS (one word) into FOLDER of the kit.
build() {
    local flags=$1 folder=$2 example
    shift 2
    # shellcheck disable=SC2086 # the flags are several words
    cargo build --release $flags "${@/#/--example=}"
    for example in "$@"; do
        if [[ " ${watched[*]} " == *" $example "* ]]; then
            strip --strip-debug -o "$stage/$folder/$example" "target/release/examples/$example"
        else
            strip -o "$stage/$folder/$example" "target/release/examples/$example"
        fi
    done
}

build "--no-default-features --features flex,cuda,wgpu" no-autotune "${watched[@]}"
build "--features cuda,wgpu" bin "${examples[@]}"
gpu_test=$(cargo test --release --features cuda,wgpu --test gpu --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
strip -o "$stage/bin/gpu" "$gpu_test"

(
    cd "$stage"
    apt-get download libvulkan1 elfutils libdw1 libelf1 >/dev/null
    for deb in *.deb; do dpkg-deb -x "$deb" root; done
    cp -L root/usr/lib/x86_64-linux-gnu/{libvulkan.so.1,libdw.so.1,libelf.so.1} lib/
    cp root/usr/bin/eu-stack bin/
    rm -rf root ./*.deb
)
tar -C "$stage" -cf - bin no-autotune lib | xz -T2 -6e --lzma2=preset=6e,dict=256MiB >"$kit"
ls -l "$kit"
