/* progress.c - a one-line progress bar on stderr for large transfers, only when stderr is a terminal. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define PROGRESS_MIN_BYTES (64ull << 20)

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void progress_start(progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    p->start_ns = now_ns();
    p->last_draw_ns = 0;
    p->active = isatty(2) && (total == 0 || total >= PROGRESS_MIN_BYTES);
}

void progress_update(uint64_t done, uint64_t total, void *payload)
{
    progress *p = payload;
    uint64_t t = now_ns();
    double secs, rate;
    char bar[31];
    int fill;

    if (!p || !p->active || t - p->last_draw_ns < 100000000ull)
        return;
    p->last_draw_ns = t;
    if (total)
        p->total = total;
    secs = (double)(t - p->start_ns) / 1e9;
    rate = secs > 0 ? (double)done / secs / 1048576.0 : 0;
    if (p->total) {
        fill = (int)(30.0 * (double)done / (double)p->total);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MiB/s", p->label, bar, 100.0 * (double)done / (double)p->total,
                rate);
    } else {
        fprintf(stderr, "\r%s %10.1f MiB %8.1f MiB/s", p->label, (double)done / 1048576.0, rate);
    }
}

void progress_end(progress *p)
{
    if (p->active && p->last_draw_ns)
        fprintf(stderr, "\r\033[K");
    p->active = false;
}
