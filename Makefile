# quantd - one non-recursive Makefile. Each folder lists its sources in <dir>/module.mk.
#
#   make                 build libqd.a, quantd and quant (build/release)
#   make CC=clang        the same with clang (warnings are errors under both)
#   make test            unit tests, integration tests, then the unit tests again under clang ASan+UBSan
#   make demo            a walk through of what exists, against an embedded store under ./var/
#   make deps            install the Debian packages the build and the tests need (as root), else print the line;
#                        then the npm packages of tests/package.json (npm ci) when npm exists
#   make bench-store     put/get throughput against cat and cp
#   make bench-pull      quant pull (verified) of a 1 GiB blob against curl -o and openssl dgst
#   make bench-verify    bundle verifications/s against openssl speed ed25519 ecdsap256
#   make bench-audit     1M artifacts in the audit indexes: p50/p99 of lineage and field queries vs a full scan
#   make fuzz            libFuzzer builds of tests/fuzz/fuzz_*.c (clang) in build/fuzz/libfuzzer
#   make bench-quantize  a 1.5 GB F16 checkpoint quantized per variant (GB/s, RSS), then kernel GB/s per variant
#                        (with CUDA=1: the GPU path against the CPU and the card's copy bandwidth, bench/cuda.sh)
#   make CUDA=1          the GPU path too (nvcc; build/release-cuda)
#   make bench-serve     quantd against nginx (same bytes): manifest req/s (wrk, 64 conn), 1 GiB blob MB/s; 60 s mixed load
#   make FLAVOUR=asan    a sanitizer build in build/asan (clang)

FLAVOUR ?= release
B := build/$(FLAVOUR)
# Objects: shared by the CUDA build of a flavour, which only adds quantd/cuda/'s own (so make CUDA=1 after make
# compiles two files).
O := build/$(FLAVOUR)/obj

ifeq ($(FLAVOUR),asan)
CC := clang
OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDOPT := -fsanitize=address,undefined
else ifeq ($(FLAVOUR),fuzz)
CC := clang
OPT := -O1 -g -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer
LDOPT := -fsanitize=address,undefined
else ifeq ($(FLAVOUR),debug)
OPT := -O0 -g
LDOPT :=
else
OPT := -O2 -g
LDOPT :=
endif

# make CUDA=1: the GPU path (quantd/cuda/, include/qd/cuda.h) with nvcc; libraries and programs in
# build/<flavour>-cuda. Without it the build needs no CUDA at all (quantd/cuda/none.c answers "not built").
CUDA ?= 0
ifeq ($(CUDA),1)
B := build/$(FLAVOUR)-cuda
NVCC ?= nvcc
ifeq ($(shell command -v $(NVCC) 2>/dev/null),)
$(error make CUDA=1: $(NVCC) not found (install CUDA, or NVCC=/path/to/nvcc))
endif
CUDA_HOME ?= $(abspath $(dir $(shell command -v $(NVCC) 2>/dev/null))..)
CUDA_ARCH ?= 90
# Machine code for CUDA_ARCH and its PTX (newer GPUs compile that at load). The kernels are the scalar reference:
# no contraction, IEEE division and square root, subnormals kept (see quantd/cuda/kernels.cu).
NVCC_FLAGS := -std=c++17 -O3 -gencode arch=compute_$(CUDA_ARCH),code=[sm_$(CUDA_ARCH),compute_$(CUDA_ARCH)] \
	-fmad=false -prec-div=true -prec-sqrt=true -ftz=false -Iinclude -Werror all-warnings \
	-Xcompiler -Wall,-Wextra,-Werror
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -ldl -lstdc++
endif

PKGS := lmdb libzstd libcrypto jansson libcjson libgit2 libevent libcurl zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -pthread -Iinclude $(WARN) $(OPT) $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := -pthread $(LDOPT) $(LDFLAGS)
LIBS := $(PKG_LIBS) $(CUDA_LIBS) -lm

QD_BUILD_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# Filled by the module.mk files.
LIBQD_SRCS :=
LIBQD_CU_SRCS :=
QUANT_SRCS :=
QUANTD_SRCS :=
include common/module.mk verify/module.mk store/module.mk log/module.mk quantd/module.mk client/module.mk daemon/module.mk

