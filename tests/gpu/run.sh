#!/bin/sh
# The device check of the CUDA engine, one command on a machine with a CUDA GPU
# (written for one H200; no network needed): builds with CUDA, runs the
# CUDA-against-CPU equality program (every engine operation, tests/gpu/gpu-equal.c),
# then the benchmark (tests/gpu/bench-gpu.cu), and prints one table of figures; the
# equality and the benchmark run twice: the default kernels, then the register-tiled
# ones (FPD_CUDA_KERNELS=tiled, lib/cuda/engine-cuda.cu), side by side.
# Exits non-zero on a build failure, a mismatch, or a benchmark error.
#
#   sh tests/gpu/run.sh            (from the repository root, or anywhere)
#   BUILD_DIR=build/gpu JOBS=16 FPD_BENCH_QUICK=1 sh tests/gpu/run.sh
#   PREBUILT=1 sh tests/gpu/run.sh   (binaries built elsewhere with `make CUDA=1
#       BUILD_DIR=build/gpu all gpu-build`, carried in BUILD_DIR: no build stage; for
#       a device machine without the Debian -dev packages)
#
# Time on an H200 (measured 2026-12-04, binaries built elsewhere: PREBUILT=1): equality
# 6 s, the tools 1 s, the benchmark 7 s; the build, with 16 jobs, is not measured there.
# Each stage has a timeout so that the whole stays under 8 minutes.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
BUILD_DIR=${BUILD_DIR:-build/gpu}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
OUT=$BUILD_DIR/gpu-check
mkdir -p "$OUT"
t0=$(date +%s)
stage() { echo "==> $1 ($(($(date +%s) - t0)) s)"; }

if [ "${PREBUILT:-0}" = 1 ]; then
    stage "build skipped (PREBUILT=1): using $BUILD_DIR"
    for f in gpu-equal bench-gpu fpd-compress libfpd-cuda.so; do
        [ -e "$BUILD_DIR/$f" ] || { echo "run.sh: PREBUILT=1 but $BUILD_DIR/$f is missing"; exit 1; }
    done
else
    stage "build (make CUDA=1 BUILD_DIR=$BUILD_DIR -j$JOBS gpu-build)"
    if ! timeout 300 make --no-print-directory CUDA=1 BUILD_DIR="$BUILD_DIR" -j"$JOBS" all gpu-build >"$OUT/build.log" 2>&1; then
        tail -40 "$OUT/build.log"
        echo "run.sh: the CUDA build failed (log: $OUT/build.log)"
        exit 1
    fi
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

stage "equality: CUDA engine against the CPU engine"
timeout 150 "$BUILD_DIR/gpu-equal" >"$OUT/equal.log" 2>&1
eq_rc=$?
grep -v '^ok' "$OUT/equal.log"
eq_line=$(tail -1 "$OUT/equal.log")
# the register-tiled kernels (lib/cuda/engine-cuda.cu: FPD_CUDA_KERNELS=tiled, not the
# default until measured on a GPU)
stage "equality: the register-tiled kernels (FPD_CUDA_KERNELS=tiled)"
FPD_CUDA_KERNELS=tiled timeout 150 "$BUILD_DIR/gpu-equal" >"$OUT/equal-tiled.log" 2>&1
eqt_rc=$?
grep -v '^ok' "$OUT/equal-tiled.log"
eqt_line=$(tail -1 "$OUT/equal-tiled.log")

stage "the tools on the GPU: fpd-compress --device cuda (dlopen of libfpd-cuda.so) against --device cpu"
tools_rc=0
for dev in cpu cuda; do
    timeout 120 "$BUILD_DIR/fpd-compress" samples/glove-10k.safetensors -o "$OUT/glove-$dev.safetensors" --encoding fpd \
        --epochs 2 --device $dev --force --json >"$OUT/compress-$dev.json" 2>"$OUT/compress-$dev.err" || tools_rc=1
done
# the first rel_error of the report is the table's: equal within 1e-3 (relative) by the contract
e_cpu=$(grep -o '"rel_error": [0-9.e+-]*' "$OUT/compress-cpu.json" | head -1 | awk '{print $2}')
e_gpu=$(grep -o '"rel_error": [0-9.e+-]*' "$OUT/compress-cuda.json" | head -1 | awk '{print $2}')
dev_gpu=$(grep -o '"device": "[^"]*"' "$OUT/compress-cuda.json" | head -1)
tools_line="fpd-compress glove-10k, 2 finetuning epochs: rel_error cpu $e_cpu, cuda $e_gpu ($dev_gpu)"
if [ "$tools_rc" -ne 0 ] || ! awk -v a="$e_cpu" -v b="$e_gpu" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-3 * a) }'; then
    tools_rc=1
    cat "$OUT/compress-cuda.err"
fi
echo "$tools_line"

stage "benchmark"
timeout 240 "$BUILD_DIR/bench-gpu" "$@" >"$OUT/bench.log" 2>&1
bench_rc=$?
stage "benchmark, the register-tiled kernels (FPD_CUDA_KERNELS=tiled)"
FPD_CUDA_KERNELS=tiled timeout 240 "$BUILD_DIR/bench-gpu" "$@" >"$OUT/bench-tiled.log" 2>&1
bencht_rc=$?

stage "done"
echo
echo "## GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - t0)) s)"
echo
echo "equality: $eq_line (exit $eq_rc; log $OUT/equal.log)"
echo "equality, tiled kernels: $eqt_line (exit $eqt_rc; log $OUT/equal-tiled.log)"
echo "tools: $tools_line (exit $tools_rc)"
echo
cat "$OUT/bench.log"
echo
echo "### the same with FPD_CUDA_KERNELS=tiled"
cat "$OUT/bench-tiled.log"
echo
echo "Goals (H200): forward >= 1.0x dense for (8,1) and (8,2); GMF training >= 0.96x dense;"
echo "(32,1) forward + backward below FBTT-Embedding's 0.416 us per look-up."
[ "$eq_rc" -eq 0 ] || { echo "run.sh: equality FAILED (exit $eq_rc)"; exit 1; }
[ "$eqt_rc" -eq 0 ] || { echo "run.sh: equality of the tiled kernels FAILED (exit $eqt_rc)"; exit 1; }
[ "$tools_rc" -eq 0 ] || { echo "run.sh: the tools on the GPU FAILED (rel_error apart by more than 1e-3, or an error)"; exit 1; }
[ "$bench_rc" -eq 0 ] || { echo "run.sh: benchmark FAILED (exit $bench_rc)"; exit 1; }
[ "$bencht_rc" -eq 0 ] || { echo "run.sh: benchmark of the tiled kernels FAILED (exit $bencht_rc)"; exit 1; }
exit 0
