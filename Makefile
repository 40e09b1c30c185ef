# libfpd - build, test, demo. Everything is built out of tree under $(BUILD_DIR).
#
#   make            libfpd.a, libfpd.so and the tools (build/); with CUDA also the CUDA
#                   backend object build/libfpd-cuda.so (opened with dlopen on demand)
#   make demo       install missing Debian packages, build, compress the sample checkpoint
#   make test       install missing Debian packages, build, run every test (Criterion + CLI)
#   make check      a fast subset of the tests
#   make bench      benchmarks (FPD vs dense look-up, fit timings)
#   make bench-accuracy  equal-size comparison of FPD, dense, int8/int4, hashing and QR tables (~45 CPU-min)
#   make fuzz       build the libFuzzer targets (clang) and run each FUZZ_SECONDS (default 60)
#   make install    PREFIX=/usr/local DESTDIR=
#
# Knobs: CC NVCC CUDA_HOME PKG_CONFIG PREFIX DESTDIR BUILD_DIR CUDA=auto|0|1
#        CUDA_ARCH="sm_80 sm_90" SANITIZE=address,undefined WERROR=1 V=1 CFLAGS LDFLAGS

CC         ?= cc
NVCC       ?= nvcc
PKG_CONFIG ?= pkg-config
PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD_DIR  ?= build
CUDA       ?= auto
CUDA_ARCH  ?= sm_80 sm_90
SANITIZE   ?=
WERROR     ?=
V          ?=

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ------------------------------------------------------------------ deps
# what the library and the tools need (make demo installs these: deps-build)
DEB_BUILD_PACKAGES := libopenblas-dev liblapacke-dev libyaml-dev libjansson-dev pkg-config
# and for the tests (make test, make deps: all of DEB_PACKAGES)
DEB_PACKAGES := $(DEB_BUILD_PACKAGES) libcriterion-dev
# the Python package's tests (tools/python, tests/python) run with Debian's python3
DEB_PACKAGES += python3-numpy python3-torch
# the accuracy sample's plot (sample-compare-sizes --plot) and its test
DEB_PACKAGES += gnuplot-nox

# ------------------------------------------------------------------ CUDA switch
NVCC_PATH := $(shell command -v $(NVCC) 2>/dev/null)
ifeq ($(CUDA),auto)
  ifneq ($(NVCC_PATH),)
    USE_CUDA := 1
  else
    USE_CUDA := 0
  endif
else ifeq ($(CUDA),1)
  ifeq ($(NVCC_PATH),)
    $(error CUDA=1 but '$(NVCC)' was not found; install the CUDA toolkit or build with CUDA=0)
  endif
  USE_CUDA := 1
else
  USE_CUDA := 0
endif
CUDA_HOME ?= $(if $(NVCC_PATH),$(patsubst %/bin/,%,$(dir $(realpath $(NVCC_PATH)))),/usr/local/cuda)

# ------------------------------------------------------------------ flags
PKGS := openblas lapacke yaml-0.1 jansson
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
DEP_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CRIT_CFLAGS := $(shell $(PKG_CONFIG) --cflags criterion 2>/dev/null)
CRIT_LIBS   := $(shell $(PKG_CONFIG) --libs criterion 2>/dev/null)

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ifeq ($(WERROR),1)
  WARN += -Werror
endif
FPD_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -fvisibility=hidden $(WARN) -I. -Ilib $(DEP_CFLAGS)
FPD_LDLIBS := $(DEP_LIBS) -lm -lpthread -ldl

VARIANT := cpu
ifeq ($(USE_CUDA),1)
  VARIANT := cuda
  # libfpd and the tools never link CUDA: only the backend object does (CUDA_SO)
  FPD_CFLAGS += -DFPD_USE_CUDA
  CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcusolver -lstdc++
endif
ifneq ($(SANITIZE),)
  VARIANT := $(VARIANT)-san
  FPD_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
  FPD_LDFLAGS += -fsanitize=$(SANITIZE)
endif
override CFLAGS := $(FPD_CFLAGS) $(CFLAGS)
override LDFLAGS := $(FPD_LDFLAGS) $(LDFLAGS)

