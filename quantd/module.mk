# quantd/: the engine. Each room lists its own sources in its own block.

# quantd/kernels/: block formats, the scalar reference kernels (the byte-exact definition of every format) and
# the dispatch table. The reference must not let the compiler fuse or reorder the float operations that decide
# rounding: no multiply-add contraction (and never -ffast-math) for anything in this folder.
LIBQD_SRCS += quantd/kernels/dispatch.c quantd/kernels/ref_util.c quantd/kernels/ref_legacy.c \
	quantd/kernels/ref_kquants.c quantd/kernels/ref_other.c \
	quantd/kernels/ref_iquants.c quantd/kernels/iq_tables.c quantd/kernels/iq_grids.c
$(O)/quantd/kernels/%.o: CFLAGS_ALL += -ffp-contract=off -fno-fast-math

# quantd/cuda/: the GPU path (include/qd/cuda.h): the reference kernels compiled for the device (kernels.cu) and the
# host side that streams rows through it (host.c), with make CUDA=1; otherwise none.c, which says it is not built.
ifeq ($(CUDA),1)
LIBQD_SRCS += quantd/cuda/host.c
LIBQD_CU_SRCS += quantd/cuda/kernels.cu
$(O)/quantd/cuda/host.o: CFLAGS_ALL += -isystem $(CUDA_HOME)/include
else
LIBQD_SRCS += quantd/cuda/none.c
endif

# quantd/io/: model files (GGUF, safetensors, llama2.c) through mmap, and the GGUF writer.
# quantd/recipes/: llama-quantize's whole-model recipes (which tensor gets which type).
# quantd/pipeline/: tensor-by-tensor quantization of a model into a GGUF, threads over row ranges; imatrix files.
LIBQD_SRCS += quantd/io/model.c quantd/io/gguf.c quantd/io/safetensors.c quantd/io/llama2c.c quantd/io/names.c \
	quantd/io/tokenizer.c quantd/io/tokenizer_spm.c
LIBQD_SRCS += quantd/recipes/recipe.c quantd/pipeline/quantize.c quantd/pipeline/imatrix.c
# quantd/runtime/: the reference llama runtime and the validation pass (f32 compute; -O3 so the dot loops
# vectorize; an AVX2+FMA dot is compiled with a target attribute and chosen at run time).
LIBQD_SRCS += quantd/runtime/model.c quantd/runtime/load_model.c quantd/runtime/forward.c \
	quantd/runtime/validate.c quantd/runtime/validate_json.c
$(O)/quantd/runtime/%.o: CFLAGS_ALL += -O3

# quantd/calib/: calibration: activation statistics through the runtime's matmul observer, and the calibrated
# methods built on them (imatrix collection, GPTQ, AWQ, SmoothQuant).
LIBQD_SRCS += quantd/calib/actstats.c
# AWQ and SmoothQuant W8A8 (include/qd/awq.h, include/qd/smoothquant.h)
LIBQD_SRCS += quantd/calib/awq.c quantd/calib/awq_io.c quantd/calib/smoothquant.c \
	quantd/calib/hf_load.c
# the AWQ grids' values ((q - z) * scale, f16 scales) are compared bit for bit with the files: no contraction
$(O)/quantd/calib/awq.o: CFLAGS_ALL += -ffp-contract=off -fno-fast-math
# calibration sets, imatrix files, GPTQ (include/qd/gptq.h); GPTQ computes values exactly as the dequantizers do
LIBQD_SRCS += quantd/calib/calibset.c quantd/calib/imatrix_collect.c quantd/calib/gptq.c
$(O)/quantd/calib/gptq.o: CFLAGS_ALL += -ffp-contract=off -fno-fast-math
$(O)/quantd/calib/%.o: CFLAGS_ALL += -O3

# quantd/formats/: the Hugging Face quantized layouts (bitsandbytes NF4/FP4, compressed-tensors INT8/FP8/INT4),
# their element codes, and whole-model export to a Transformers/vLLM folder; quantd/io/safetensors_write.c is the
# safetensors writer and raw reader they use. Like the kernels, no multiply-add contraction: the dequantized values
# must be the single f32 operations the loaders perform.
LIBQD_SRCS += quantd/io/safetensors_write.c quantd/formats/codes.c quantd/formats/layouts.c quantd/formats/export.c \
	quantd/formats/gptq_layout.c
$(O)/quantd/formats/%.o: CFLAGS_ALL += -ffp-contract=off -fno-fast-math
# quantd/kernels/arch/x86/: the SIMD variants, each file with its own ISA flags (and -O3 for the vectorized
# dequantizers); the pattern rule above adds -ffp-contract=off to them too. Elsewhere they compile to nothing.
LIBQD_SRCS += quantd/kernels/arch/x86/avx2.c quantd/kernels/arch/x86/avx512.c
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
$(O)/quantd/kernels/arch/x86/avx2.o: CFLAGS_ALL += -O3 -mavx2 -mf16c -ffp-contract=off
$(O)/quantd/kernels/arch/x86/avx512.o: CFLAGS_ALL += -O3 -mavx512f -mavx512bw -mavx512vl -mavx2 -mf16c \
	-ffp-contract=off
endif
