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
        # the register-tiled kernels (FPD_CUDA_KERNELS=tiled; not the default until timed
        # on a GPU), on the cases whose shapes take them (tests/gpu/gpu-equal.c: k = 3 at
        # R = 8, 16 (N=2000) and 32 (N=1000), k = 2 (N=600), k = 4 (N=400), three terms
        # with uneven split sums (N=700)): every check, and the launches named
        # (FPD_EMU_TRACE) show that they ran, and that by default they do not
        run env FPD_EMU_TRACE=1 FPD_CUDA_KERNELS=tiled "$BUILD/gpu-equal-emu" --quick --only "N=2000 "
        expect_rc "tiled kernels, k = 3 R = 8, 16: exit 0" 0
        expect_grep "tiled kernels, k = 3 R = 8, 16: no check failed" out.txt "^gpu-equal: [0-9]+ passed, 0 failed$"
        for k in "k_direct_rt_ptr" "k_rows_rt<8>" "k_rows_rt<16>" "k_partial_rt<8>" "k_partial_rt<16>" \
            "k_core_grad_rt<8>" "k_core_grad_rt<16>" "k_parent_grad_rt<8>" "k_parent_grad_rt<16>"; do
            expect_grep "tiled kernels: $k ran" err.txt "^launch $k$"
        done
        expect_no_grep "tiled kernels: the generic kernels they replace did not run" err.txt \
            "^launch k_(direct|rows|partial|core_grad|parent_grad)$"
        for only in "N=600 " "N=1000 " "N=400 " "N=700 "; do
            run env FPD_CUDA_KERNELS=tiled "$BUILD/gpu-equal-emu" --quick --only "$only"
            expect_rc "tiled kernels, $only: exit 0" 0
            expect_grep "tiled kernels, $only: no check failed" out.txt "^gpu-equal: [0-9]+ passed, 0 failed$"
        done
        run env FPD_EMU_TRACE=1 "$BUILD/gpu-equal-emu" --quick --only "N=600 "
        expect_rc "default kernels traced: exit 0" 0
        expect_grep "default kernels: the generic direct forward ran" err.txt "^launch k_direct$"
        expect_no_grep "default kernels: no tiled kernel ran" err.txt "^launch k_.*_rt"
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
