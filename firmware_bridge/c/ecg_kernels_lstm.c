/* UNIDIRECTIONAL_SEQUENCE_LSTM in its int8 form (int8 input, weights and hidden state, int16 cell state
 * and gates), step by step as tflite-micro's lstm_eval: per gate an int8 x int8 -> int16 fully connected
 * on the input (with the gate bias) and on the hidden state, saturating int16 sum, int16 sigmoid/tanh
 * (table sigmoid(i/24) with linear interpolation), cell and hidden updates by requantised products.
 * The state starts from zero (hidden: its zero point) at every inference. */
#include "ecg_kernels.h"
#include "ecg_quant.h"
#include <string.h>

static int16_t sat16(int32_t v) { return (int16_t)ecg_clamp(v, INT16_MIN, INT16_MAX); }

static void gate_fc(const int8_t *x, int32_t n_batch, int32_t depth, const int8_t *w, const int32_t *bias,
                    int32_t x_offset, int32_t mult, int32_t shift, int32_t state, int16_t *out) {
    for (int32_t b = 0; b < n_batch; ++b)
        for (int32_t o = 0; o < state; ++o) {
            const int8_t *xr = x + (size_t)b * depth;
            const int8_t *wr = w + (size_t)o * depth;
            int32_t acc = 0;
            for (int32_t d = 0; d < depth; ++d) acc += (int32_t)wr[d] * ((int32_t)xr[d] + x_offset);
            if (bias) acc += bias[o];
            out[(size_t)b * state + o] = sat16(ecg_mbqm(acc, mult, shift));
        }
}

/* reference_integer_ops::Logistic (int16, input multiplier 3, no shift): Q3.12 in, Q0.15 out */
static int16_t sigmoid16(int16_t v, const uint16_t *t) {
    const int32_t x = (int32_t)v * 3;
    const uint32_t ax = (uint32_t)(x < 0 ? -x : x), uh = ax >> 9;
    uint32_t r;
    if (uh >= 255) {
        r = 0x7FFFu << 10;
    } else {
        const uint32_t ua = t[uh], ub = t[uh + 1];
        r = (ua << 9) + (ax & 0x1FFu) * (ub - ua);
    }
    r = x >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
    return (int16_t)(r >> 10);
}

/* reference_integer_ops::Tanh (int16): input rescaled by (mult, shift), Q0.15 out */
static int16_t tanh16(int16_t v, int32_t mult, int32_t shift, const uint16_t *t) {
    const int32_t round = shift > 0 ? 1 << (shift - 1) : 0;
    const int32_t x = ((int32_t)v * mult + round) >> shift;
    const uint32_t ax = (uint32_t)(x < 0 ? -x : x), uh = ax >> 8;
    int32_t r;
    if (uh >= 255) {
        r = 0xFFFF << 8;
    } else {
        const uint32_t ua = t[uh], ub = t[uh + 1];
        r = (int32_t)((ua << 8) + (ax & 0xFFu) * (ub - ua));
    }
    r = x >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
    return (int16_t)(r >> 8);
}

static void gate(const ecg_lstm_params *p, int32_t g, const int8_t *x, const int8_t *h, int32_t n_batch,
                 int16_t *out, int16_t *tmp, int32_t act_tanh) {
    const int32_t n = n_batch * p->state;
    gate_fc(x, n_batch, p->in_dim, p->w_x[g], p->bias[g], p->x_offset, p->x_mult[g], p->x_shift[g], p->state, out);
    gate_fc(h, n_batch, p->state, p->w_h[g], NULL, p->h_offset, p->h_mult[g], p->h_shift[g], p->state, tmp);
    for (int32_t i = 0; i < n; ++i) {
        const int16_t s = sat16((int32_t)out[i] + tmp[i]);
        out[i] = act_tanh ? tanh16(s, 3, 0, p->sigmoid) : sigmoid16(s, p->sigmoid);
    }
}

static void step(const ecg_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int32_t n_batch, int8_t *y) {
    const int32_t n = n_batch * p->state;
    int16_t *b0 = p->scratch, *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
    gate(p, 0, x, h, n_batch, b0, b3, 0);                 /* forget */
    gate(p, 1, x, h, n_batch, b1, b3, 0);                 /* input */
    gate(p, 2, x, h, n_batch, b2, b3, p->cell_tanh);      /* cell */
    for (int32_t i = 0; i < n; ++i) {
        const int16_t kept = sat16(ecg_mbqm((int32_t)b0[i] * c[i], p->fc_mult, p->fc_shift));
        const int16_t added = sat16(ecg_mbqm((int32_t)b1[i] * b2[i], p->ic_mult, p->ic_shift));
        int16_t v = sat16((int32_t)kept + added);
        if (p->clip > 0) v = (int16_t)ecg_clamp(v, -p->clip, p->clip);
        c[i] = v;
    }
    gate(p, 3, x, h, n_batch, b1, b3, 0);                 /* output */
    for (int32_t i = 0; i < n; ++i) {
        const int16_t t = tanh16(c[i], p->cell_tanh_mult, p->cell_tanh_shift, p->sigmoid);
        const int32_t v = ecg_mbqm((int32_t)t * b1[i], p->oh_mult, p->oh_shift) + p->oh_zp;
        h[i] = (int8_t)ecg_clamp(v, -128, 127);
    }
    memcpy(y, h, (size_t)n);
}

void ecg_lstm_ref(const ecg_lstm_params *p, const int8_t *in, int8_t *out) {
    const int32_t states = p->batch * p->state;
    memset(p->hidden, p->oh_zp, (size_t)states);
    memset(p->cell, 0, (size_t)states * sizeof(int16_t));
    if (p->time_major) {
        for (int32_t t = 0; t < p->time; ++t)
            step(p, in + (size_t)t * p->batch * p->in_dim, p->hidden, p->cell, p->batch,
                 out + (size_t)t * states);
    } else {
        for (int32_t b = 0; b < p->batch; ++b)
            for (int32_t t = 0; t < p->time; ++t)
                step(p, in + ((size_t)b * p->time + t) * p->in_dim, p->hidden + (size_t)b * p->state,
                     p->cell + (size_t)b * p->state, 1, out + ((size_t)b * p->time + t) * p->state);
    }
}
