/*
 * cmd_log.c - `quant log ...` and `quant audit ...`: the signed log, offline, on a log directory (docs/LOG.md).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "qd/qd.h"
#include "qd/replog.h"
#include "qd/verify.h"

static const char *log_usage =
    "usage: quant log <subcommand> DIR [options]\n"
    "\n"
    "  init DIR --origin NAME                      a new log (a bare git repository)\n"
    "  publish DIR --key K --name NS/MODEL --manifest DIGEST --bundle FILE [--policy P] [--time T]\n"
    "  tag DIR --key K --name NS/MODEL:TAG --manifest DIGEST [--time T]\n"
    "  key-add|key-revoke DIR --key K --subject PUBKEY [--time T]\n"
    "                                              append one signed entry; prints its index\n"
    "  fetch URL DIR [REF]                         fetch URL's refs/heads/main into REF of the bare repository\n"
    "                                              DIR with libgit2 (default REF refs/heads/main); prints the head\n"
    "  show DIR [--index I]                        entry JSON (all entries, one a line, without --index)\n"
    "  checkpoint DIR --key K                      a signed checkpoint note (C2SP tlog-checkpoint)\n"
    "  timestamp DIR --key K [--ttl S] [--now T]   a signed freshness timestamp (default ttl 600 s)\n"
    "  vkey DIR --key K                            the note verifier key of the log\n"
    "  allowed-signers --key K                     a line for git's gpg.ssh.allowedSignersFile\n"
    "  prove DIR --index I [--size N]              an inclusion proof (JSON, hex hashes)\n"
    "  consistency DIR --from N [--size M]         a consistency proof (JSON)\n"
    "  verify DIR --log-key PUB [--policy P] [--state FILE]\n"
    "        verify every commit signature and entry; with --state, the log must fast-forward the last\n"
    "        verified state, which is then advanced (exit 4 when the log does not verify)\n"
    "  check-timestamp FILE --log-key PUB --origin NAME --state FILE [--now T] [--match VERIFYSTATE]\n"
    "        refuse an expired (freeze) or older (rollback) timestamp; with --match, also one that does not\n"
    "        describe the log last verified with --state VERIFYSTATE (size, root, tag map); exit 4 then\n"
    "\n"
    "--json (every subcommand): one JSON object on stdout, shapes in schemas/client.schema.json (log_*)\n";

static const char *audit_usage =
    "usage: quant audit <subcommand> LOGDIR [options]\n"
    "\n"
    "  query LOGDIR [--method M] [--format F] [--bits N] [--calibration C] [--converter NAME]\n"
    "        [--converter-version V] [--hardware H] [--key KEYID] [--verdict V] [--namespace NS]\n"
    "        [--since T] [--until T] [--json]      published variants matching all the filters\n"
    "  lineage LOGDIR DIGEST [--down] [--depth N] [--output json|dot|tree]\n"
    "        the sources of a manifest (default) or what was derived from it (--down)\n";

typedef struct opts {
    const char *match, *origin, *key, *name, *manifest, *bundle, *policy, *subject, *log_key, *state, *output;
    const char *method, *format, *calibration, *converter, *converter_version, *hardware, *keyid, *verdict, *ns;
    int64_t time, now, ttl, since, until;
    long long index, size, from, depth, bits;
    bool json, down;
} opts;

static int parse_ll(long long *out, const char *s, const char *what)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 0) {
        fprintf(stderr, "quant: %s must be a non-negative integer\n", what);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_opts(opts *o, int argc, char **argv, bool reset)
{
    static const struct option lo[] = {
        {"origin", 1, NULL, 'O'}, {"key", 1, NULL, 'k'}, {"name", 1, NULL, 'n'}, {"manifest", 1, NULL, 'm'},
        {"bundle", 1, NULL, 'b'}, {"policy", 1, NULL, 'p'}, {"subject", 1, NULL, 's'}, {"log-key", 1, NULL, 'L'},
        {"state", 1, NULL, 'S'}, {"output", 1, NULL, 'o'}, {"time", 1, NULL, 't'}, {"now", 1, NULL, 'N'},
        {"ttl", 1, NULL, 'T'}, {"index", 1, NULL, 'i'}, {"size", 1, NULL, 'z'}, {"from", 1, NULL, 'f'},
        {"depth", 1, NULL, 'd'}, {"method", 1, NULL, 1}, {"format", 1, NULL, 2}, {"bits", 1, NULL, 3},
        {"calibration", 1, NULL, 4}, {"converter", 1, NULL, 5}, {"converter-version", 1, NULL, 6},
        {"hardware", 1, NULL, 7}, {"verdict", 1, NULL, 8}, {"namespace", 1, NULL, 9}, {"since", 1, NULL, 10},
        {"until", 1, NULL, 11}, {"json", 0, NULL, 'j'}, {"down", 0, NULL, 'D'}, {"up", 0, NULL, 'U'},
        {"key-id", 1, NULL, 12}, {"match", 1, NULL, 13}, {"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0}};
    long long v;
    int c;
    if (reset) {
        memset(o, 0, sizeof(*o));
        o->index = o->size = o->from = -1;
        o->ttl = 600;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        switch (c) {
        case 'O': o->origin = optarg; break;
        case 'k': o->key = optarg; break;
        case 'n': o->name = optarg; break;
        case 'm': o->manifest = optarg; break;
        case 'b': o->bundle = optarg; break;
        case 'p': o->policy = optarg; break;
        case 's': o->subject = optarg; break;
        case 'L': o->log_key = optarg; break;
        case 'S': o->state = optarg; break;
        case 'o': o->output = optarg; break;
        case 't': if (parse_ll(&v, optarg, "--time")) return -1; o->time = v; break;
        case 'N': if (parse_ll(&v, optarg, "--now")) return -1; o->now = v; break;
        case 'T': if (parse_ll(&v, optarg, "--ttl")) return -1; o->ttl = v; break;
        case 'i': if (parse_ll(&o->index, optarg, "--index")) return -1; break;
        case 'z': if (parse_ll(&o->size, optarg, "--size")) return -1; break;
        case 'f': if (parse_ll(&o->from, optarg, "--from")) return -1; break;
        case 'd': if (parse_ll(&o->depth, optarg, "--depth")) return -1; break;
        case 1: o->method = optarg; break;
        case 2: o->format = optarg; break;
        case 3: if (parse_ll(&o->bits, optarg, "--bits")) return -1; break;
        case 4: o->calibration = optarg; break;
        case 5: o->converter = optarg; break;
        case 6: o->converter_version = optarg; break;
        case 7: o->hardware = optarg; break;
        case 8: o->verdict = optarg; break;
        case 9: o->ns = optarg; break;
        case 10: if (parse_ll(&v, optarg, "--since")) return -1; o->since = v; break;
        case 11: if (parse_ll(&v, optarg, "--until")) return -1; o->until = v; break;
        case 12: o->keyid = optarg; break;
        case 13: o->match = optarg; break;
        case 'j': o->json = true; break;
        case 'D': o->down = true; break;
        case 'U': o->down = false; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    return 0;
}

static int need(const char *v, const char *what, const char *cmd)
{
    if (v)
        return 0;
    fprintf(stderr, "quant %s: %s is required\n", cmd, what);
    return -1;
}

static int put(const qd_buf *b)
{
    int rc = qd_write_all(1, b->ptr ? b->ptr : "", b->len);
    return rc < 0 ? qd_fail(rc, "write") : EXIT_OK_;
}

/* Print j (stolen) as one compact JSON line. */
static int put_json(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int rc;
    json_decref(j);
    if (!text)
        return qd_fail(qd_error_set(QD_EINVAL, QD_EC_NONE, "cannot encode the output as JSON (a value not UTF-8?)"),
                       "--json");
    rc = qd_write_all(1, text, strlen(text));
    if (rc >= 0)
        rc = qd_write_all(1, "\n", 1);
    free(text); /* jansson */
    return rc < 0 ? qd_fail(rc, "write") : EXIT_OK_;
}

