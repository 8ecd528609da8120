/* Host build of the device app: protocol on stdin/stdout (tests, sanitizers). */
#define _POSIX_C_SOURCE 200809L
#include "app.h"
#include "ecg_hal.h"
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
void ecg_hal_init(void) {}
int ecg_hal_getc(void) {
    struct pollfd p = {0, POLLIN, 0};
    if (poll(&p, 1, 1) <= 0) return -1;
    unsigned char c;
    ssize_t r = read(0, &c, 1);
    if (r == 0) return -2;
    return r == 1 ? c : -1;
}
void ecg_hal_write(const uint8_t *d, size_t n) {
    while (n) {
        ssize_t w = write(1, d, n);
        if (w <= 0) return;
        d += w; n -= (size_t)w;
    }
}
uint64_t ecg_hal_counter(void) { return now_ns() / 1000u; }
uint64_t ecg_hal_time_us(void) { return now_ns() / 1000u; }

int main(void) {
    ecg_hal_init();
    ecg_app_init();
    for (;;) {
        int c = ecg_hal_getc();
        if (c == -2) return 0;   /* stdin closed */
        if (c >= 0) ecg_app_rx((uint8_t)c);
        else ecg_app_poll();
    }
}
