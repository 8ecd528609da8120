/* Codec harness: every valid frame read from stdin is re-encoded (same type, seq, payload) to stdout;
 * the C and Python codecs are checked against each other through it. */
#include "protocol.h"
#include <stdio.h>

int main(void) {
    static ecg_decoder d;
    static ecg_frame f;
    static uint8_t enc[ECG_MAX_ENCODED];
    ecg_decoder_init(&d);
    int c;
    while ((c = getchar()) != EOF) {
        if (ecg_decoder_feed(&d, (uint8_t)c, &f) == ECG_RX_FRAME) {
            size_t n = ecg_frame_encode(f.type, f.seq, f.payload, f.len, enc);
            fwrite(enc, 1, n, stdout);
        }
    }
    fprintf(stderr, "frames %u cobs %u crc %u length %u type %u version %u\n", d.frames, d.cobs_errors,
            d.crc_errors, d.length_errors, d.type_errors, d.version_errors);
    return 0;
}