OBJ_DIR := $(BUILD_DIR)/$(VARIANT)

# ------------------------------------------------------------------ sources
LIB_SRC  := $(wildcard lib/*.c lib/cpu/*.c formats/*.c heuristics/*.c)
CU_SRC   := $(if $(filter 1,$(USE_CUDA)),$(wildcard lib/cuda/*.cu))
LIB_OBJ  := $(LIB_SRC:%.c=$(OBJ_DIR)/%.o)
# The CUDA backend object: lib/cuda/*.cu and the host-side C files next to them
# (plugin-host.c: the libfpd functions a backend calls, through the host table).
CUDA_SO  := $(if $(filter 1,$(USE_CUDA)),$(BUILD_DIR)/libfpd-cuda.so)
# the engine's host planning (lib/engine-plan.c) is plain C built into libfpd too (tested
# on the CPU); the backend object links its own copy (libfpd hides its symbols)
CUDA_SO_OBJ := $(CU_SRC:%.cu=$(OBJ_DIR)/%.o) $(patsubst %.c,$(OBJ_DIR)/%.o,$(wildcard lib/cuda/*.c)) \
               $(OBJ_DIR)/lib/engine-plan.o
# Fake backend objects for the tests (tests/lib/fake-cuda-backend.c): the CPU
# backend behind the CUDA backend's entry point, and broken variants.
FAKE_CUDA_SO := $(patsubst %,$(BUILD_DIR)/libfpd-fakecuda-%.so,ok oldabi layout nosym refuse)
TOOL_COMMON_SRC := $(filter-out tools/fpd-%.c,$(wildcard tools/*.c))
TOOL_COMMON_OBJ := $(TOOL_COMMON_SRC:%.c=$(OBJ_DIR)/%.o)
TOOL_SRC := $(wildcard tools/fpd-*.c)
TOOLS    := $(TOOL_SRC:tools/%.c=$(BUILD_DIR)/%)
SAMPLE_SRC := $(wildcard samples/*.c)
SAMPLES  := $(SAMPLE_SRC:samples/%.c=$(BUILD_DIR)/sample-%)
TEST_SRC := $(wildcard tests/*/test-*.c) $(wildcard tests/test-*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(OBJ_DIR)/%.o)
TEST_BIN := $(BUILD_DIR)/test-fpd
BENCH_SRC := $(wildcard tests/bench/bench-*.c)
BENCHES  := $(BENCH_SRC:tests/bench/%.c=$(BUILD_DIR)/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz-*.c)

STATIC_LIB := $(BUILD_DIR)/libfpd.a
SHARED_LIB := $(BUILD_DIR)/libfpd.so
# libfpd.so carries SONAME libfpd.so.MAJOR; the version comes from lib/fpd.h.
FPD_VERSION := $(shell sed -n 's/^\#define FPD_VERSION_STRING "\(.*\)"/\1/p' lib/fpd.h)
FPD_SOMAJOR := $(firstword $(subst ., ,$(FPD_VERSION)))
# The libraries and tools in $(BUILD_DIR) are relinked when the variant (cpu, cuda,
# sanitizers) changes: the stamp file is rewritten only when its content differs.
VARIANT_STAMP := $(BUILD_DIR)/.variant
$(shell mkdir -p $(BUILD_DIR) && (test "$$(cat $(VARIANT_STAMP) 2>/dev/null)" = "$(VARIANT)" || echo "$(VARIANT)" > $(VARIANT_STAMP)))

export FPD_DATA_DIR ?= $(abspath ../shared/data)
export FPD_BUILD_DIR := $(abspath $(BUILD_DIR))

.PHONY: all tools samples lib deps demo test check bench fuzz fuzz-build install clean summary
# Keep objects of pattern-rule chains (tools, benches): they are not intermediates to delete.
.SECONDARY:
all: summary lib tools samples

summary:
	@echo "==> building libfpd $(VARIANT) (CUDA=$(CUDA) -> $(USE_CUDA)) into $(BUILD_DIR)/"

