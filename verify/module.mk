# verify/: digests now; keys, DSSE envelopes and the trust policy next. The only folder that includes OpenSSL.
LIBQD_SRCS += verify/digest.c
