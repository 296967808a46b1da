# client/: the `quant` command line.
QUANT_SRCS += client/main.c client/exit.c client/interrupt.c client/progress.c client/cmd_store.c
QUANT_SRCS += client/cmd_rows.c client/cmd_kernels.c
QUANT_SRCS += client/cmd_quantize.c client/cmd_inspect.c
QUANT_SRCS += client/cmd_quantize_calib.c
QUANT_SRCS += client/method_gptq.c client/cmd_imatrix.c
QUANT_SRCS += client/cmd_key.c client/cmd_policy.c client/cmd_sign.c client/cmd_verify.c
QUANT_SRCS += client/cmd_run.c client/cmd_validate.c
QUANT_SRCS += client/cmd_token.c
QUANT_SRCS += client/cmd_log.c client/cmd_audit.c
QUANT_SRCS += client/http.c client/config.c client/cmd_push.c client/cmd_pull.c client/pull_file.c client/cmd_card.c client/pull_log.c
QUANT_SRCS += client/cmd_jobs.c
