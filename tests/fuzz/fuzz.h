/* fuzz.h - the libFuzzer entry point every tests/fuzz/fuzz_<target>.c defines. */
#ifndef QD_FUZZ_H
#define QD_FUZZ_H
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#endif
