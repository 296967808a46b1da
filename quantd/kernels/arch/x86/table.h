/*
 * table.h - the kernel table of one x86 variant, included last by avx2.c and avx512.c (which name it through
 * QD_SIMD_TABLE, QD_SIMD_VARIANT and QD_SIMD_NAME). NULL entries fall back to the reference in dispatch.c.
 */
#define OPS(q, qi, dq) {q, qi, dq}

const qd_kernel_table QD_SIMD_TABLE = {
    .variant = QD_SIMD_VARIANT,
    .name = QD_SIMD_NAME,
    .ops = {
        [QD_TYPE_F16] = OPS(lg_quantize_f16, NULL, lg_dequantize_f16),
        [QD_TYPE_BF16] = OPS(lg_quantize_bf16, NULL, lg_dequantize_bf16),
        [QD_TYPE_Q4_0] = OPS(gr_quantize_q4_0, lq_quantize_q4_0_imatrix, dq_dequantize_q4_0),
        [QD_TYPE_Q4_1] = OPS(lg_quantize_q4_1, lq_quantize_q4_1_imatrix, dq_dequantize_q4_1),
        [QD_TYPE_Q5_0] = OPS(lg_quantize_q5_0, lq_quantize_q5_0_imatrix, dq_dequantize_q5_0),
        [QD_TYPE_Q5_1] = OPS(lg_quantize_q5_1, lq_quantize_q5_1_imatrix, dq_dequantize_q5_1),
        [QD_TYPE_Q8_0] = OPS(gr_quantize_q8_0, NULL, dq_dequantize_q8_0),
        [QD_TYPE_Q2_K] = OPS(lq_quantize_q2_K, lq_quantize_q2_K_imatrix, dq_dequantize_q2_K),
        [QD_TYPE_Q3_K] = OPS(lq_quantize_q3_K, lq_quantize_q3_K_imatrix, dq_dequantize_q3_K),
        [QD_TYPE_Q4_K] = OPS(lq_quantize_q4_K, lq_quantize_q4_K_imatrix, dq_dequantize_q4_K),
        [QD_TYPE_Q5_K] = OPS(lq_quantize_q5_K, lq_quantize_q5_K_imatrix, dq_dequantize_q5_K),
        [QD_TYPE_Q6_K] = OPS(lq_quantize_q6_K, lq_quantize_q6_K_imatrix, dq_dequantize_q6_K),
        [QD_TYPE_IQ4_NL] = OPS(lq_quantize_iq4_nl, lq_quantize_iq4_nl_imatrix, dq_dequantize_iq4_nl),
        [QD_TYPE_IQ4_XS] = OPS(lq_quantize_iq4_xs, lq_quantize_iq4_xs_imatrix, dq_dequantize_iq4_xs),
    },
    .within = gr_within,
    .f16_bound = lg_f16_bound,
};

#undef OPS
