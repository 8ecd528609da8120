/* Device application: docs/protocol.md over a byte link; model = generated ecg_model_invoke. */
#include "app.h"
#include "ecg_hal.h"
#include "ecg_input.h"
#include "model.h"
#include "protocol.h"
#include "sha256.h"
#include <math.h>
#include <string.h>

#ifdef ECG_FLOAT_IO
#error "the protocol firmware runs int8 in/out models (LOAD_INPUT/RESULT carry int8); use edge-engine verify for float-edge models"
#endif

#ifndef ECG_FW_NAME
#define ECG_FW_NAME "ecgedge-fw 0.1.0 host"
#endif
#ifndef ECG_COUNTER_KIND
#define ECG_COUNTER_KIND 0
#endif
#ifdef ECG_BOARD_INFO
/* real boards (firmware_bridge/boards/board.c): the name carries the clock reached, and the counter is
 * cycles only where the DWT cycle counter counts */
const char *ecg_board_name(void);
uint8_t ecg_board_counter_kind(void);
#undef ECG_COUNTER_KIND
#define ECG_COUNTER_KIND ecg_board_counter_kind()
#endif
#ifndef ECG_UV_PER_LSB
#define ECG_UV_PER_LSB 1.0f
#endif
#ifdef ECG_OPTIMIZED
#define ECG_FLAG_OPT 4
#else
#define ECG_FLAG_OPT 0
#endif
#ifdef ECG_FAULT_INPUT_SCALE
#define ECG_EFFECTIVE_INPUT_SCALE (ECG_INPUT_SCALE * 1.125)   /* fault: wrong scale, reported and used */
#else
#define ECG_EFFECTIVE_INPUT_SCALE (ECG_INPUT_SCALE)
#endif
#ifdef ECG_RING_LEN
#define RING_LEN ((uint32_t)ECG_RING_LEN)   /* the machine's ring_samples (cores.toml) */
#else
#define RING_LEN 16384u           /* samples kept for WINDOW_INFER (> 3 windows of 5000) */
#endif
#define STREAM_BLOCK 25u          /* samples per SAMPLES frame when streaming */

static ecg_decoder dec;
static ecg_frame rx_frame;
static uint8_t tx_buf[ECG_MAX_ENCODED];
static uint8_t pl[ECG_MAX_PAYLOAD];
static uint16_t tx_seq;
static int8_t input_buf[ECG_INPUT_SIZE];
static int8_t model_in[ECG_INPUT_SIZE];
static int input_loaded, model_ok, streaming;
static int16_t ring[RING_LEN];
static uint32_t ring_first, ring_next, ring_count;   /* ring holds [ring_first, ring_next) */
static uint32_t overruns, dropped, total;
static uint32_t stream_index;
static uint64_t stream_t0_us;
#ifdef ECG_FAULT_DROP_SAMPLES
static uint32_t fault_counter;
#endif

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_f32(uint8_t *p, float f) { uint32_t v; memcpy(&v, &f, 4); put_u32(p, v); }
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void send(uint8_t type, const uint8_t *payload, uint16_t len) {
    size_t n = ecg_frame_encode(type, tx_seq++, payload, len, tx_buf);
    ecg_hal_write(tx_buf, n);
}

static void send_error(uint8_t code, uint16_t related_seq, const char *msg) {
    uint8_t p[4 + 255];
    size_t m = strlen(msg);
    if (m > 255) m = 255;
    p[0] = code; put_u16(p + 1, related_seq); p[3] = (uint8_t)m;
    memcpy(p + 4, msg, m);
    send(ECG_MSG_ERROR, p, (uint16_t)(4 + m));
}

static void send_ack(const ecg_frame *f, uint8_t status) {
    uint8_t p[4];
    p[0] = f->type; put_u16(p + 1, f->seq); p[3] = status;
    send(ECG_MSG_ACK, p, 4);
}

