/* libFuzzer target: arbitrary bytes into the device app's frame parser and message handlers. */
#include "app.h"
#include "ecg_hal.h"
#include "protocol.h"
#include <string.h>

void ecg_hal_init(void) {}
int ecg_hal_getc(void) { return -1; }
void ecg_hal_write(const uint8_t *d, size_t n) { (void)d; (void)n; }
uint64_t ecg_hal_counter(void) { return 0; }
uint64_t ecg_hal_time_us(void) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) { ecg_app_init(); init = 1; }
    /* first half as raw bytes; second half wrapped in valid frames so handlers see real payloads */
    size_t half = size / 2;
    for (size_t i = 0; i < half; ++i) ecg_app_rx(data[i]);
    ecg_app_rx(0);
    if (size > half + 1) {
        static uint8_t enc[ECG_MAX_ENCODED];
        size_t len = size - half - 1;
        if (len > ECG_MAX_PAYLOAD) len = ECG_MAX_PAYLOAD;
        size_t n = ecg_frame_encode(data[half], 7, data + half + 1, (uint16_t)len, enc);
        for (size_t i = 0; i < n; ++i) ecg_app_rx(enc[i]);
    }
    return 0;
}
