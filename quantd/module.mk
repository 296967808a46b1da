# quantd/: the engine. Each room lists its own sources in its own block.

# quantd/kernels/: block formats, the scalar reference kernels (the byte-exact definition of every format) and
# the dispatch table. The reference must not let the compiler fuse or reorder the float operations that decide
# rounding: no multiply-add contraction (and never -ffast-math) for anything in this folder.
LIBQD_SRCS += quantd/kernels/dispatch.c quantd/kernels/ref_util.c quantd/kernels/ref_legacy.c \
	quantd/kernels/ref_kquants.c quantd/kernels/ref_other.c \
	quantd/kernels/ref_iquants.c quantd/kernels/iq_tables.c quantd/kernels/iq_grids.c
$(B)/obj/quantd/kernels/%.o: CFLAGS_ALL += -ffp-contract=off -fno-fast-math

# quantd/kernels/arch/x86/: the SIMD variants, each file with its own ISA flags (and -O3 for the vectorized
# dequantizers); the pattern rule above adds -ffp-contract=off to them too. Elsewhere they compile to nothing.
LIBQD_SRCS += quantd/kernels/arch/x86/avx2.c quantd/kernels/arch/x86/avx512.c
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
$(B)/obj/quantd/kernels/arch/x86/avx2.o: CFLAGS_ALL += -O3 -mavx2 -mf16c -ffp-contract=off
$(B)/obj/quantd/kernels/arch/x86/avx512.o: CFLAGS_ALL += -O3 -mavx512f -mavx512bw -mavx512vl -mavx2 -mf16c \
	-ffp-contract=off
endif
