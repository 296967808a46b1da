# daemon/: the `quantd` server (libevent evhttp, TLS through libevent_openssl).
QUANTD_SRCS += daemon/main.c daemon/config.c daemon/http.c daemon/http_err.c daemon/pool.c daemon/oci.c \
	daemon/auth.c daemon/metrics.c daemon/v1.c \
	daemon/jobs.c daemon/jobs_run.c daemon/audit_api.c daemon/mcache.c daemon/gc.c daemon/ingest.c \
	daemon/dlog.c daemon/mirror.c daemon/keys.c
LIBS += $(shell pkg-config --libs libevent_openssl libssl 2>/dev/null)
