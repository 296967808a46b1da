# client/: the `quant` command line.
QUANT_SRCS += client/main.c client/exit.c client/progress.c client/cmd_store.c
QUANT_SRCS += client/cmd_rows.c client/cmd_kernels.c
QUANT_SRCS += client/cmd_run.c client/cmd_validate.c
