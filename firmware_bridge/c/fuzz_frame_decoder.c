/* libFuzzer target: the C frame parser alone (COBS, length, CRC, version, type), byte by byte as a UART delivers
 * them. Every frame it accepts must survive a round trip: encoded again and fed back, the same frame comes out
 * (a parser that accepts what the encoder would not write, or mangles what it accepts, aborts). */
#include "protocol.h"
#include <stdlib.h>
#include <string.h>

static void check_round_trip(const ecg_frame *f) {
    static uint8_t enc[ECG_MAX_ENCODED];
    static ecg_decoder d2;
    static ecg_frame g;
    size_t n = ecg_frame_encode(f->type, f->seq, f->payload, f->len, enc);
    if (n == 0) abort();
    ecg_decoder_init(&d2);
    int got = ECG_RX_NONE;
    for (size_t i = 0; i < n; ++i) got = ecg_decoder_feed(&d2, enc[i], &g);
    if (got != ECG_RX_FRAME || g.type != f->type || g.seq != f->seq || g.len != f->len ||
        memcmp(g.payload, f->payload, f->len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ecg_decoder d;
    static ecg_frame f;
    ecg_decoder_init(&d);
    for (size_t i = 0; i < size; ++i)
        if (ecg_decoder_feed(&d, data[i], &f) == ECG_RX_FRAME) check_round_trip(&f);
    return 0;
}
