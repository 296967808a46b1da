# client/: the `quant` command line.
QUANT_SRCS += client/main.c client/exit.c client/progress.c client/cmd_store.c client/cmd_token.c
