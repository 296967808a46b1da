/*
 * test_config.c - the daemon's config table: defaults, the file parser (comments, file:line errors), flags over
 * the file, types, ranges and size suffixes, and the dump. The table lives in daemon/config.c, which is part of
 * the quantd program rather than libqd, so it is compiled into this test directly.
 */
#include "testutil.h"

#include "../../daemon/config.c"

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = malloc(1024);
    FILE *f;
    snprintf(path, 1024, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config__defaults_come_from_the_table(void **state)
{
    qd_config c;
    (void)state;
    assert_int_equal(qd_config_init(&c), QD_OK);
    assert_string_equal(c.listen, "127.0.0.1:8420");
    assert_string_equal(c.store, "./var/quantd");
    assert_int_equal(c.workers, 2);
    assert_true(c.auth);
    assert_true(c.anonymous_pull);
    assert_int_equal(c.max_header_bytes, 16 * 1024);
    assert_int_equal(c.max_body_bytes, 256ll << 20);
    assert_string_equal(c.port_file, "");
    /* every row's default is valid for its own type and range */
    for (size_t i = 0; i < qd_cfg_table_len; i++) {
        assert_non_null(qd_cfg_table[i].help);
        assert_int_equal(qd_config_set(&c, qd_cfg_table[i].name, qd_cfg_table[i].def, "t"), QD_OK);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(qd_cfg_table[i].name, qd_cfg_table[j].name);
    }
    qd_config_free(&c);
}

static void test_config__types_ranges_and_sizes(void **state)
{
    qd_config c;
    (void)state;
    qd_config_init(&c);
    assert_int_equal(qd_config_set(&c, "workers", "8", "t"), QD_OK);
    assert_int_equal(c.workers, 8);
    assert_int_equal(qd_config_set(&c, "workers", "0", "t"), QD_EINVAL);
    assert_int_equal(qd_config_set(&c, "workers", "257", "t"), QD_EINVAL);
    assert_int_equal(qd_config_set(&c, "workers", "8x", "t"), QD_EINVAL);
    assert_int_equal(qd_config_set(&c, "workers", "", "t"), QD_EINVAL);
    assert_int_equal(c.workers, 8); /* a refused value changes nothing */
    assert_int_equal(qd_config_set(&c, "max-body-bytes", "1G", "t"), QD_OK);
    assert_int_equal(c.max_body_bytes, 1ll << 30);
    assert_int_equal(qd_config_set(&c, "max-body-bytes", "64KiB", "t"), QD_OK);
    assert_int_equal(c.max_body_bytes, 64 * 1024);
    assert_int_equal(qd_config_set(&c, "max-body-bytes", "3T", "t"), QD_EINVAL);
    assert_int_equal(qd_config_set(&c, "max-body-bytes", "99999999999G", "t"), QD_EINVAL);
    assert_int_equal(qd_config_set(&c, "auth", "off", "t"), QD_OK);
    assert_false(c.auth);
    assert_int_equal(qd_config_set(&c, "auth", "maybe", "t"), QD_EINVAL);
    assert_int_equal(qd_config_set(&c, "nope", "1", "--nope"), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "--nope: unknown option 'nope'"));
    qd_config_free(&c);
}

static void test_config__file_then_flags(void **state)
{
    char *dir = tu_sandbox(), *good, *bad;
    qd_config c;
    bool dump;
    (void)state;
    good = write_file(dir, "good.conf", "# quantd\n\n  workers 4   # four\nlisten 0.0.0.0:9000\nstore /srv/q\n");
    bad = write_file(dir, "bad.conf", "workers 4\n\nlisten\n");
    qd_config_init(&c);
    {
        char *argv[] = {"quantd", "--workers=6", "--config", good, "--anonymous-pull=false", "--dump-config", NULL};
        assert_int_equal(qd_config_from_args(&c, 6, argv, &dump), QD_OK);
    }
    assert_true(dump);
    assert_int_equal(c.workers, 6); /* the flag wins over the file, wherever --config appears */
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_string_equal(c.store, "/srv/q");
    assert_false(c.anonymous_pull);
    qd_config_free(&c);

    qd_config_init(&c);
    assert_int_equal(qd_config_load_file(&c, bad), QD_EINVAL);
    {
        char want[1100];
        snprintf(want, sizeof(want), "%s:3: 'listen' has no value", bad);
        assert_non_null(strstr(qd_error_last()->message, want));
    }
    {
        char *argv[] = {"quantd", "stray", NULL};
        assert_int_equal(qd_config_from_args(&c, 2, argv, &dump), QD_EINVAL);
    }
    {
        char *argv[] = {"quantd", "--workers", "3", "--auth", NULL};
        assert_int_equal(qd_config_from_args(&c, 4, argv, &dump), QD_OK);
        assert_int_equal(c.workers, 3);
        assert_true(c.auth);
    }
    assert_int_equal(qd_config_load_file(&c, "/nonexistent/quantd.conf"), QD_ENOTFOUND);
    qd_config_free(&c);
    free(good);
    free(bad);
    tu_rmtree(dir);
    free(dir);
}

static void test_config__listen_split(void **state)
{
    char host[64];
    int port;
    (void)state;
    assert_int_equal(qd_config_listen_split("127.0.0.1:8420", host, sizeof(host), &port), QD_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8420);
    assert_int_equal(qd_config_listen_split("[::1]:0", host, sizeof(host), &port), QD_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(qd_config_listen_split("localhost", host, sizeof(host), &port), QD_EINVAL);
    assert_int_equal(qd_config_listen_split("h:70000", host, sizeof(host), &port), QD_EINVAL);
    assert_int_equal(qd_config_listen_split(":80", host, sizeof(host), &port), QD_EINVAL);
}

static void test_config__dump_round_trips(void **state)
{
    char *dir = tu_sandbox(), path[1024];
    qd_config c, d;
    FILE *f;
    (void)state;
    qd_config_init(&c);
    qd_config_set(&c, "workers", "9", "t");
    qd_config_set(&c, "tls-cert", "/etc/q/cert.pem", "t");
    snprintf(path, sizeof(path), "%s/dump.conf", dir);
    f = fopen(path, "w");
    qd_config_dump(f, &c, false);
    fclose(f);
    /* the dump is itself a valid config file that gives the same values */
    qd_config_init(&d);
    assert_int_equal(qd_config_load_file(&d, path), QD_OK);
    assert_int_equal(d.workers, 9);
    assert_string_equal(d.tls_cert, "/etc/q/cert.pem");
    assert_string_equal(d.port_file, "");
    qd_config_free(&c);
    qd_config_free(&d);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config__defaults_come_from_the_table),
        cmocka_unit_test(test_config__types_ranges_and_sizes),
        cmocka_unit_test(test_config__file_then_flags),
        cmocka_unit_test(test_config__listen_split),
        cmocka_unit_test(test_config__dump_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
