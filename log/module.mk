# log/: the signed append-only log (a bare git repository written with libgit2, SSHSIG-signed commits), the
# RFC 6962 Merkle tree over its entries, C2SP signed-note checkpoints, freshness timestamps and audit queries.
# The only folder that includes libgit2 (docs/LOG.md).
LIBQD_SRCS += log/sshsig.c log/merkle.c log/note.c log/replog.c log/audit.c log/upload.c
