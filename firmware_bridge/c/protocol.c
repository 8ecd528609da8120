#include "protocol.h"
#include <string.h>

uint16_t ecg_crc16(const uint8_t *data, size_t n) {
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; ++i) {
        crc ^= (uint16_t)data[i] << 8;
        for (int b = 0; b < 8; ++b) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

size_t ecg_cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
    size_t code_at = 0, o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; ++i) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

size_t ecg_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0) return (size_t)-1;
        for (uint8_t k = 1; k < code; ++k) {
            if (i >= n || in[i] == 0 || o >= cap) return (size_t)-1;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < n) {
            if (o >= cap) return (size_t)-1;
            out[o++] = 0;
        }
    }
    return o;
}

int ecg_known_type(uint8_t t) {
    switch (t) {
    case ECG_MSG_HELLO: case ECG_MSG_INFO: case ECG_MSG_SAMPLES: case ECG_MSG_START: case ECG_MSG_STOP:
    case ECG_MSG_LOAD_INPUT: case ECG_MSG_INFER: case ECG_MSG_RESULT: case ECG_MSG_ACK: case ECG_MSG_STATUS:
    case ECG_MSG_GET_STATUS: case ECG_MSG_WINDOW_INFER: case ECG_MSG_ERROR: return 1;
    default: return 0;
    }
}

void ecg_decoder_init(ecg_decoder *d) { memset(d, 0, sizeof *d); }

static int parse(ecg_decoder *d, ecg_frame *f) {
    static uint8_t raw[ECG_MAX_FRAME + 2];
    size_t n = ecg_cobs_decode(d->buf, d->n, raw, sizeof raw);
    d->seq_valid = 0;
    if (n == (size_t)-1) { d->cobs_errors++; return ECG_RX_COBS_ERROR; }
    if (n >= 4) { d->seq_valid = 1; d->err_seq = (uint16_t)(raw[2] | (raw[3] << 8)); }
    if (n < ECG_FRAME_OVERHEAD) { d->length_errors++; return ECG_RX_LENGTH_ERROR; }
    uint16_t len = (uint16_t)(raw[4] | (raw[5] << 8));
    if (len > ECG_MAX_PAYLOAD || n != (size_t)ECG_FRAME_OVERHEAD + len) { d->length_errors++; return ECG_RX_LENGTH_ERROR; }
    uint16_t crc = (uint16_t)(raw[n - 2] | (raw[n - 1] << 8));
    if (crc != ecg_crc16(raw, n - 2)) { d->crc_errors++; return ECG_RX_CRC_ERROR; }
    if (raw[0] != ECG_PROTO_VERSION) { d->version_errors++; return ECG_RX_VERSION_ERROR; }
    if (!ecg_known_type(raw[1])) { d->type_errors++; return ECG_RX_TYPE_ERROR; }
    f->version = raw[0];
    f->type = raw[1];
    f->seq = d->err_seq;
    f->len = len;
    memcpy(f->payload, raw + 6, len);
    d->frames++;
    return ECG_RX_FRAME;
}

int ecg_decoder_feed(ecg_decoder *d, uint8_t byte, ecg_frame *f) {
    if (byte != 0) {
        if (d->n < sizeof d->buf) d->buf[d->n++] = byte;
        else d->overflow = 1;
        return ECG_RX_NONE;
    }
    int r;
    if (d->n == 0) r = ECG_RX_NONE;           /* empty frame: delimiter run */
    else if (d->overflow) { d->length_errors++; d->seq_valid = 0; r = ECG_RX_OVERFLOW; }
    else r = parse(d, f);
    d->n = 0;
    d->overflow = 0;
    return r;
}

size_t ecg_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint8_t *out) {
    static uint8_t raw[ECG_MAX_FRAME];
    if (len > ECG_MAX_PAYLOAD) return 0;
    raw[0] = ECG_PROTO_VERSION;
    raw[1] = type;
    raw[2] = (uint8_t)seq; raw[3] = (uint8_t)(seq >> 8);
    raw[4] = (uint8_t)len; raw[5] = (uint8_t)(len >> 8);
    if (len) memcpy(raw + 6, payload, len);
    uint16_t crc = ecg_crc16(raw, 6u + len);
    raw[6 + len] = (uint8_t)crc; raw[7 + len] = (uint8_t)(crc >> 8);
    size_t n = ecg_cobs_encode(raw, 8u + len, out);
    out[n++] = 0;
    return n;
}