/* b's text without one trailing newline, as a JSON string (stolen by json_pack's "o") */
static json_t *jtext(const qd_buf *b)
{
    size_t n = b->len;
    if (n && ((const char *)b->ptr)[n - 1] == '\n')
        n--;
    return json_stringn(b->ptr ? (const char *)b->ptr : "", n);
}

static int do_append(const char *sub, const char *dir, const opts *o)
{
    qd_replog *log = NULL;
    qd_key *key = NULL, *subject = NULL;
    qd_policy *policy = NULL;
    qd_buf bundle = QD_BUF_INIT(0);
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    uint64_t idx = 0;
    FILE *f = NULL;
    int rc, ret = EXIT_OK_;
    if (need(o->key, "--key", sub))
        return EXIT_USAGE;
    e.time = o->time;
    e.name = o->name;
    if (!strcmp(sub, "publish") || !strcmp(sub, "tag")) {
        e.kind = !strcmp(sub, "publish") ? QD_REPLOG_PUBLISH : QD_REPLOG_TAG;
        if (need(o->name, "--name", sub) || need(o->manifest, "--manifest", sub) ||
            (e.kind == QD_REPLOG_PUBLISH && need(o->bundle, "--bundle", sub)))
            return EXIT_USAGE;
        if ((rc = qd_digest_parse(&e.manifest, o->manifest)) < 0)
            return qd_fail(rc, "--manifest");
        if (e.kind == QD_REPLOG_PUBLISH) {
            char tmp[65536];
            size_t n;
            if (!(f = fopen(o->bundle, "rb"))) {
                perror(o->bundle);
                return EXIT_NOTFOUND;
            }
            while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
                if ((rc = qd_buf_put(&bundle, tmp, n)) < 0) {
                    ret = qd_fail(rc, o->bundle);
                    goto done;
                }
            e.bundle = bundle.ptr;
            e.bundle_len = bundle.len;
        }
    } else {
        e.kind = !strcmp(sub, "key-add") ? QD_REPLOG_KEY_ADD : QD_REPLOG_KEY_REVOKE;
        if (need(o->subject, "--subject", sub))
            return EXIT_USAGE;
        if ((rc = qd_key_load(&subject, o->subject)) < 0) {
            ret = qd_fail(rc, o->subject);
            goto done;
        }
        e.key = subject;
    }
    if ((rc = qd_key_load(&key, o->key)) < 0) {
        ret = qd_fail(rc, o->key);
        goto done;
    }
    if (o->policy && (rc = qd_policy_load(&policy, o->policy)) < 0) {
        ret = qd_fail(rc, o->policy);
        goto done;
    }
    if ((rc = qd_replog_open(&log, dir)) < 0 || (rc = qd_replog_append(log, &idx, key, &e, policy)) < 0) {
        ret = qd_fail(rc, sub);
        goto done;
    }
    if (o->json)
        ret = put_json(json_pack("{s:s, s:I, s:s}", "kind", sub, "index", (json_int_t)idx, "head", qd_replog_head(log)));
    else
        printf("%" PRIu64 " %s\n", idx, qd_replog_head(log));
done:
    if (f)
        fclose(f);
    qd_buf_dispose(&bundle);
    qd_replog_free(log);
    qd_key_free(key);
    qd_key_free(subject);
    qd_policy_free(policy);
    return ret;
}

