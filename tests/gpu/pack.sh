#!/bin/sh
# Pack the device check for a GPU machine that cannot build libfpd (no Debian -dev
# packages, no network): builds with CUDA here (make CUDA=1 BUILD_DIR=build/gpu all
# gpu-build), then writes one archive with the check's four binaries and the host
# libraries they load that are not the C/C++ runtime's or CUDA's (OpenBLAS, LAPACKE,
# libyaml, jansson, gfortran, ...). The GPU machine brings its own driver and CUDA
# libraries (the same CUDA major version as here's nvcc).
#
#   sh tests/gpu/pack.sh [ARCHIVE]          (default build/gpu-check.tar.xz)
#
# Then, on the GPU machine, in a checkout of the same commit:
#
#   tar xJf gpu-check.tar.xz && LD_LIBRARY_PATH=$PWD/build/gpu/libs PREBUILT=1 sh tests/gpu/run.sh
#
# (used on an H200 on 2026-12-04: binaries built on Debian 12 with CUDA 13.0 ran on the
# device's Ubuntu image with its CUDA 13.0; 9 MB packed).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
ARCHIVE=${1:-build/gpu-check.tar.xz}
B=build/gpu
make --no-print-directory CUDA=1 BUILD_DIR=$B -j"$(nproc 2>/dev/null || echo 2)" all gpu-build
rm -rf $B/libs
mkdir -p $B/libs
for f in gpu-equal bench-gpu fpd-compress libfpd-cuda.so; do
    ldd "$B/$f" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
    case $name in
        libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | libgcc_s.so* | libstdc++.so* | ld-linux*) ;;
        libcuda* | libcublas* | libcusolver* | libcusparse* | libnvJitLink* | libcurand* | libcufft*) ;;
        *) cp -L "$path" "$B/libs/$name" ;;
    esac
done
tar cJf "$ARCHIVE" $B/gpu-equal $B/bench-gpu $B/fpd-compress $B/libfpd-cuda.so $B/libs
echo "pack.sh: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1)): $(ls $B/libs | tr '\n' ' ')"