lib: $(STATIC_LIB) $(SHARED_LIB) $(CUDA_SO)
tools: $(TOOLS)
samples: $(SAMPLES)

$(OBJ_DIR)/%.o: %.c | deps-ok
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) $(EXTRA_CFLAGS) -MMD -MP -c $< -o $@

$(OBJ_DIR)/%.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) -O2 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -I. -Ilib $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(subst sm_,,$(a)),code=$(a)) -DFPD_USE_CUDA -MMD -MP -c $< -o $@

$(STATIC_LIB): $(LIB_OBJ) $(VARIANT_STAMP)
	@$(if $(Q),echo "  AR    $@")
	$(Q)rm -f $@ && ar rcs $@ $(filter %.o,$^)

$(SHARED_LIB): $(LIB_OBJ) $(VARIANT_STAMP)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) -shared -Wl,--no-undefined -Wl,-soname,libfpd.so.$(FPD_SOMAJOR) $(LDFLAGS) -o $@ $(filter %.o,$^) $(FPD_LDLIBS)
	$(Q)ln -sf libfpd.so $(BUILD_DIR)/libfpd.so.$(FPD_SOMAJOR)

# The CUDA backend object: exports fpd_backend_plugin_init only (backend-impl.h).
$(BUILD_DIR)/plugin.map:
	@mkdir -p $(BUILD_DIR)
	$(Q)printf '{ global: fpd_backend_plugin_init; local: *; };\n' > $@

$(BUILD_DIR)/libfpd-cuda.so: $(CUDA_SO_OBJ) $(BUILD_DIR)/plugin.map $(VARIANT_STAMP)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) -shared -Wl,--no-undefined -Wl,--version-script=$(BUILD_DIR)/plugin.map $(LDFLAGS) -o $@ \
	    $(filter %.o,$^) $(CUDA_LDLIBS) -lm -lpthread

# the registry's last place to look for it: the install libdir
$(OBJ_DIR)/lib/backend.o: EXTRA_CFLAGS = -DFPD_LIBDIR='"$(PREFIX)/lib"'

FAKE_CUDA_OBJ := $(OBJ_DIR)/lib/cuda/plugin-host.o $(addprefix $(OBJ_DIR)/lib/cpu/,backend-cpu.o engine-cpu.o gemm-small.o kernels-cpu.o)
$(OBJ_DIR)/tests/lib/fake-cuda-%.o: tests/lib/fake-cuda-backend.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $@")
	$(Q)$(CC) $(CFLAGS) $(FAKE_DEFS) -MMD -MP -c $< -o $@
$(OBJ_DIR)/tests/lib/fake-cuda-oldabi.o: FAKE_DEFS = -DFAKE_ABI_VERSION=0
$(OBJ_DIR)/tests/lib/fake-cuda-layout.o: FAKE_DEFS = -DFAKE_BAD_LAYOUT
$(OBJ_DIR)/tests/lib/fake-cuda-nosym.o: FAKE_DEFS = -DFAKE_NO_ENTRY
$(OBJ_DIR)/tests/lib/fake-cuda-refuse.o: FAKE_DEFS = -DFAKE_REFUSE
$(BUILD_DIR)/libfpd-fakecuda-%.so: $(OBJ_DIR)/tests/lib/fake-cuda-%.o $(FAKE_CUDA_OBJ) $(BUILD_DIR)/plugin.map
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) -shared -Wl,--no-undefined -Wl,--version-script=$(BUILD_DIR)/plugin.map $(LDFLAGS) -o $@ \
	    $(filter %.o,$^) $(DEP_LIBS) -lm -lpthread
fake-backends: $(FAKE_CUDA_SO)
.PHONY: fake-backends

$(BUILD_DIR)/fpd-%: $(OBJ_DIR)/tools/fpd-%.o $(TOOL_COMMON_OBJ) $(STATIC_LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FPD_LDLIBS)

# sample programs (samples/*.c): build/sample-NAME, on the library alone (public headers)
$(BUILD_DIR)/sample-%: $(OBJ_DIR)/samples/%.o $(STATIC_LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FPD_LDLIBS)