static int do_proof(const char *sub, const char *dir, const opts *o)
{
    qd_replog *log = NULL;
    uint8_t proof[QD_MERKLE_PROOF_MAX * QD_HASH_LEN], root[QD_HASH_LEN], leaf[QD_HASH_LEN], r1[QD_HASH_LEN];
    size_t n = 0, i;
    uint64_t size;
    qd_buf out = QD_BUF_INIT(0), e = QD_BUF_INIT(0);
    char h[65];
    int rc, ret = EXIT_OK_;
    bool incl = !strcmp(sub, "prove");
    if ((incl && o->index < 0) || (!incl && o->from < 0)) {
        fprintf(stderr, "quant log %s: %s is required\n", sub, incl ? "--index" : "--from");
        return EXIT_USAGE;
    }
    if ((rc = qd_replog_open(&log, dir)) < 0)
        return qd_fail(rc, dir);
    size = o->size >= 0 ? (uint64_t)o->size : qd_replog_size(log);
    if (incl)
        rc = qd_merkle_inclusion_proof(qd_replog_merkle(log), (uint64_t)o->index, size, proof, &n);
    else
        rc = qd_merkle_consistency_proof(qd_replog_merkle(log), (uint64_t)o->from, size, proof, &n);
    if (rc < 0 || (rc = qd_merkle_root(qd_replog_merkle(log), size, root)) < 0) {
        ret = qd_fail(rc, sub);
        goto done;
    }
    qd_buf_printf(&out, "{\"size\":%" PRIu64 ",\"root\":\"%s\"", size, qd_hex(h, root, QD_HASH_LEN));
    if (incl) {
        if ((rc = qd_replog_entry_json(&e, log, (uint64_t)o->index)) < 0) {
            ret = qd_fail(rc, sub);
            goto done;
        }
        qd_merkle_leaf_hash(leaf, e.ptr, e.len);
        qd_buf_printf(&out, ",\"index\":%lld,\"leaf\":\"%s\"", o->index, qd_hex(h, leaf, QD_HASH_LEN));
    } else {
        qd_merkle_root(qd_replog_merkle(log), (uint64_t)o->from, r1);
        qd_buf_printf(&out, ",\"from\":%lld,\"from_root\":\"%s\"", o->from, qd_hex(h, r1, QD_HASH_LEN));
    }
    qd_buf_puts(&out, ",\"proof\":[");
    for (i = 0; i < n; i++)
        qd_buf_printf(&out, "%s\"%s\"", i ? "," : "", qd_hex(h, proof + i * QD_HASH_LEN, QD_HASH_LEN));
    qd_buf_puts(&out, "]}\n");
    ret = put(&out);
done:
    qd_buf_dispose(&out);
    qd_buf_dispose(&e);
    qd_replog_free(log);
    return ret;
}

