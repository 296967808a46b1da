/*
 * driver.c - replay fuzz inputs without libFuzzer: `fuzz_<target> FILE|DIR...` feeds every file to
 * LLVMFuzzerTestOneInput once, so the corpora under tests/fuzz/corpus/<target>/ run as regression tests in every
 * build, gcc included. A crash or a sanitizer report fails the run; otherwise it prints how many inputs it replayed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0, n;

    if (!f) {
        perror(path);
        return -1;
    }
    do {
        if (len == cap) {
            uint8_t *p;
            cap = cap ? cap * 2 : 65536;
            if (!(p = realloc(buf, cap))) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = p;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static int run_path(const char *path, unsigned long *count)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        perror(path);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort), rc = 0;
        if (n < 0) {
            perror(path);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            char sub[4096];
            if (names[i]->d_name[0] != '.' && rc == 0) {
                snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
                rc = run_path(sub, count);
            }
            free(names[i]);
        }
        free(names);
        return rc;
    }
    if (run_file(path) < 0)
        return -1;
    (*count)++;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long count = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) < 0)
            return 1;
    printf("%s: replayed %lu input(s)\n", argv[0], count);
    return count ? 0 : 1;
}
