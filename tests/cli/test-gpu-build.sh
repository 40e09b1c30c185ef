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