static int do_verify(const char *dir, const opts *o)
{
    qd_key *lk = NULL;
    qd_policy *policy = NULL;
    qd_replog_state prev, now;
    qd_verify_failure why;
    char h[65];
    int rc, ret = EXIT_OK_;
    if (need(o->log_key, "--log-key", "log verify"))
        return EXIT_USAGE;
    memset(&prev, 0, sizeof(prev));
    if ((rc = qd_key_load(&lk, o->log_key)) < 0 || (o->policy && (rc = qd_policy_load(&policy, o->policy)) < 0) ||
        (o->state && (rc = qd_replog_state_load(&prev, o->state)) < 0)) {
        ret = qd_fail(rc, "log verify");
        goto done;
    }
    if ((rc = qd_replog_verify(&now, &why, dir, lk, policy, o->state ? &prev : NULL)) < 0) {
        ret = qd_fail(rc, "log verify");
        goto done;
    }
    if (o->state && (rc = qd_replog_state_save(&now, o->state)) < 0) {
        ret = qd_fail(rc, o->state);
        goto done;
    }
    qd_hex(h, now.root, QD_HASH_LEN);
    if (o->json) {
        ret = put_json(json_pack("{s:b, s:I, s:s?, s:s}", "verified", 1, "size", (json_int_t)now.size, "head",
                                 now.head[0] ? now.head : NULL, "root", h));
        goto done;
    }
    printf("ok: %" PRIu64 " entries, head %s, root %s\n", now.size, now.head[0] ? now.head : "-", h);
done:
    qd_key_free(lk);
    qd_policy_free(policy);
    return ret;
}

static int do_check_ts(const char *file, const opts *o)
{
    qd_key *lk = NULL;
    qd_buf note = QD_BUF_INIT(1 << 20);
    qd_timestamp ts;
    qd_fresh_verdict v;
    FILE *f;
    char tmp[4096];
    size_t n;
    int rc, ret = EXIT_OK_;
    if (need(o->log_key, "--log-key", "log check-timestamp") || need(o->origin, "--origin", "log check-timestamp") ||
        need(o->state, "--state", "log check-timestamp"))
        return EXIT_USAGE;
    if (!(f = fopen(file, "rb"))) {
        perror(file);
        return EXIT_NOTFOUND;
    }
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        qd_buf_put(&note, tmp, n);
    fclose(f);
    if ((rc = qd_key_load(&lk, o->log_key)) < 0) {
        ret = qd_fail(rc, o->log_key);
        goto done;
    }
    if ((rc = qd_fresh_verify(&ts, &v, note.ptr ? note.ptr : "", note.len, o->origin, lk, o->state, o->now)) < 0) {
        ret = qd_fail(rc, v == QD_FRESH_EXPIRED ? "freeze" : v == QD_FRESH_ROLLBACK ? "rollback" : "timestamp");
        goto done;
    }
    if (o->match) {
        qd_replog_state st;
        if ((rc = qd_replog_state_load(&st, o->match)) < 0 || (rc = qd_fresh_match(&ts, &st)) < 0) {
            ret = qd_fail(rc, o->match);
            goto done;
        }
    }
    if (o->json) {
        ret = put_json(json_pack("{s:b, s:I, s:I, s:I}", "fresh", 1, "size", (json_int_t)ts.checkpoint.size, "issued",
                                 (json_int_t)ts.issued, "expires", (json_int_t)ts.expires));
        goto done;
    }
    printf("ok: size %" PRIu64 ", issued %lld, expires %lld\n", ts.checkpoint.size, (long long)ts.issued,
           (long long)ts.expires);
done:
    qd_buf_dispose(&note);
    qd_key_free(lk);
    return ret;
}

