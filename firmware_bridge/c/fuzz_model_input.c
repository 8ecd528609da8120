/* libFuzzer target: the model-input path. Arbitrary bytes become LOAD_INPUT frames (any offset, any
 * length) followed by INFER with fuzzed count/warm-up, through the real frame parser and handlers. */
#include "app.h"
#include "ecg_hal.h"
#include "protocol.h"
#include <string.h>

void ecg_hal_init(void) {}
int ecg_hal_getc(void) { return -1; }
void ecg_hal_write(const uint8_t *d, size_t n) { (void)d; (void)n; }
uint64_t ecg_hal_counter(void) { return 0; }
uint64_t ecg_hal_time_us(void) { return 0; }

static void send_frame(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len) {
    static uint8_t enc[ECG_MAX_ENCODED];
    size_t n = ecg_frame_encode(type, seq, payload, len, enc);
    for (size_t i = 0; i < n; ++i) ecg_app_rx(enc[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    static uint8_t pl[ECG_MAX_PAYLOAD];
    if (!init) { ecg_app_init(); init = 1; }
    if (size < 4) return 0;
    /* header: offset u16 (little endian), INFER count byte, warm-up byte; then the input bytes */
    uint32_t off = (uint32_t)data[0] | ((uint32_t)data[1] << 8);
    uint16_t count = (uint16_t)(data[2] & 3u), warmup = (uint16_t)(data[3] & 1u);
    const uint8_t *in = data + 4;
    size_t n = size - 4;
    uint16_t seq = 1;
    do {  /* long inputs are loaded in consecutive chunks, as the host client does */
        size_t chunk = n > ECG_MAX_PAYLOAD - 4 ? ECG_MAX_PAYLOAD - 4 : n;
        pl[0] = (uint8_t)off; pl[1] = (uint8_t)(off >> 8); pl[2] = (uint8_t)(off >> 16); pl[3] = (uint8_t)(off >> 24);
        memcpy(pl + 4, in, chunk);
        send_frame(ECG_MSG_LOAD_INPUT, seq++, pl, (uint16_t)(chunk + 4));
        in += chunk; n -= chunk; off += (uint32_t)chunk;
    } while (n > 0);
    uint8_t infer[4] = {(uint8_t)count, 0, (uint8_t)warmup, 0};
    send_frame(ECG_MSG_INFER, seq, infer, 4);
    return 0;
}
