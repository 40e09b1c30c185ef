# The GPU check's programs (tests/gpu: gpu-equal, bench-gpu) compile and link
# wherever nvcc is, so that a change that breaks them shows here, not only on a
# machine with a GPU (they are run by tests/gpu/run.sh, not here).
if [ "$(cat "$BUILD/.variant" 2>/dev/null)" != "cuda" ]; then
    skip "make CUDA=1 gpu-build" "the build under test is not the CUDA variant ($(cat "$BUILD/.variant" 2>/dev/null))"
elif ! command -v "${NVCC:-nvcc}" >/dev/null 2>&1; then
    skip "make CUDA=1 gpu-build" "nvcc not found"
else
    run make --no-print-directory -C "$ROOT" CUDA=1 BUILD_DIR="$BUILD" -j2 gpu-build
    expect_rc "make CUDA=1 gpu-build compiles the equality program and the benchmark" 0
    expect_exists "gpu-equal built" "$BUILD/gpu-equal"
    expect_exists "bench-gpu built" "$BUILD/bench-gpu"
    # without a device both say so and fail cleanly (exit 2 for the equality program)
    if [ -x "$BUILD/gpu-equal" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        run "$BUILD/gpu-equal"
        expect_rc "gpu-equal without a device: exit 2" 2
        expect_grep "gpu-equal without a device: says so" err.txt "no CUDA backend"
    fi
fi

# The CUDA engine's kernels run on the CPU (tests/gpu/cuda-emu.h, under ASan)
# against the CPU engine: their logic is checked on every machine (make gpu-emu).
if command -v "${CXX:-g++}" >/dev/null 2>&1; then
    run make --no-print-directory -C "$ROOT" BUILD_DIR="$BUILD" -j2 gpu-emu
    expect_rc "make gpu-emu builds the emulated CUDA engine" 0
    if [ -x "$BUILD/gpu-equal-emu" ]; then
        run "$BUILD/gpu-equal-emu" --quick
        expect_rc "emulated CUDA engine equals the CPU engine (every operation)" 0
        expect_grep "emulated CUDA engine: no check failed" out.txt "^gpu-equal: [0-9]+ passed, 0 failed$"
    fi
else
    skip "make gpu-emu" "no C++ compiler"
fi

# tests/gpu/run.sh PREBUILT=1 (binaries packed by tests/gpu/pack.sh for a GPU machine
# that cannot build): a missing binary is named before anything runs
mkdir -p nobuild
run env PREBUILT=1 BUILD_DIR="$PWD/nobuild" sh "$ROOT/tests/gpu/run.sh"
expect_rc "run.sh PREBUILT=1 without the binaries: exit 1" 1
expect_grep "run.sh PREBUILT=1 without the binaries: names the missing one" out.txt "PREBUILT=1 but .*/nobuild/gpu-equal is missing"