static int with_key_log(const char *sub, const char *dir, const opts *o)
{
    qd_key *key = NULL;
    qd_replog *log = NULL;
    qd_buf out = QD_BUF_INIT(0);
    int rc, ret;
    if (need(o->key, "--key", sub))
        return EXIT_USAGE;
    if ((rc = qd_key_load(&key, o->key)) < 0)
        return qd_fail(rc, o->key);
    if (!strcmp(sub, "allowed-signers")) {
        rc = qd_buf_puts(&out, "quantd@log namespaces=\"git\" ");
        if (rc == QD_OK)
            rc = qd_key_public_openssh(&out, key, NULL);
        if (rc == QD_OK)
            rc = qd_buf_puts(&out, "\n");
    } else if ((rc = qd_replog_open(&log, dir)) == QD_OK) {
        if (!strcmp(sub, "checkpoint"))
            rc = qd_replog_checkpoint(&out, log, key);
        else if (!strcmp(sub, "timestamp"))
            rc = qd_replog_timestamp(&out, log, key, o->now, o->ttl);
        else if ((rc = qd_note_verifier_key(&out, qd_replog_origin(log), key)) == QD_OK)
            rc = qd_buf_puts(&out, "\n");
    }
    if (rc < 0)
        ret = qd_fail(rc, sub);
    else if (!o->json)
        ret = put(&out);
    else if (!strcmp(sub, "allowed-signers"))
        ret = put_json(json_pack("{s:o}", "line", jtext(&out)));
    else if (!strcmp(sub, "vkey"))
        ret = put_json(json_pack("{s:s, s:o}", "origin", qd_replog_origin(log), "vkey", jtext(&out)));
    else {
        uint8_t root[QD_HASH_LEN];
        char h[65];
        uint64_t size = qd_replog_size(log);
        if ((rc = qd_merkle_root(qd_replog_merkle(log), size, root)) < 0)
            ret = qd_fail(rc, sub);
        else
            ret = put_json(json_pack("{s:s, s:I, s:s, s:s}", "origin", qd_replog_origin(log), "size",
                                     (json_int_t)size, "root", qd_hex(h, root, QD_HASH_LEN), "note",
                                     (const char *)(out.ptr ? out.ptr : "")));
    }
    qd_buf_dispose(&out);
    qd_replog_free(log);
    qd_key_free(key);
    return ret;
}

static int do_show(const char *dir, const opts *o)
{
    qd_replog *log = NULL;
    qd_buf out = QD_BUF_INIT(0);
    uint64_t i, lo = 0, hi;
    int rc, ret;
    if ((rc = qd_replog_open(&log, dir)) < 0)
        return qd_fail(rc, dir);
    hi = qd_replog_size(log);
    if (o->index >= 0) {
        lo = (uint64_t)o->index;
        hi = lo + 1;
    }
    if (o->json)
        rc = qd_buf_printf(&out, "{\"size\":%" PRIu64 ",\"entries\":[", qd_replog_size(log));
    for (i = lo; i < hi && rc == QD_OK; i++)
        if ((rc = o->json && i > lo ? qd_buf_puts(&out, ",") : QD_OK) == QD_OK &&
            (rc = qd_replog_entry_json(&out, log, i)) == QD_OK)
            rc = qd_buf_puts(&out, o->json ? "" : "\n");
    if (rc == QD_OK && o->json)
        rc = qd_buf_puts(&out, "]}\n");
    ret = rc < 0 ? qd_fail(rc, "log show") : put(&out);
    qd_buf_dispose(&out);
    qd_replog_free(log);
    return ret;
}

