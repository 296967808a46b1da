/*
 * gen_blob - write a seeded test blob: random bytes, or fp16 weights that look like a checkpoint's.
 *
 *   gen_blob --kind random|fp16 --size BYTES [--seed N] OUT
 *
 * fp16: N(0, 0.02)-like values (inverse-CDF table plus jitter, so a gigabyte takes about a second), with a few
 * outlier values, as the high and low bytes of real fp16 checkpoints are distributed.
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t s[4];

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(void)
{
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static uint16_t f32_to_f16(float f)
{
    uint32_t x, sign, e, m;
    int ne;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000;
    e = (x >> 23) & 0xff;
    m = x & 0x7fffff;
    ne = (int)e - 127 + 15;
    if (ne <= 0)
        return (uint16_t)sign;
    if (ne >= 31)
        return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | (uint32_t)ne << 10 | ((m + 0x1000) >> 13));
}

/* inverse normal CDF (Acklam's rational approximation is plenty for test data) */
static double inv_norm(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    double q, r;
    if (p < 0.02425) {
        q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - 0.02425) {
        q = sqrt(-2 * log(1 - p));
        return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    q = p - 0.5;
    r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

int main(int argc, char **argv)
{
    const char *kind = "random", *out = NULL;
    unsigned long long size = 0, seed = 1;
    static float table[65536];
    uint8_t *buf;
    const size_t bufsz = 8u << 20;
    int fd;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--kind") && i + 1 < argc)
            kind = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && !out)
            out = argv[i];
        else {
            fprintf(stderr, "usage: gen_blob --kind random|fp16 --size BYTES [--seed N] OUT\n");
            return 2;
        }
    }
    if (!out || (strcmp(kind, "random") && strcmp(kind, "fp16"))) {
        fprintf(stderr, "usage: gen_blob --kind random|fp16 --size BYTES [--seed N] OUT\n");
        return 2;
    }
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        s[i] = z ^ (z >> 31);
    }
    for (int i = 0; i < 65536; i++)
        table[i] = (float)(0.02 * inv_norm((i + 0.5) / 65536.0));
    fd = strcmp(out, "-") ? open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644) : 1;
    if (fd < 0) {
        perror(out);
        return 1;
    }
    buf = malloc(bufsz);
    while (size) {
        size_t n = size < bufsz ? (size_t)size : bufsz;
        if (!strcmp(kind, "random")) {
            for (size_t i = 0; i < n; i += 8) {
                uint64_t x = next();
                memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
            }
        } else {
            for (size_t i = 0; i + 1 < n; i += 8) {
                uint64_t x = next();
                for (int k = 0; k < 4 && i + 2 * (size_t)k + 1 < n; k++) {
                    uint16_t r = (uint16_t)(x >> (16 * k));
                    float v = table[r];
                    if ((r & 0x3ff) == 0x155 && (x & 0x8000000000000000ull)) /* rare outliers */
                        v *= 25;
                    uint16_t h = f32_to_f16(v);
                    memcpy(buf + i + 2 * (size_t)k, &h, 2);
                }
            }
            if (n & 1)
                buf[n - 1] = 0;
        }
        if (write(fd, buf, n) != (ssize_t)n) {
            perror("write");
            return 1;
        }
        size -= n;
    }
    free(buf);
    if (fd != 1)
        close(fd);
    return 0;
}