static void send_info(void) {
#ifdef ECG_BOARD_INFO
    const char *name = ecg_board_name();
    size_t i = 0, nl = strlen(name);
#else
    static const char name[] = ECG_FW_NAME;
    size_t i = 0, nl = sizeof name - 1;
#endif
    pl[i++] = ECG_PROTO_VERSION;
    pl[i++] = (uint8_t)((ECG_MODEL_DEMO ? 1 : 0) | (model_ok ? 2 : 0) | ECG_FLAG_OPT);
    put_u16(pl + i, ECG_SAMPLE_RATE_HZ); i += 2;
    put_f32(pl + i, ECG_UV_PER_LSB); i += 4;
    put_u32(pl + i, ECG_WINDOW_SAMPLES); i += 4;
    put_f32(pl + i, (float)ECG_EFFECTIVE_INPUT_SCALE); i += 4;
    put_u32(pl + i, (uint32_t)(int32_t)ECG_INPUT_ZERO_POINT); i += 4;
    pl[i++] = ECG_OUTPUT_SIZE;
    pl[i++] = ECG_COUNTER_KIND;
    put_u32(pl + i, ecg_arena_bytes); i += 4;
    memcpy(pl + i, ecg_model_sha256, 32); i += 32;
    pl[i++] = (uint8_t)nl;
    memcpy(pl + i, name, nl); i += nl;
    send(ECG_MSG_INFO, pl, (uint16_t)i);
}

static void send_status(void) {
    pl[0] = 0; pl[1] = 100;
    put_u32(pl + 2, overruns); put_u32(pl + 6, dropped); put_u32(pl + 10, total);
    send(ECG_MSG_STATUS, pl, 14);
}

/* the last inference's outputs (a global: benches read it from the emulator's memory when a model's
 * outputs are more than a RESULT frame carries) */
int8_t ecg_outputs[ECG_OUTPUT_SIZE];
#define RESULT_MAX_OUTPUTS 255u   /* RESULT: u8 output count, 14 more payload bytes */

static void run_and_report(const int8_t *in, uint32_t count, uint32_t warmup) {
    int8_t *out = ecg_outputs;
    uint64_t counter = 0, us = 0;
    if (count == 0) count = 1;
#ifdef ECG_FUZZING
    if (count > 2) count = 2;          /* keep fuzz iterations fast */
    if (warmup > 1) warmup = 1;
#endif
#if defined(ECG_FAULT_UNALIGNED) && defined(__arm__)
    {   /* fault: one word load from an odd address (cores that trap unaligned accesses stop here) */
        static volatile uint8_t bytes[8];
        uint32_t v;
        __asm__ volatile("ldr %0, [%1]" : "=l"(v) : "l"(bytes + 1) : "memory");
        (void)v;
    }
#endif
    for (uint32_t i = 0; i < warmup + count; ++i) {
        memcpy(model_in, in, ECG_INPUT_SIZE);
        uint64_t c0 = ecg_hal_counter(), t0 = ecg_hal_time_us();
        ecg_model_invoke(model_in, out);
        counter = ecg_hal_counter() - c0;
        us = ecg_hal_time_us() - t0;
    }
#if defined(ECG_FAULT_SWAP_OUTPUTS) && ECG_OUTPUT_SIZE > 1
    { int8_t t = out[0]; out[0] = out[1]; out[1] = t; }
#endif
#if ECG_OUTPUT_SIZE > RESULT_MAX_OUTPUTS
    (void)counter; (void)us;
    send_error(ECG_ERR_RANGE, 0, "model outputs do not fit a RESULT frame (more than 255)");
#else
    size_t i = 0;
    pl[i++] = ECG_OUTPUT_SIZE;
    memcpy(pl + i, out, ECG_OUTPUT_SIZE); i += ECG_OUTPUT_SIZE;
    pl[i++] = ECG_COUNTER_KIND;
    put_u64(pl + i, counter); i += 8;
    put_u32(pl + i, (uint32_t)us); i += 4;
    send(ECG_MSG_RESULT, pl, (uint16_t)i);
#endif
}