$(OBJ_DIR)/tests/%.o: EXTRA_CFLAGS = $(CRIT_CFLAGS) -Wno-missing-prototypes
# the optimizers' element loops: vectorized (see the file's comment); the engine's
# micro-kernel: fused multiply-adds (ISO C mode turns contraction off) and its
# accumulators kept in registers (-O3 unrolls their short loops)
$(OBJ_DIR)/lib/cpu/optim-cpu.o: EXTRA_CFLAGS = -O3 -fno-math-errno
$(OBJ_DIR)/lib/cpu/gemm-small.o: EXTRA_CFLAGS = -O3 -ffp-contract=fast
$(TEST_BIN): $(TEST_OBJ) $(STATIC_LIB) | $(FAKE_CUDA_SO)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CRIT_LIBS) $(FPD_LDLIBS)

$(BUILD_DIR)/bench-%: $(OBJ_DIR)/tests/bench/bench-%.o $(STATIC_LIB)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FPD_LDLIBS)

# GPU check (tests/gpu): gpu-build compiles the CUDA-vs-CPU equality program and
# the GPU benchmark (needs nvcc, not a device; tests/cli/test-gpu-build.sh runs it
# when nvcc is present); gpu-check runs tests/gpu/run.sh (needs a device).
GPU_BINS := $(BUILD_DIR)/gpu-equal $(BUILD_DIR)/bench-gpu
.PHONY: gpu-build gpu-check
ifneq ($(filter gpu-build,$(MAKECMDGOALS)),)
  ifneq ($(USE_CUDA),1)
    $(error gpu-build needs CUDA (nvcc): make CUDA=1 gpu-build)
  endif
endif
gpu-build: $(GPU_BINS)
gpu-check:
	sh tests/gpu/run.sh

# they link the CUDA backend's objects themselves (tests/gpu/gpu-backend.h), with a stub
# for the entry point's host table (libfpd.a has the real helpers)
GPU_CUDA_OBJ := $(CU_SRC:%.cu=$(OBJ_DIR)/%.o) $(OBJ_DIR)/tests/gpu/plugin-host-stub.o
$(BUILD_DIR)/gpu-equal: $(OBJ_DIR)/tests/gpu/gpu-equal.o $(GPU_CUDA_OBJ) $(STATIC_LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FPD_LDLIBS) $(CUDA_LDLIBS)
$(BUILD_DIR)/bench-gpu: $(OBJ_DIR)/tests/gpu/bench-gpu.o $(GPU_CUDA_OBJ) $(STATIC_LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FPD_LDLIBS) $(CUDA_LDLIBS)

# gpu-emu: the CUDA engine's kernels compiled for the CPU (tests/gpu/cuda-emu.h,
# g++, AddressSanitizer) against the CPU engine by the same equality program: the
# kernels' logic, checked without a GPU or nvcc (tests/cli/test-gpu-build.sh).
# Symbols renamed so that it links next to a CUDA build's real engine.
CXX ?= g++
EMU_DIR  := $(BUILD_DIR)/emu
EMU_DEFS := -DFPD_CUDA_EMU $(foreach s,engine_ops ctx_device engine_forward_device engine_backward_device \
              engine_step_device engine_stream engine_set_direct_forward,-Dfpd__cuda_$(s)=fpd__emu_$(s))
EMU_SAN  := -fsanitize=address,undefined -fno-omit-frame-pointer
.PHONY: gpu-emu
gpu-emu: $(BUILD_DIR)/gpu-equal-emu
# (the headers whose structs and inline code both sides compile: a stale object
# would read another layout)
EMU_HDRS := lib/fpd.h lib/backend-impl.h lib/engine-plan-impl.h lib/free-round-impl.h lib/cuda/engine-cuda.h
$(EMU_DIR)/engine-cuda.o: lib/cuda/engine-cuda.cu $(EMU_HDRS) tests/gpu/cuda-emu.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX   $< (emulated)")
	$(Q)$(CXX) -std=c++17 -O1 -g $(EMU_SAN) $(EMU_DEFS) -I. -Ilib -include tests/gpu/cuda-emu.h -x c++ -c $< -o $@
