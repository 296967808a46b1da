/*
 * interrupt.c - Ctrl-C and SIGTERM during a long transfer: the first one is noted, and the transfer loop stops at
 * its next round (within 200 ms), keeps what it received and exits 130; a second one ends the process at once.
 */
#include <signal.h>
#include <string.h>

#include "client.h"

static volatile sig_atomic_t g_signal;
static struct sigaction g_old_int, g_old_term;
static int g_caught;

static void on_signal(int sig) { g_signal = sig; }

void interrupt_catch(void)
{
    struct sigaction sa;
    if (g_caught)
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESETHAND: a second signal takes the default action (ends the process); SA_RESTART: the other threads'
     * reads and writes go on (poll() returns early anyway, which is what wakes the transfer loop) */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    g_signal = 0;
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
    g_caught = 1;
}

void interrupt_release(void)
{
    if (!g_caught)
        return;
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
    g_caught = 0;
}

int interrupted(void) { return g_signal; }