int cmd_log(int argc, char **argv)
{
    opts o;
    const char *sub, *dir;
    int p;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(log_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    sub = argv[1];
    if (!strcmp(sub, "fetch")) {
        /* libgit2's own smart-HTTP fetch (what a mirror runs), into a ref of a bare repository */
        char head[41], *av[4];
        int rc, ac = 0;
        bool json = false;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--json"))
                json = true;
            else if (ac < 4)
                av[ac++] = argv[i];
            else
                ac = 5;
        }
        if (ac < 2 || ac > 3) {
            fprintf(stderr, "usage: quant log fetch URL DIR [REF] [--json]\n");
            return EXIT_USAGE;
        }
        if ((rc = qd_replog_git_fetch(head, av[1], av[0], ac == 3 ? av[2] : "refs/heads/main")) < 0)
            return qd_fail(rc, "log fetch");
        if (json)
            return put_json(json_pack("{s:s, s:s, s:s}", "url", av[0], "ref", ac == 3 ? av[2] : "refs/heads/main",
                                      "head", head));
        printf("%s\n", head);
        return EXIT_OK_;
    }
    p = parse_opts(&o, argc - 1, argv + 1, true);
    if (p != 0) {
        fputs(log_usage, p > 0 ? stdout : stderr);
        return p > 0 ? EXIT_OK_ : EXIT_USAGE;
    }
    dir = optind < argc - 1 ? argv[1 + optind] : NULL;
    if (!strcmp(sub, "allowed-signers"))
        return with_key_log(sub, NULL, &o);
    if (!dir) {
        fprintf(stderr, "quant log %s: DIR is required\n%s", sub, log_usage);
        return EXIT_USAGE;
    }
    if (optind + 1 < argc - 1) {
        /* options may follow DIR: parse what is after it */
        int rest = argc - 1 - optind;
        char **av = argv + 1 + optind;
        if (parse_opts(&o, rest, av, false) != 0)
            return EXIT_USAGE;
    }
    if (!strcmp(sub, "init")) {
        qd_replog *log = NULL;
        int rc;
        if (need(o.origin, "--origin", "log init"))
            return EXIT_USAGE;
        if ((rc = qd_replog_init(&log, dir, o.origin)) < 0)
            return qd_fail(rc, "log init");
        qd_replog_free(log);
        if (o.json)
            return put_json(json_pack("{s:s, s:s}", "dir", dir, "origin", o.origin));
        printf("ok: %s (origin %s)\n", dir, o.origin);
        return EXIT_OK_;
    }
    if (!strcmp(sub, "publish") || !strcmp(sub, "tag") || !strcmp(sub, "key-add") || !strcmp(sub, "key-revoke"))
        return do_append(sub, dir, &o);
    if (!strcmp(sub, "checkpoint") || !strcmp(sub, "timestamp") || !strcmp(sub, "vkey"))
        return with_key_log(sub, dir, &o);
    if (!strcmp(sub, "prove") || !strcmp(sub, "consistency"))
        return do_proof(sub, dir, &o);
    if (!strcmp(sub, "verify"))
        return do_verify(dir, &o);
    if (!strcmp(sub, "check-timestamp"))
        return do_check_ts(dir, &o);
    if (!strcmp(sub, "show"))
        return do_show(dir, &o);
    fprintf(stderr, "quant log: unknown subcommand '%s'\n%s", sub, log_usage);
    return EXIT_USAGE;
}

typedef struct qctx {
    qd_buf *out;
    bool json;
    size_t n;
} qctx;

static int query_cb(const qd_audit_record *r, void *payload)
{
    qctx *q = payload;
    int rc;
    if (q->json) {
        if ((rc = qd_buf_puts(q->out, q->n ? ",\n  " : "\n  ")) < 0)
            return rc;
        rc = qd_audit_record_json(q->out, r);
    } else {
        rc = qd_buf_printf(q->out, "%-6" PRIu64 " %-71s %-24s %-10s %-8s %-3d %-14s %-8s %-5s\n", r->index,
                           r->manifest, r->name, r->method[0] ? r->method : "-", r->format[0] ? r->format : "-",
                           r->weight_bits, r->calibration[0] ? r->calibration : "-",
                           r->converter_version[0] ? r->converter_version : "-", r->verdict[0] ? r->verdict : "-");
    }
    q->n++;
    return rc < 0 ? rc : 0;
}