obj = $(patsubst %.c,$(O)/%.o,$(1))
LIBQD_OBJS := $(call obj,$(LIBQD_SRCS)) $(patsubst %.cu,$(O)/%.o,$(LIBQD_CU_SRCS))
QUANT_OBJS := $(call obj,$(QUANT_SRCS))
QUANTD_OBJS := $(call obj,$(QUANTD_SRCS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
STRESS_SRCS := $(wildcard tests/stress/test_*.c)
STRESS_BINS := $(patsubst tests/stress/%.c,$(B)/tests/%,$(STRESS_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(B)/tools/%,$(TOOL_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRCS))

.PHONY: all test check tests unit-bins demo deps clean bench-store bench-verify bench-runtime bench-quantize bench-pull bench-audit bench-serve \
	fuzz lint
all: $(B)/libqd.a $(B)/quant $(B)/quantd bin/quant bin/quantd

# Convenience links: bin/quant and bin/quantd are the programs of the last build.
bin/quant bin/quantd: bin/%: $(B)/%
	@mkdir -p bin
	@ln -sf ../$(B)/$* $@

$(B)/libqd.a: $(LIBQD_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(B)/quant: $(QUANT_OBJS) $(B)/libqd.a
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS_ALL) -o $@ $(QUANT_OBJS) $(B)/libqd.a $(LIBS)

$(B)/quantd: $(QUANTD_OBJS) $(B)/libqd.a
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS_ALL) -o $@ $(QUANTD_OBJS) $(B)/libqd.a $(LIBS)

$(O)/common/version.o: CFLAGS_ALL += -DQD_BUILD_COMMIT='"$(QD_BUILD_COMMIT)"'

$(O)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) $(CFLAGS_$(subst /,_,$*)) -MMD -MP -c -o $@ $<

$(O)/%.o: %.cu
	@mkdir -p $(@D)
	@echo "  NVCC    $<"
	@$(NVCC) $(NVCC_FLAGS) -MMD -MP -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(B)/libqd.a tests/unit/testutil.h tests/unit/store_fixture.h tests/unit/kernel_data.h
	@mkdir -p $(@D)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(B)/libqd.a $(LDFLAGS_ALL) $(LIBS) $(CMOCKA_LIBS)

$(B)/tests/%: tests/stress/%.c $(B)/libqd.a tests/unit/testutil.h tests/unit/store_fixture.h tests/unit/kernel_data.h
	@mkdir -p $(@D)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(B)/libqd.a $(LDFLAGS_ALL) $(LIBS) $(CMOCKA_LIBS)

$(B)/tools/%: tests/tools/%.c $(B)/libqd.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libqd.a $(LDFLAGS_ALL) $(LIBS)

# Fuzz targets linked with the replay driver (tests/fuzz/driver.c): run over tests/fuzz/corpus/<name>/ by run.sh.
$(B)/fuzz/%: tests/fuzz/%.c tests/fuzz/driver.c tests/fuzz/fuzz.h $(B)/libqd.a
	@mkdir -p $(@D)
	@echo "  FUZZ    $@"
	@$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< tests/fuzz/driver.c $(B)/libqd.a $(LDFLAGS_ALL) $(LIBS)

# `make fuzz` builds the same targets with libFuzzer (clang, ASan+UBSan, libqd instrumented) into
# build/fuzz/libfuzzer/ for long runs; give a scratch directory first so that new inputs do not land in the corpus
# unreviewed.
$(B)/libfuzzer/%: tests/fuzz/%.c $(B)/libqd.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -fsanitize=fuzzer -o $@ $< $(B)/libqd.a $(LDFLAGS_ALL) -fsanitize=fuzzer $(LIBS)

fuzz:
	@$(MAKE) --no-print-directory FLAVOUR=fuzz $(patsubst tests/fuzz/%.c,build/fuzz/libfuzzer/%,$(FUZZ_SRCS))
	@echo "run e.g.: mkdir -p /tmp/new && build/fuzz/libfuzzer/fuzz_bundle -max_total_time=300 /tmp/new tests/fuzz/corpus/fuzz_bundle"

$(B)/bench/%: bench/%.c bench/bench.h $(B)/libqd.a
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libqd.a $(LDFLAGS_ALL) $(LIBS)

tests: all $(UNIT_BINS) $(STRESS_BINS) $(TOOL_BINS) $(FUZZ_BINS)
unit-bins: $(B)/libqd.a $(UNIT_BINS) $(TOOL_BINS) $(FUZZ_BINS)

# The whole suite: release unit + stress + integration, then the unit tests under ASan+UBSan.
test check:
	@$(MAKE) --no-print-directory tests
	@$(MAKE) --no-print-directory FLAVOUR=asan unit-bins
	@tests/run.sh

demo: all $(TOOL_BINS)
	@scripts/demo.sh

bench-store: all $(TOOL_BINS) $(BENCH_BINS)
	@bench/store.sh

bench-verify: all $(B)/bench/verify
	@B=$(B) bench/verify.sh

bench-audit: $(B)/bench/audit
	@$(B)/bench/audit
# quant pull of a 1 GiB blob against curl -o /dev/null and openssl dgst -sha256 (SIZE_MIB=... to change)
bench-pull: all
	@bench/pull.sh $${SIZE_MIB:-1024}
# tokens/s of the reference runtime on a generated dim-2048 llama (LAYERS=2 by default; 4.4 GB of f32 per 22 layers)
bench-runtime: all $(B)/bench/runtime_bench
	@$(B)/bench/runtime_bench speed $${LAYERS:-2}
# with CUDA=1: the GPU path against the CPU and the card's copy bandwidth instead (bench/cuda.sh)
ifeq ($(CUDA),1)
bench-quantize: all $(B)/bench/cuda_bench $(TOOL_BINS)
	@B=$(B) bench/cuda.sh
else
bench-quantize: all $(B)/bench/quantize_bench $(TOOL_BINS)
	@bench/quantize_model.sh
	@bench/quantize.sh
endif
# quantd against nginx on the same bytes: wrk on a 4 KiB manifest, curl on a 1 GiB blob; then 60 s of mixed load
bench-serve: all
	@bench/serve.sh $${SIZE_MIB:-1024}

DEB_PKGS := build-essential pkg-config clang libclang-rt-14-dev liblmdb-dev libzstd-dev libssl-dev \
	libjansson-dev libcjson-dev libgit2-dev libevent-dev libcurl4-openssl-dev libcmocka-dev openssl python3 \
	python3-jsonschema python3-cryptography python3-numpy curl skopeo git openssh-client nginx wrk zlib1g-dev
# Node.js for the llama.cpp checks (node-llama-cpp needs node >= 20): Debian's nodejs and npm only where no node
# is installed yet (a nodesource nodejs already ships npm and conflicts with Debian's npm package).
deps:
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEB_PKGS) && \
		{ command -v node >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; }; \
	else \
		echo "run as root, or: sudo apt-get update && sudo apt-get install -y $(DEB_PKGS)"; \
		command -v node >/dev/null || echo "and for the llama.cpp checks: sudo apt-get install -y nodejs npm"; \
	fi
	@# tests/llama: node-llama-cpp pinned in package-lock.json (prebuilt llama.cpp; never downloads or builds)
	@if command -v npm >/dev/null; then \
		cd tests/llama && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --no-audit --no-fund --ignore-scripts; \
	else \
		echo "npm not found: tests/integration/450_llama_load.sh will skip"; \
	fi
	@# tests/: @sigstore/verify and its siblings pinned in package-lock.json, for 201_sigstore_js.sh
	@if command -v npm >/dev/null; then \
		cd tests && npm ci --no-audit --no-fund --ignore-scripts; \
	else \
		echo "npm not found: tests/integration/201_sigstore_js.sh will skip"; \
	fi

lint:
	@! grep -nE '\b(malloc|calloc|realloc|free|strdup|sprintf|strcat|gets)\(' $(filter-out common/alloc.c,$(LIBQD_SRCS)) \
		|| (echo "lint: use qd_malloc/qd_free and bounded string functions" && false)

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
