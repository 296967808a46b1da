# verify/: digests, keys, DSSE envelopes, Sigstore bundles, in-toto statements, the trust policy.
# The only folder that includes OpenSSL.
LIBQD_SRCS += verify/digest.c verify/util.c verify/key.c verify/dsse.c verify/statement.c verify/policy.c \
	verify/check.c verify/vjson.c