int cmd_audit(int argc, char **argv)
{
    opts o;
    const char *sub, *dir, *dg = NULL;
    qd_replog *log = NULL;
    qd_audit *a = NULL;
    qd_buf out = QD_BUF_INIT(0);
    int rc, ret = EXIT_OK_, p, pos = 0;
    char *posv[2] = {NULL, NULL};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(audit_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    sub = argv[1];
    /* positionals may sit anywhere: collect them, parse the rest as options */
    {
        char *av[256];
        int ac = 0;
        av[ac++] = argv[1];
        for (int i = 2; i < argc && ac < 255; i++) {
            if (argv[i][0] != '-' && (i == 2 || argv[i - 1][0] != '-' || !strncmp(argv[i - 1], "--down", 6) ||
                                      !strcmp(argv[i - 1], "--up") || !strcmp(argv[i - 1], "--json"))) {
                if (pos < 2)
                    posv[pos++] = argv[i];
            } else {
                av[ac++] = argv[i];
            }
        }
        p = parse_opts(&o, ac, av, true);
    }
    if (p != 0) {
        fputs(audit_usage, p > 0 ? stdout : stderr);
        return p > 0 ? EXIT_OK_ : EXIT_USAGE;
    }
    dir = posv[0];
    dg = posv[1];
    if (!dir) {
        fprintf(stderr, "quant audit %s: LOGDIR is required\n", sub);
        return EXIT_USAGE;
    }
    if ((rc = qd_replog_open(&log, dir)) < 0 || (rc = qd_audit_load(&a, log)) < 0) {
        ret = qd_fail(rc, dir);
        goto done;
    }
    if (!strcmp(sub, "query")) {
        qd_audit_query q;
        qctx c = {&out, o.json, 0};
        memset(&q, 0, sizeof(q));
        q.method = o.method;
        q.format = o.format;
        q.calibration = o.calibration;
        q.converter = o.converter;
        q.converter_version = o.converter_version;
        q.hardware = o.hardware;
        q.key = o.keyid;
        q.verdict = o.verdict;
        q.namespace_name = o.ns;
        q.bits = (int)o.bits;
        q.since = o.since;
        q.until = o.until;
        if (o.json)
            qd_buf_puts(&out, "[");
        if ((rc = qd_audit_query_run(a, &q, query_cb, &c)) < 0) {
            ret = qd_fail(rc, "audit query");
            goto done;
        }
        if (o.json)
            qd_buf_puts(&out, c.n ? "\n]\n" : "]\n");
        ret = put(&out);
    } else if (!strcmp(sub, "lineage")) {
        qd_digest d;
        qd_audit_format fmt = QD_AUDIT_TREE;
        if (!dg) {
            fprintf(stderr, "quant audit lineage: DIGEST is required\n");
            ret = EXIT_USAGE;
            goto done;
        }
        if ((rc = qd_digest_parse(&d, dg)) < 0) {
            ret = qd_fail(rc, "DIGEST");
            goto done;
        }
        if (o.json || (o.output && !strcmp(o.output, "json")))
            fmt = QD_AUDIT_JSON;
        else if (o.output && !strcmp(o.output, "dot"))
            fmt = QD_AUDIT_DOT;
        else if (o.output && strcmp(o.output, "tree")) {
            fprintf(stderr, "quant audit lineage: --output is json, dot or tree\n");
            ret = EXIT_USAGE;
            goto done;
        }
        if ((rc = qd_audit_lineage(&out, a, &d, o.down, (unsigned)(o.depth > 0 ? o.depth : 0), fmt)) < 0) {
            ret = qd_fail(rc, "audit lineage");
            goto done;
        }
        ret = put(&out);
    } else {
        fprintf(stderr, "quant audit: unknown subcommand '%s'\n%s", sub, audit_usage);
        ret = EXIT_USAGE;
    }
done:
    qd_buf_dispose(&out);
    qd_audit_free(a);
    qd_replog_free(log);
    return ret;
}