static void ring_push(uint32_t index, int16_t v) {
    if (index != ring_next || ring_count == 0) {
        if (ring_count && index > ring_next) dropped += index - ring_next;
        if (ring_count == 0 || index != ring_next) { ring_first = index; ring_count = 0; }
    }
    ring[index % RING_LEN] = v;
    ring_next = index + 1;
    if (ring_count < RING_LEN) ring_count++;
    else ring_first++;
    total++;
}

/* device-side test signal: a periodic ECG-like waveform in ADC counts (deterministic) */
static int16_t test_signal(uint32_t i) {
    const uint32_t period = ECG_SAMPLE_RATE_HZ * 5u / 6u;   /* 72 bpm */
    double t = (double)(i % period) / (double)ECG_SAMPLE_RATE_HZ;
    double qrs = (t - 0.2) / 0.012, tw = (t - 0.45) / 0.04, pw = (t - 0.08) / 0.025;
    double uv = 1000.0 * exp(-qrs * qrs) + 250.0 * exp(-tw * tw) + 100.0 * exp(-pw * pw);
    return (int16_t)lrint(uv / (double)ECG_UV_PER_LSB);
}

static void handle_samples(const ecg_frame *f) {
    if (f->len < 14) { send_error(ECG_ERR_LENGTH, f->seq, "SAMPLES payload shorter than 14 bytes"); return; }
    uint32_t first = get_u32(f->payload);
    uint16_t n = get_u16(f->payload + 12);
    if (f->len != 14u + 2u * n) { send_error(ECG_ERR_LENGTH, f->seq, "SAMPLES length != 14 + 2n"); return; }
    uint32_t idx = first;
    for (uint16_t k = 0; k < n; ++k) {
#ifdef ECG_FAULT_DROP_SAMPLES
        if (++fault_counter % 997u == 0) continue;   /* fault: silently lose a sample, later ones shift */
#endif
        ring_push(idx++, (int16_t)get_u16(f->payload + 14 + 2 * k));
    }
    send_ack(f, 0);
}

static void handle_window_infer(const ecg_frame *f) {
    if (f->len != 4) { send_error(ECG_ERR_LENGTH, f->seq, "WINDOW_INFER payload must be 4 bytes"); return; }
    if (!model_ok) { send_error(ECG_ERR_MODEL, f->seq, "model constants failed their SHA-256 check"); return; }
    uint32_t first = get_u32(f->payload);
    if (ring_count == 0 || first < ring_first || (uint64_t)first + ECG_WINDOW_SAMPLES > ring_next ||
        ECG_WINDOW_SAMPLES != ECG_INPUT_SIZE) {
        send_error(ECG_ERR_RANGE, f->seq, "window not in the device sample buffer");
        return;
    }
    /* q = clip(round_half_even(counts * uv_per_lsb / scale_uv / input_scale) + zp), in double (ecg_input.h) */
    const double uv_per_lsb = (double)ECG_UV_PER_LSB;
    for (uint32_t k = 0; k < ECG_INPUT_SIZE; ++k)
        input_buf[k] = ecg_input_q8((double)ring[(first + k) % RING_LEN] * uv_per_lsb, ECG_SCALE_UV,
                                    (double)ECG_EFFECTIVE_INPUT_SCALE, ECG_INPUT_ZERO_POINT);
    input_loaded = 1;
    run_and_report(input_buf, 1, 0);
}