$(EMU_DIR)/gpu-equal.o: tests/gpu/gpu-equal.c $(EMU_HDRS) tests/test-util.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(EMU_SAN) $(EMU_DEFS) -c $< -o $@
$(BUILD_DIR)/gpu-equal-emu: $(EMU_DIR)/gpu-equal.o $(EMU_DIR)/engine-cuda.o $(STATIC_LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) $(EMU_SAN) -o $@ $^ $(FPD_LDLIBS) -lstdc++

# deps: check the Debian packages; install the missing ones as root, else say how.
define install_missing
@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> installing Debian packages:$$missing"; \
	    (apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing)) || exit 1; \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))
deps-build:
	$(call install_missing,$(DEB_BUILD_PACKAGES))
.PHONY: deps deps-build
# Objects depend on the packages being there only when make is asked for deps.
deps-ok:
.PHONY: deps-ok

# demo and test build with one job per CPU unless make was given -j
NPROC := $(shell nproc 2>/dev/null || echo 1)
JOBS_FLAG = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC))

demo: deps-build
	@$(MAKE) --no-print-directory $(JOBS_FLAG) all
	@mkdir -p $(BUILD_DIR)/demo
	$(BUILD_DIR)/fpd-compress samples/glove-10k.safetensors -o $(BUILD_DIR)/demo/glove-10k.small.safetensors --force
	$(BUILD_DIR)/fpd-compress samples/glove-10k.safetensors -o $(BUILD_DIR)/demo/glove-10k.fpd.safetensors --encoding fpd --force -q
	$(BUILD_DIR)/fpd-inspect $(BUILD_DIR)/demo/glove-10k.small.safetensors
	$(BUILD_DIR)/fpd-inspect $(BUILD_DIR)/demo/glove-10k.fpd.safetensors

test: deps
	@$(MAKE) --no-print-directory $(JOBS_FLAG) all $(TEST_BIN)
	@echo "==> Criterion tests"
	$(TEST_BIN) --jobs 2 --timeout 300
	@echo "==> CLI tests"
	@sh tests/cli/run.sh $(BUILD_DIR)

check: all $(TEST_BIN)
	$(TEST_BIN) --jobs 2 --filter '!(fit_real)/*'

bench: all $(BENCHES)
	@for b in $(BENCHES); do echo "==> $$b"; $$b || exit 1; done

# bench-accuracy: the equal-size comparison (samples/compare-sizes.c): dense with a
# smaller d, row-wise int8 and int4 after training, hashing trick, QR trick (ids as given
# and ordered), FPD, FPD with ordered ids, FPD with ordered ids and per-row free
# coordinates (ACCURACY_FLAGS=--order-cost vocabulary: the order costs nothing), each at 4x, 10x, 30x
# and 100x smaller tables than dense D = 64, 3 seeds, on MovieLens-1M (GMF, HR@10) and
# Gowalla (MF with BPR, Recall@20), the two datasets in parallel under nice. Writes
# $(BUILD_DIR)/accuracy-{ml1m,gowalla}.{tsv,json,png,log}. About 45 CPU-minutes; the
# epochs are cut short of the published protocols to fit (README, "Equal-size
# comparison"). Needs gnuplot (Debian gnuplot-nox, one of DEB_PACKAGES: make deps).
ACCURACY_DATA      ?= ../shared/data
ACCURACY_ML_EPOCHS ?= 3
ACCURACY_GW_EPOCHS ?= 5
ACCURACY_FLAGS     ?=
.PHONY: bench-accuracy
bench-accuracy: deps $(BUILD_DIR)/sample-compare-sizes
	@echo "==> equal-size comparison (logs: $(BUILD_DIR)/accuracy-*.log)"
	@nice -n 10 $(BUILD_DIR)/sample-compare-sizes --movielens $(ACCURACY_DATA)/movielens-1m/ratings.tsv \
	  --epochs $(ACCURACY_ML_EPOCHS) $(ACCURACY_FLAGS) -o $(BUILD_DIR)/accuracy-ml1m \
	  --plot $(BUILD_DIR)/accuracy-ml1m.png > $(BUILD_DIR)/accuracy-ml1m.out 2> $(BUILD_DIR)/accuracy-ml1m.log & ml=$$!; \
	nice -n 10 $(BUILD_DIR)/sample-compare-sizes --gowalla $(ACCURACY_DATA)/gowalla \
	  --epochs $(ACCURACY_GW_EPOCHS) $(ACCURACY_FLAGS) -o $(BUILD_DIR)/accuracy-gowalla \
	  --plot $(BUILD_DIR)/accuracy-gowalla.png > $(BUILD_DIR)/accuracy-gowalla.out 2> $(BUILD_DIR)/accuracy-gowalla.log; gw=$$?; \
	wait $$ml; ml=$$?; \
	cat $(BUILD_DIR)/accuracy-ml1m.out $(BUILD_DIR)/accuracy-gowalla.out; \
	[ $$ml = 0 ] && [ $$gw = 0 ] || { echo "bench-accuracy failed (see the logs)"; exit 1; }

