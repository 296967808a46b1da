# daemon/: the `quantd` server.
QUANTD_SRCS += daemon/main.c