static void handle(const ecg_frame *f) {
    switch (f->type) {
    case ECG_MSG_HELLO:
        send_info();
        if (!model_ok) send_error(ECG_ERR_MODEL, f->seq, "model constants failed their SHA-256 check");
        break;
    case ECG_MSG_START:
        streaming = 1; stream_index = 0; stream_t0_us = ecg_hal_time_us(); ring_count = 0;
        send_ack(f, 0);
        break;
    case ECG_MSG_STOP:
        streaming = 0;
        send_ack(f, 0);
        break;
    case ECG_MSG_GET_STATUS:
        send_status();
        break;
    case ECG_MSG_SAMPLES:
        handle_samples(f);
        break;
    case ECG_MSG_LOAD_INPUT: {
        if (f->len < 4) { send_error(ECG_ERR_LENGTH, f->seq, "LOAD_INPUT payload shorter than 4 bytes"); return; }
        uint32_t off = get_u32(f->payload), n = f->len - 4u;
        if (off > ECG_INPUT_SIZE || n > ECG_INPUT_SIZE - off) {
            send_error(ECG_ERR_RANGE, f->seq, "LOAD_INPUT outside the input tensor");
            return;
        }
        memcpy(input_buf + off, f->payload + 4, n);
        input_loaded = 1;
        send_ack(f, 0);
        break;
    }
    case ECG_MSG_INFER:
        if (f->len != 4) { send_error(ECG_ERR_LENGTH, f->seq, "INFER payload must be 4 bytes"); return; }
        if (!model_ok) { send_error(ECG_ERR_MODEL, f->seq, "model constants failed their SHA-256 check"); return; }
        if (!input_loaded) { send_error(ECG_ERR_STATE, f->seq, "INFER before any LOAD_INPUT"); return; }
        run_and_report(input_buf, get_u16(f->payload), get_u16(f->payload + 2));
        break;
    case ECG_MSG_WINDOW_INFER:
        handle_window_infer(f);
        break;
    default:
        send_error(ECG_ERR_TYPE, f->seq, "not a host-to-device message");
    }
}

void ecg_app_rx(uint8_t byte) {
    int r = ecg_decoder_feed(&dec, byte, &rx_frame);
    switch (r) {
    case ECG_RX_FRAME: handle(&rx_frame); break;
    case ECG_RX_CRC_ERROR: if (dec.seq_valid) send_error(ECG_ERR_CRC, dec.err_seq, "CRC mismatch"); break;
    case ECG_RX_LENGTH_ERROR: if (dec.seq_valid) send_error(ECG_ERR_LENGTH, dec.err_seq, "bad frame length"); break;
    case ECG_RX_VERSION_ERROR: send_error(ECG_ERR_VERSION, dec.err_seq, "unsupported protocol version"); break;
    case ECG_RX_TYPE_ERROR: send_error(ECG_ERR_TYPE, dec.err_seq, "unknown message type"); break;
    default: break;   /* COBS errors and overflows: counted, frame dropped, resync at next 0x00 */
    }
}

void ecg_app_poll(void) {
    if (!streaming) return;
    uint64_t due = (uint64_t)(stream_index + STREAM_BLOCK) * 1000000u / ECG_SAMPLE_RATE_HZ;
    if (ecg_hal_time_us() - stream_t0_us < due) return;
    uint8_t p[14 + 2 * STREAM_BLOCK];
    put_u32(p, stream_index);
    put_u64(p + 4, stream_t0_us + (uint64_t)stream_index * 1000000u / ECG_SAMPLE_RATE_HZ);
    put_u16(p + 12, STREAM_BLOCK);
    for (uint32_t k = 0; k < STREAM_BLOCK; ++k) {
        int16_t v = test_signal(stream_index + k);
        put_u16(p + 14 + 2 * k, (uint16_t)v);
        ring_push(stream_index + k, v);
    }
#ifdef ECG_FAULT_DROP_SAMPLES
    if ((stream_index / STREAM_BLOCK) % 40u == 39u) { stream_index += STREAM_BLOCK; return; }  /* silent gap */
#endif
    send(ECG_MSG_SAMPLES, p, sizeof p);
    stream_index += STREAM_BLOCK;
}

int ecg_app_model_ok(void) { return model_ok; }

void ecg_app_init(void) {
    uint8_t digest[32];
    ecg_decoder_init(&dec);
    ecg_sha256(ecg_const_blob, ecg_const_blob_len, digest);
    model_ok = memcmp(digest, ecg_const_sha256, 32) == 0;
#ifdef ECG_FAULT_MODEL_HASH
    model_ok = 0;
#endif
}