# fuzz: libFuzzer targets (tests/fuzz/fuzz-*.c) built with clang, ASan and UBSan into
# $(BUILD_DIR)/fuzz/, each run for FUZZ_SECONDS on its corpus (a work copy under
# $(BUILD_DIR)/fuzz/corpus-NAME, seeded from tests/fuzz/corpus/NAME), after replaying
# the inputs that once crashed it (tests/fuzz/regressions/NAME). A crash stops it and
# leaves crash-* (reproduce: $(BUILD_DIR)/fuzz/NAME crash-FILE).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_RUN_FLAGS ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -I. -Ilib $(DEP_CFLAGS)
FUZZ_DIR     := $(BUILD_DIR)/fuzz
FUZZ_OBJ     := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(filter-out lib/cuda/%,$(LIB_SRC)) $(TOOL_COMMON_SRC))
FUZZ_BINS    := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_DIR)/fuzz-%: tests/fuzz/fuzz-%.c $(FUZZ_OBJ)
	@$(if $(Q),echo "  FUZZLD $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJ) -o $@ $(FPD_LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@for b in $(FUZZ_BINS); do \
	  n=$$(basename $$b); c=$(FUZZ_DIR)/corpus-$$n; mkdir -p $$c; \
	  if [ -d tests/fuzz/regressions/$$n ]; then \
	    echo "==> $$n: replaying tests/fuzz/regressions/$$n"; \
	    $$b tests/fuzz/regressions/$$n/* >/dev/null 2>&1 || { echo "$$n: a regression input fails again"; exit 1; }; \
	  fi; \
	  echo "==> $$n for $(FUZZ_SECONDS) s (corpus $$c, seeds tests/fuzz/corpus/$$n)"; \
	  (cd $(FUZZ_DIR) && ./$$n $(FUZZ_RUN_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	     corpus-$$n $(abspath tests/fuzz/corpus)/$$n) || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/fpd $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(PREFIX)/lib/libfpd.so.$(FPD_VERSION)
	$(if $(CUDA_SO),install -m 755 $(CUDA_SO) $(DESTDIR)$(PREFIX)/lib/)
	ln -sf libfpd.so.$(FPD_VERSION) $(DESTDIR)$(PREFIX)/lib/libfpd.so.$(FPD_SOMAJOR)
	ln -sf libfpd.so.$(FPD_SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libfpd.so
	install -m 644 lib/fpd.h formats/fpd-formats.h heuristics/fpd-heuristics.h $(DESTDIR)$(PREFIX)/include/fpd/
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	printf 'prefix=$(PREFIX)\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: fpd\nDescription: FPD compressed embedding layers\nVersion: $(FPD_VERSION)\nRequires.private: openblas lapacke yaml-0.1 jansson\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lfpd\n' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/fpd.pc

clean:
	rm -rf $(BUILD_DIR)

-include $(shell find $(BUILD_DIR) -name '*.d' 2>/dev/null)
