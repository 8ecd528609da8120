/* Wire protocol v1 (docs/protocol.md): COBS framing, CRC-16/CCITT-FALSE, frame parse/build. */
#ifndef ECG_PROTOCOL_H
#define ECG_PROTOCOL_H
#include <stdint.h>
#include <stddef.h>

#define ECG_PROTO_VERSION 1
#define ECG_MAX_PAYLOAD 1024
#define ECG_FRAME_OVERHEAD 8
#define ECG_MAX_FRAME (ECG_FRAME_OVERHEAD + ECG_MAX_PAYLOAD)
#define ECG_MAX_ENCODED (1 + ECG_MAX_FRAME + (ECG_MAX_FRAME + 253) / 254 + 1)

enum {
    ECG_MSG_HELLO = 0x01, ECG_MSG_INFO = 0x02, ECG_MSG_SAMPLES = 0x03, ECG_MSG_START = 0x04,
    ECG_MSG_STOP = 0x05, ECG_MSG_LOAD_INPUT = 0x10, ECG_MSG_INFER = 0x11, ECG_MSG_RESULT = 0x12,
    ECG_MSG_ACK = 0x13, ECG_MSG_STATUS = 0x20, ECG_MSG_GET_STATUS = 0x21, ECG_MSG_WINDOW_INFER = 0x22,
    ECG_MSG_ERROR = 0x7F
};
enum {
    ECG_ERR_VERSION = 1, ECG_ERR_TYPE = 2, ECG_ERR_LENGTH = 3, ECG_ERR_CRC = 4, ECG_ERR_RANGE = 5,
    ECG_ERR_STATE = 6, ECG_ERR_MODEL = 7
};
/* RESULT / INFO counter_kind: what `counter` counts */
enum { ECG_COUNTER_NONE = 0, ECG_COUNTER_INSTRUCTIONS = 1, ECG_COUNTER_CYCLES = 2, ECG_COUNTER_MICROSECONDS = 3 };
/* decoder outcomes */
enum { ECG_RX_NONE = 0, ECG_RX_FRAME, ECG_RX_COBS_ERROR, ECG_RX_LENGTH_ERROR, ECG_RX_CRC_ERROR,
       ECG_RX_VERSION_ERROR, ECG_RX_TYPE_ERROR, ECG_RX_OVERFLOW };

typedef struct {
    uint8_t version, type;
    uint16_t seq, len;
    uint8_t payload[ECG_MAX_PAYLOAD];
} ecg_frame;

typedef struct {
    uint8_t buf[ECG_MAX_ENCODED];
    size_t n;
    int overflow;
    uint32_t frames, cobs_errors, crc_errors, length_errors, type_errors, version_errors;
    int seq_valid;          /* after an error: whether `err_seq` could be read */
    uint16_t err_seq;
} ecg_decoder;

uint16_t ecg_crc16(const uint8_t *data, size_t n);
size_t ecg_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);
/* returns decoded length, or (size_t)-1 on a malformed block */
size_t ecg_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
int ecg_known_type(uint8_t type);
void ecg_decoder_init(ecg_decoder *d);
/* feed one byte; returns ECG_RX_* (ECG_RX_FRAME: *f holds a valid frame) */
int ecg_decoder_feed(ecg_decoder *d, uint8_t byte, ecg_frame *f);
/* encode a frame (COBS + trailing 0) into out (>= ECG_MAX_ENCODED); returns bytes, 0 if len too big */
size_t ecg_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint8_t *out);
#endif
