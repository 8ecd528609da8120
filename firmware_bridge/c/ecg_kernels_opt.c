/* Optimised INT8 kernels shared by every kernel path (elementwise, pooling, padding, mean, tables,
 * depthwise and fully connected on the c and dsp paths): DSP instructions where the core has them, C
 * emulations with the same arithmetic elsewhere. Integer results equal the reference path. */
#include "ecg_opt.h"

#if defined(ECG_OPTIMIZED)
/* Elementwise ops: same integer formulas as the reference kernels, without 4-D index arithmetic. */

/* y = requant(b + x * w) over a strided stream, for full-range outputs (no fused activation) with a
 * right-shift-only multiplier: the common case of per-channel affines. Small function, so every
 * value stays in a register. */
__attribute__((noinline)) static void affine_stream(const int8_t *src, int8_t *dst, int32_t n, int32_t in_stride,
                                                    int32_t out_stride, int32_t w, int32_t b, int32_t mult,
                                                    int32_t right, int32_t oo) {
    const int32_t rbias = rq_fast_make(mult, -right, oo).rbias, b2 = 2 * b, w2 = 2 * w;
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP)
    /* per element: LDRSB, MLA, SMMLAR, ADD (sign), ASR, SSAT, STRB, index step; two per loop pass */
    if (n >= 2 && in_stride == out_stride) {
        const int32_t end = (n >> 1) * 2 * in_stride;
        int32_t k = 0, x, y;
        __asm__ volatile(
            "1:\n\t"
            "ldrsb %[x], [%[s], %[k]]\n\t"
            "mla %[x], %[w2], %[x], %[b2]\n\t"
            "smmlar %[y], %[x], %[m], %[rb]\n\t"
            "add %[y], %[y], %[x], asr #31\n\t"
            "asr %[y], %[y], %[r]\n\t"
            "ssat %[y], #8, %[y]\n\t"
            "strb %[y], [%[d], %[k]]\n\t"
            "add %[k], %[k], %[st]\n\t"
            "ldrsb %[x], [%[s], %[k]]\n\t"
            "mla %[x], %[w2], %[x], %[b2]\n\t"
            "smmlar %[y], %[x], %[m], %[rb]\n\t"
            "add %[y], %[y], %[x], asr #31\n\t"
            "asr %[y], %[y], %[r]\n\t"
            "ssat %[y], #8, %[y]\n\t"
            "strb %[y], [%[d], %[k]]\n\t"
            "add %[k], %[k], %[st]\n\t"
            "cmp %[k], %[e]\n\t"
            "bne 1b\n\t"
            : [k] "+r"(k), [x] "=&r"(x), [y] "=&r"(y)
            : [s] "r"(src), [d] "r"(dst), [st] "r"(in_stride), [e] "r"(end), [w2] "r"(w2), [b2] "r"(b2),
              [m] "r"(mult), [rb] "r"(rbias), [r] "r"(right)
            : "cc", "memory");
        i = (n >> 1) << 1;
        src += end;
        dst += end;
    }
#endif
    for (; i + 2 <= n; i += 2, src += 2 * in_stride, dst += 2 * out_stride) {
        const int32_t x0 = src[0], x1 = src[in_stride];
        const int32_t r0 = rq_fast(b2 + x0 * w2, mult, right, rbias), r1 = rq_fast(b2 + x1 * w2, mult, right, rbias);
        dst[0] = (int8_t)SAT8(r0);
        dst[out_stride] = (int8_t)SAT8(r1);
    }
    for (; i < n; ++i, src += in_stride, dst += out_stride) *dst = (int8_t)SAT8(rq_fast(b2 + *src * w2, mult, right, rbias));
}

/* full-range output and a multiplier the fast requantiser takes; |b| + 255 * |w| well below 2^29 */
static int affine_ok(ecg_rq rq, int32_t lo, int32_t hi) {
    return rq.left == 0 && rq.right >= 1 && rq.right <= 22 && lo == -128 && hi == 127;
}
static int affine_small(int32_t b, int32_t w) {
    return b > -(1 << 28) && b < (1 << 28) && w > -(1 << 16) && w < (1 << 16);
}

void ecg_lut_opt(const int8_t *lut, int32_t size, const int8_t *in, int8_t *out) {
    const uint8_t *t = (const uint8_t *)lut + 128;   /* index by the signed value */
    int32_t i = 0;
#if defined(ECG_KERNELS_MVE)
    /* 16 lookups per gather: byte u of x is the index of x + 128 once its top bit is flipped */
    const uint8x16_t flip = vdupq_n_u8(0x80);
    for (; i + 16 <= size; i += 16) {
        const uint8x16_t idx = veorq_u8(vldrbq_u8((const uint8_t *)in + i), flip);
        vstrbq_u8((uint8_t *)out + i, vldrbq_gather_offset_u8((const uint8_t *)lut, idx));
    }
    if (i < size) {
        const mve_pred16_t pr = vctp8q((uint32_t)(size - i));
        const uint8x16_t idx = veorq_u8(vldrbq_z_u8((const uint8_t *)in + i, pr), flip);
        vstrbq_p_u8((uint8_t *)out + i, vldrbq_gather_offset_z_u8((const uint8_t *)lut, idx, pr), pr);
    }
    return;
#endif
    for (; i + 4 <= size; i += 4) {
        const int8_t a = in[i], b = in[i + 1], c = in[i + 2], d = in[i + 3];
        out[i] = (int8_t)t[a]; out[i + 1] = (int8_t)t[b]; out[i + 2] = (int8_t)t[c]; out[i + 3] = (int8_t)t[d];
    }
    for (; i < size; ++i) out[i] = (int8_t)t[in[i]];
}

/* parameters copied to locals: stores through int8_t pointers would otherwise force reloads */
#define ELEMENTWISE_LOCALS                                                                     \
    const int32_t off1 = p->in1_offset, off2 = p->in2_offset, oo = p->out_offset;              \
    const int32_t lo = p->act_min, hi = p->act_max
#define MUL_Q(x, y) ((int8_t)ecg_clamp(ecg_rq_apply(((x) + off1) * ((y) + off2), rq) + oo, lo, hi))
#define ADD_Q(x, y) ((int8_t)ecg_clamp(ecg_rq_apply(t1[x] + t2[y], rq) + oo, lo, hi))

/* Broadcast shapes the models use: flat, or one operand repeated along all but the last dim. */
static int contiguous(const int32_t *strides, const int32_t *dims) {
    int32_t acc = 1;
    for (int d = 3; d >= 0; --d) {
        if (dims[d] != 1 && strides[d] != acc) return 0;
        acc *= dims[d];
    }
    return 1;
}
static int channel_vector(const int32_t *strides, const int32_t *dims) {
    return strides[3] == 1 && (dims[0] == 1 || strides[0] == 0) && (dims[1] == 1 || strides[1] == 0) &&
           (dims[2] == 1 || strides[2] == 0);
}
static int per_channel_b(const ecg_binary_params *p) {
    return contiguous(p->in1_strides, p->out_dims) && channel_vector(p->in2_strides, p->out_dims);
}
static int per_channel_a(const ecg_binary_params *p) {
    return contiguous(p->in2_strides, p->out_dims) && channel_vector(p->in1_strides, p->out_dims);
}

void ecg_mul_opt(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    ELEMENTWISE_LOCALS;
    const ecg_rq rq = ecg_rq_make(p->mult, p->shift);
    const int32_t size = p->size;
    if (p->flat) {
        for (int32_t i = 0; i < size; ++i) out[i] = MUL_Q(a[i], b[i]);
    } else if (per_channel_b(p)) {
        const int32_t c = p->out_dims[3], rows = size / c;
#if defined(ECG_KERNELS_MVE)
        if ((c & 3) == 0 && c <= 256) {
            /* four channels per vector: (a + off1) * m = a * m + off1 * m, m = b + off2 per channel */
            int32_t mv[256], om[256];
            for (int32_t k = 0; k < c; ++k) {
                mv[k] = b[k] + off2;
                om[k] = off1 * mv[k];
            }
            const int32_t shift = p->shift;
            const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
            for (int32_t k = 0; k < c; k += 4) {
                const int32x4_t m4 = vldrwq_s32(mv + k), o4 = vldrwq_s32(om + k);
                const int8_t *src = a + k;
                int8_t *dst = out + k;
                for (int32_t r = 0; r < rows; ++r, src += c, dst += c) {
                    int32x4_t v = vaddq_s32(vmulq_s32(vldrbq_s32(src), m4), o4);
                    v = vaddq_n_s32(rq4(v, rq.mult, shift), oo);
                    vstrbq_s32(dst, vminq_s32(vmaxq_s32(v, vlo), vhi));
                }
            }
            return;
        }
#endif
        if (affine_ok(rq, lo, hi) && affine_small(off1 * 255, 255)) {
            for (int32_t k = 0; k < c; ++k) {   /* (a + off1) * m = a * m + off1 * m, m per channel */
                const int32_t m = b[k] + off2;
                affine_stream(a + k, out + k, rows, c, c, m, off1 * m, rq.mult, rq.right, oo);
            }
            return;
        }
        for (int32_t r = 0; r < rows; ++r, out += c, a += c)
            for (int32_t k = 0; k < c; ++k) out[k] = MUL_Q(a[k], b[k]);
    } else if (per_channel_a(p)) {
        const int32_t c = p->out_dims[3], rows = size / c;
        for (int32_t r = 0; r < rows; ++r, out += c, b += c)
            for (int32_t k = 0; k < c; ++k) out[k] = MUL_Q(a[k], b[k]);
    } else {
        ecg_mul_ref(p, a, b, out);
    }
}


__attribute__((noinline)) static void add_stream(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                                 const int32_t *t1, const int32_t *t2, int32_t mult,
                                                 int32_t right, int32_t oo) {
    /* table entries are (x - zp) << 20 rescaled by at most 1/2: |t1 + t2| < 2^28, doubling is safe */
    const int32_t rbias = rq_fast_make(mult, -right, oo).rbias;
    int32_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const int32_t s0 = t1[a[i]] + t2[b[i]], s1 = t1[a[i + 1]] + t2[b[i + 1]];
        const int32_t r0 = rq_fast(s0 + s0, mult, right, rbias), r1 = rq_fast(s1 + s1, mult, right, rbias);
        out[i] = (int8_t)SAT8(r0);
        out[i + 1] = (int8_t)SAT8(r1);
    }
    for (; i < n; ++i) {
        const int32_t s0 = t1[a[i]] + t2[b[i]];
        out[i] = (int8_t)SAT8(rq_fast(s0 + s0, mult, right, rbias));
    }
}

void ecg_add_opt(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    ELEMENTWISE_LOCALS;
    (void)off1; (void)off2;
    const ecg_rq rq = ecg_rq_make(p->out_mult, p->out_shift);
    const int32_t *t1 = p->lut1 + 128, *t2 = p->lut2 + 128;
    const int32_t size = p->size;
    if (p->flat && p->pair) {
        const uint8_t *ua = (const uint8_t *)a, *ub = (const uint8_t *)b;
        const int8_t *pair = p->pair;
        int32_t i = 0;
#if defined(ECG_KERNELS_MVE)
        /* 8 results per gather: index (b << 8) | a in 16-bit lanes (VSLI) */
        for (; i + 8 <= size; i += 8) {
            const uint16x8_t idx = vsliq_n_u16(vldrbq_u16(ua + i), vldrbq_u16(ub + i), 8);
            vstrbq_u16((uint8_t *)out + i, vldrbq_gather_offset_u16((const uint8_t *)pair, idx));
        }
        if (i < size) {
            const mve_pred16_t pr = vctp16q((uint32_t)(size - i));
            const uint16x8_t idx = vsliq_n_u16(vldrbq_z_u16(ua + i, pr), vldrbq_z_u16(ub + i, pr), 8);
            vstrbq_p_u16((uint8_t *)out + i, vldrbq_gather_offset_z_u16((const uint8_t *)pair, idx, pr), pr);
        }
        return;
#endif
        for (; i + 2 <= size; i += 2) {
            const int8_t y0 = pair[ua[i] | (ub[i] << 8)], y1 = pair[ua[i + 1] | (ub[i + 1] << 8)];
            out[i] = y0;
            out[i + 1] = y1;
        }
        if (i < size) out[i] = pair[ua[i] | (ub[i] << 8)];
    } else if (p->flat && affine_ok(rq, lo, hi)) {
        add_stream(a, b, out, size, t1, t2, rq.mult, rq.right, oo);
    } else if (p->flat) {
        for (int32_t i = 0; i < size; ++i) out[i] = ADD_Q(a[i], b[i]);
    } else if (per_channel_b(p)) {
        const int32_t c = p->out_dims[3], rows = size / c;
        for (int32_t r = 0; r < rows; ++r, out += c, a += c)
            for (int32_t k = 0; k < c; ++k) out[k] = ADD_Q(a[k], b[k]);
    } else {
        ecg_add_ref(p, a, b, out);
    }
}

/* word-wise copy and fill (newlib-nano's memcpy/memset go byte by byte) */
static void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    int32_t i = 0;
#if defined(ECG_KERNELS_MVE)
    for (; i + 16 <= n; i += 16) vstrbq_s8(dst + i, vldrbq_s8(src + i));
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        vstrbq_p_s8(dst + i, vldrbq_z_s8(src + i, pr), pr);
    }
    return;
#endif
    for (; i + 8 <= n; i += 8) {
        const uint32_t a = load32(src + i), b = load32(src + i + 4);
        memcpy(dst + i, &a, 4);
        memcpy(dst + i + 4, &b, 4);
    }
    for (; i < n; ++i) dst[i] = src[i];
}
static void fill_bytes(int8_t *dst, int8_t value, int32_t n) {
    const uint32_t v = (uint32_t)(uint8_t)value * 0x01010101u;
    int32_t i = 0;
#if defined(ECG_KERNELS_MVE)
    const int8x16_t f = vdupq_n_s8(value);
    for (; i + 16 <= n; i += 16) vstrbq_s8(dst + i, f);
    if (i < n) vstrbq_p_s8(dst + i, f, vctp8q((uint32_t)(n - i)));
    return;
#endif
    for (; i + 4 <= n; i += 4) memcpy(dst + i, &v, 4);
    for (; i < n; ++i) dst[i] = value;
}

void ecg_pad_opt(const ecg_pad_params *p, const int8_t *in, int8_t *out) {
    const int32_t oc = p->out_dims[3], ic = p->in_dims[3], before = p->pad_before[3];
    const int32_t after = oc - before - ic;
    const int8_t pv = p->pad_value;
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0)
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1) {
            const int32_t i0 = d0 - p->pad_before[0], i1 = d1 - p->pad_before[1];
            const int32_t w = p->out_dims[2];
            if (i0 < 0 || i0 >= p->in_dims[0] || i1 < 0 || i1 >= p->in_dims[1]) {
                fill_bytes(out, pv, w * oc);
                out += (size_t)w * oc;
                continue;
            }
            const int32_t lead = p->pad_before[2], n_in = p->in_dims[2], trail = w - lead - n_in;
            const int8_t *src = in + ((size_t)i0 * p->in_dims[1] + i1) * n_in * ic;
            fill_bytes(out, pv, lead * oc);
            out += (size_t)lead * oc;
            if (before == 0 && after == 0) {   /* no channel padding: the row is one contiguous copy */
                copy_bytes(out, src, n_in * ic);
                out += (size_t)n_in * ic;
            } else {
                for (int32_t x = 0; x < n_in; ++x, src += ic, out += oc) {
                    fill_bytes(out, pv, before);
                    copy_bytes(out + before, src, ic);
                    fill_bytes(out + before + ic, pv, after);
                }
            }
            fill_bytes(out, pv, trail * oc);
            out += (size_t)trail * oc;
        }
}

/* bytewise signed max of four int8 lanes: SSUB8 sets GE where a >= b, SEL takes those lanes of a */
static inline uint32_t max4_s8(uint32_t a, uint32_t b) {
#if defined(__ARM_FEATURE_DSP)
    (void)__ssub8(a, b);
    return __sel(a, b);
#else
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        const int8_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << i;
    }
    return r;
#endif
}

void ecg_maxpool_opt(const ecg_pool_params *p, const int8_t *in, int8_t *out) {
    const int32_t c = p->channels, lo = p->act_min, hi = p->act_max;
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox, out += c) {
            const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
            const int32_t ya = y0 < 0 ? 0 : y0, yb = y0 + p->f_h > p->in_h ? p->in_h : y0 + p->f_h;
            const int32_t xa = x0 < 0 ? 0 : x0, xb = x0 + p->f_w > p->in_w ? p->in_w : x0 + p->f_w;
            if (ya + 1 == yb && xa + 2 == xb) {   /* the 1x2 window of the shortcut pools */
                const int8_t *s0 = in + ((size_t)ya * p->in_w + xa) * c, *s1 = s0 + c;
                int32_t k = 0;
#if defined(ECG_KERNELS_MVE)
                const int8x16_t vlo = vdupq_n_s8((int8_t)lo), vhi = vdupq_n_s8((int8_t)hi);
                for (; k + 16 <= c; k += 16)
                    vstrbq_s8(out + k, vminq_s8(vmaxq_s8(vmaxq_s8(vldrbq_s8(s0 + k), vldrbq_s8(s1 + k)), vlo), vhi));
#endif
                if (lo == -128 && hi == 127)
                    for (; k + 4 <= c; k += 4) {
                        const uint32_t m4 = max4_s8(load32(s0 + k), load32(s1 + k));
                        memcpy(out + k, &m4, 4);
                    }
                for (; k < c; ++k) {
                    const int32_t m = s0[k] > s1[k] ? s0[k] : s1[k];
                    out[k] = (int8_t)ecg_clamp(m, lo, hi);
                }
                continue;
            }
            for (int32_t k = 0; k < c; ++k) {
                int32_t m = -128;
                for (int32_t y = ya; y < yb; ++y)
                    for (int32_t x = xa; x < xb; ++x) {
                        const int32_t v = in[((size_t)y * p->in_w + x) * c + k];
                        if (v > m) m = v;
                    }
                out[k] = (int8_t)ecg_clamp(m, lo, hi);
            }
        }
}
#endif

#if defined(ECG_OPTIMIZED)


/* Depthwise conv (c and dsp paths): channel by channel. Input channels are copied into padded planes
 * with the input offset added (padding 0, so every output is a plain dot product over the taps, edges
 * included): int16 on the dsp path (two taps per SMLAD), int32 on the c path (LDM loads four); four
 * channels at a time from one word load per pixel when the input channels are a multiple of 4. The
 * taps go into registers; common shapes are unrolled at compile time, 3x3 stride 1 computes two
 * outputs per pass in assembly. The 1x1 convs the converter emits for per-channel affines stream. */
#if defined(ECG_KERNELS_DSP)
typedef int16_t dw_t;
#else
typedef int32_t dw_t;
#endif

static void dw_plane_fill(const ecg_conv_params *p, const int8_t *in, int32_t ic, dw_t *plane, int32_t rows,
                          int32_t cols) {
    const int32_t pw = p->plane_w, in_c = p->in_c, off = p->in_offset;
    for (int32_t r = 0; r < rows; ++r) {
        dw_t *dst = plane + (size_t)r * pw;
        const int32_t iy = r - p->pad_h;
        if (iy < 0 || iy >= p->in_h) {
            for (int32_t x = 0; x < cols; ++x) dst[x] = 0;
            continue;
        }
        const int32_t x0 = p->pad_w, x1 = p->pad_w + p->in_w < cols ? p->pad_w + p->in_w : cols;
        int32_t x = 0;
        for (; x < x0 && x < cols; ++x) dst[x] = 0;
        const int8_t *src = in + ((size_t)iy * p->in_w + (x - p->pad_w)) * in_c + ic;
        for (; x + 2 <= x1; x += 2, src += 2 * in_c) {
            const int32_t a = src[0], b = src[in_c];
            dst[x] = (dw_t)(a + off);
            dst[x + 1] = (dw_t)(b + off);
        }
        for (; x < x1; ++x, src += in_c) dst[x] = (dw_t)(*src + off);
        for (; x < cols; ++x) dst[x] = 0;
    }
}

#if defined(ECG_KERNELS_DSP) && defined(__ARM_FEATURE_DSP)
static inline uint32_t PKHBT16(uint32_t a, uint32_t b) {   /* (a.bottom, b.bottom) */
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t PKHTB16(uint32_t a, uint32_t b) {   /* (a.top, b.top) */
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t SXTAB16_R8(uint32_t acc, uint32_t x) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}
#endif

/* Four channels ic..ic+3 into four planes (plane k at planes + k * plane_stride): one word load per pixel
 * feeds all four; the padding is 0 as in dw_plane_fill. */
static void dw_plane_fill4(const ecg_conv_params *p, const int8_t *in, int32_t ic, dw_t *planes,
                           size_t plane_stride, int32_t rows, int32_t cols) {
    const int32_t pw = p->plane_w, in_c = p->in_c, off = p->in_offset;
    for (int32_t r = 0; r < rows; ++r) {
        dw_t *d0 = planes + (size_t)r * pw, *d1 = d0 + plane_stride, *d2 = d1 + plane_stride, *d3 = d2 + plane_stride;
        const int32_t iy = r - p->pad_h;
        const int inside = iy >= 0 && iy < p->in_h;
        const int32_t x0 = p->pad_w < cols ? p->pad_w : cols;
        const int32_t x1 = !inside ? x0 : (p->pad_w + p->in_w < cols ? p->pad_w + p->in_w : cols);
        int32_t x = 0;
        for (; x < (inside ? x0 : cols); ++x) d0[x] = d1[x] = d2[x] = d3[x] = 0;
        if (!inside) continue;
        const int8_t *src = in + (size_t)iy * p->in_w * in_c + ic;
#if defined(ECG_KERNELS_DSP) && defined(__ARM_FEATURE_DSP)
        /* two pixels per pass from an even plane index: one word store per channel (PKHBT/PKHTB) */
        const uint32_t off2 = ((uint32_t)(uint16_t)off) * 0x10001u;
        if (x < x1 && (x & 1)) {
            const uint32_t v = load32(src), e = SXTAB16(off2, v), o = SXTAB16_R8(off2, v);
            d0[x] = (int16_t)e; d2[x] = (int16_t)(e >> 16); d1[x] = (int16_t)o; d3[x] = (int16_t)(o >> 16);
            ++x;
            src += in_c;
        }
        for (; x + 2 <= x1; x += 2, src += 2 * in_c) {
            const uint32_t v = load32(src), u = load32(src + in_c);
            const uint32_t ev = SXTAB16(off2, v), ov = SXTAB16_R8(off2, v);   /* (c0,c2), (c1,c3) */
            const uint32_t eu = SXTAB16(off2, u), ou = SXTAB16_R8(off2, u);
            const uint32_t p0 = PKHBT16(ev, eu), p2 = PKHTB16(ev, eu), p1 = PKHBT16(ov, ou), p3 = PKHTB16(ov, ou);
            memcpy(d0 + x, &p0, 4); memcpy(d1 + x, &p1, 4); memcpy(d2 + x, &p2, 4); memcpy(d3 + x, &p3, 4);
        }
#endif
        for (; x < x1; ++x, src += in_c) {
            const uint32_t v = load32(src);
            d0[x] = (dw_t)((int8_t)v + off); d1[x] = (dw_t)((int8_t)(v >> 8) + off);
            d2[x] = (dw_t)((int8_t)(v >> 16) + off); d3[x] = (dw_t)((int8_t)(v >> 24) + off);
        }
        for (; x < cols; ++x) d0[x] = d1[x] = d2[x] = d3[x] = 0;
    }
}

typedef struct {
    int32_t mult, shift, oo, lo, hi, fast, right, rbias;
} dw_rq;

static inline int8_t dw_store(int32_t acc, const dw_rq *q) {
    int32_t v;
    if (q->fast) v = rq_fast(acc + acc, q->mult, q->right, q->rbias);
    else v = ecg_rq_apply(acc, ecg_rq_make(q->mult, q->shift)) + q->oo;
    return (int8_t)ecg_clamp(v, q->lo, q->hi);
}

static inline __attribute__((always_inline)) int32_t dw_out(int32_t acc, const dw_rq *q, int fast) {
    return fast ? SAT8(rq_fast(acc + acc, q->mult, q->right, q->rbias)) : dw_store(acc, q);
}

/* One output channel over its plane, taps in registers. KH, KW2: compile-time kernel rows and row length
 * (even, with a zero tap when the kernel's is odd). FAST: the fast requantiser with a full-range output
 * (SMMLAR, ADD, ASR, SSAT per output); otherwise the generic one. */
static inline __attribute__((always_inline)) void dw_channel(
        const ecg_conv_params *p, const dw_t *plane, const int16_t *wt, int32_t bias, const dw_rq *q,
        int8_t *out, const int KH, const int KW2, const int FAST) {
#if defined(ECG_KERNELS_DSP)
    uint32_t w[KH * KW2 / 2];
#pragma GCC unroll 32
    for (int k = 0; k < KH * KW2 / 2; ++k) w[k] = load32(wt + 2 * k);
#else
    int32_t w[KH * KW2];
#pragma GCC unroll 32
    for (int k = 0; k < KH * KW2; ++k) w[k] = wt[k];
#endif
    const int32_t pw = p->plane_w, sw = p->stride_w, out_c = p->out_c, ow = p->out_w;
    const size_t rstep = (size_t)p->dil_h * pw, ystep = (size_t)p->stride_h * pw;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const dw_t *x = plane + oy * ystep;
        int8_t *o = out + (size_t)oy * ow * out_c;
        for (int32_t ox = 0; ox < ow; ++ox, o += out_c, x += sw) {
            int32_t acc = bias;
#pragma GCC unroll 16
            for (int ky = 0; ky < KH; ++ky) {
                const dw_t *xr = x + ky * rstep;
#if defined(ECG_KERNELS_DSP)
#pragma GCC unroll 16
                for (int k = 0; k < KW2 / 2; ++k) acc = SMLAD(load32(xr + 2 * k), w[ky * KW2 / 2 + k], acc);
#else
#pragma GCC unroll 16
                for (int k = 0; k < KW2; ++k) acc += xr[k] * w[ky * KW2 + k];
#endif
            }
            *o = (int8_t)dw_out(acc, q, FAST);
        }
    }
}

#define DW_SHAPE(KH, KW2)                                                                                          \
    __attribute__((noinline)) static void dw_channel_##KH##x##KW2(const ecg_conv_params *p, const dw_t *plane,     \
                                                                 const int16_t *wt, int32_t bias, const dw_rq *q, \
                                                                 int8_t *out) {                                  \
        if (q->fast && q->lo == -128 && q->hi == 127) dw_channel(p, plane, wt, bias, q, out, KH, KW2, 1);        \
        else dw_channel(p, plane, wt, bias, q, out, KH, KW2, 0);                                                 \
    }
DW_SHAPE(1, 16)
DW_SHAPE(3, 4)
DW_SHAPE(1, 4)
DW_SHAPE(1, 6)
DW_SHAPE(5, 6)

/* 3x3, stride 1 along x: two adjacent outputs per pass share each row's four plane values x0..x3.
 * DSP: with the row's words lo = (x0,x1), hi = (x2,x3) and the tap words wA = (w0,w1), wB = (w1,w2),
 *   out0 += SMLAD(lo, wA) + SMLABT(hi, wB)  [x0 w0 + x1 w1, x2 w2]
 *   out1 += SMLAD(hi, wB) + SMLATB(lo, wA)  [x2 w1 + x3 w2, x1 w0]
 * four multiply instructions per row for six MACs. C (ARMv7-M): one LDM of the four int32 plane values,
 * one of the row's three taps, six MLA. */
static inline __attribute__((always_inline)) void dw3x3_pair(const dw_t *x, int32_t rs_bytes, const int32_t *w,
                                                             int32_t bias, int32_t *a0, int32_t *a1) {
    int32_t r0 = bias, r1 = bias;
#if defined(ECG_KERNELS_DSP) && defined(__ARM_FEATURE_DSP)
    uint32_t lo, hi, wa, wb;
    const dw_t *t = x;
#define DW3_ROW(WOFF)                                                       \
        "ldr %[lo], [%[t]]\n\t"                                             \
        "ldr %[hi], [%[t], #4]\n\t"                                         \
        "ldrd %[wa], %[wb], [%[w], #" WOFF "]\n\t"                          \
        "smlad %[a0], %[lo], %[wa], %[a0]\n\t"                              \
        "smlabt %[a0], %[hi], %[wb], %[a0]\n\t"                             \
        "smlad %[a1], %[hi], %[wb], %[a1]\n\t"                              \
        "smlatb %[a1], %[lo], %[wa], %[a1]\n\t"
    __asm__("" DW3_ROW("0") "add %[t], %[t], %[rs]\n\t" DW3_ROW("8") "add %[t], %[t], %[rs]\n\t" DW3_ROW("16")
            : [a0] "+&r"(r0), [a1] "+&r"(r1), [lo] "=&r"(lo), [hi] "=&r"(hi), [wa] "=&r"(wa), [wb] "=&r"(wb),
              [t] "+&r"(t)
            : [w] "r"(w), [rs] "r"(rs_bytes)
            : "memory");
#undef DW3_ROW
#elif defined(ECG_KERNELS_DSP)
    for (int ky = 0; ky < 3; ++ky, x = (const dw_t *)((const char *)x + rs_bytes)) {
        const uint32_t lo = load32(x), hi = load32(x + 2), wa = (uint32_t)w[2 * ky], wb = (uint32_t)w[2 * ky + 1];
        r0 = SMLAD(lo, wa, r0);
        r0 = SMLABB(hi, wb >> 16, r0);
        r1 = SMLAD(hi, wb, r1);
        r1 = SMLATB(lo, wa, r1);
    }
#elif defined(ECG_KERNELS_C) && __ARM_ARCH >= 7 && defined(__thumb2__)
    /* LDM fills registers in number order: the plane values and taps in fixed, ascending registers */
    register int32_t x0 __asm__("r2"), x1 __asm__("r3"), x2 __asm__("r4"), x3 __asm__("r5");
    register int32_t w0 __asm__("r8"), w1 __asm__("r9"), w2 __asm__("r10");
    const dw_t *t = x;
    const int32_t *wp = w;
#define DW3_ROW                                                                          \
        "ldm %[t], {r2, r3, r4, r5}\n\t"                                                 \
        "ldm %[wp]!, {r8, r9, r10}\n\t"                                                  \
        "mla %[a0], r2, r8, %[a0]\n\t" "mla %[a1], r3, r8, %[a1]\n\t"                    \
        "mla %[a0], r3, r9, %[a0]\n\t" "mla %[a1], r4, r9, %[a1]\n\t"                    \
        "mla %[a0], r4, r10, %[a0]\n\t" "mla %[a1], r5, r10, %[a1]\n\t"
    __asm__(DW3_ROW "add %[t], %[t], %[rs]\n\t" DW3_ROW "add %[t], %[t], %[rs]\n\t" DW3_ROW
            : [a0] "+&r"(r0), [a1] "+&r"(r1), "=&r"(x0), "=&r"(x1), "=&r"(x2), "=&r"(x3), "=&r"(w0), "=&r"(w1),
              "=&r"(w2), [t] "+&r"(t), [wp] "+&r"(wp)
            : [rs] "r"(rs_bytes)
            : "memory");
#undef DW3_ROW
#else
    for (int ky = 0; ky < 3; ++ky, x = (const dw_t *)((const char *)x + rs_bytes)) {
        const int32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
        const int32_t w0 = w[3 * ky], w1 = w[3 * ky + 1], w2 = w[3 * ky + 2];
        r0 += x0 * w0 + x1 * w1 + x2 * w2;
        r1 += x1 * w0 + x2 * w1 + x3 * w2;
    }
#endif
    *a0 = r0;
    *a1 = r1;
}

static inline __attribute__((always_inline)) void dw_3x3_pairs(const ecg_conv_params *p, const dw_t *plane,
                                                               const int16_t *wt, int32_t bias, const dw_rq *q,
                                                               int8_t *out, const int fast) {
    const int32_t pw = p->plane_w, out_c = p->out_c, ow = p->out_w;
    const int32_t rs_bytes = (int32_t)sizeof(dw_t) * p->dil_h * pw;
    const size_t ystep = (size_t)p->stride_h * pw;
    int32_t w[9];
#if defined(ECG_KERNELS_DSP)
    for (int ky = 0; ky < 3; ++ky) {   /* wA = (w0, w1), wB = (w1, w2) per row */
        const int16_t *r = wt + 4 * ky;
        w[2 * ky] = (int32_t)((uint32_t)(uint16_t)r[0] | (uint32_t)(uint16_t)r[1] << 16);
        w[2 * ky + 1] = (int32_t)((uint32_t)(uint16_t)r[1] | (uint32_t)(uint16_t)r[2] << 16);
    }
#else
    for (int ky = 0; ky < 3; ++ky)
        for (int k = 0; k < 3; ++k) w[3 * ky + k] = wt[4 * ky + k];
#endif
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const dw_t *x = plane + oy * ystep;
        int8_t *o = out + (size_t)oy * ow * out_c;
        int32_t ox = 0;
        if (fast) {
            const int32_t mult = q->mult, right = q->right, rbias = q->rbias;
            for (; ox + 2 <= ow; ox += 2, x += 2, o += 2 * out_c) {
                int32_t a0, a1;
                dw3x3_pair(x, rs_bytes, w, bias, &a0, &a1);
                o[0] = (int8_t)SAT8(rq_fast(a0 + a0, mult, right, rbias));
                o[out_c] = (int8_t)SAT8(rq_fast(a1 + a1, mult, right, rbias));
            }
        }
        for (; ox + 2 <= ow; ox += 2, x += 2, o += 2 * out_c) {
            int32_t a0, a1;
            dw3x3_pair(x, rs_bytes, w, bias, &a0, &a1);
            o[0] = (int8_t)dw_out(a0, q, fast);
            o[out_c] = (int8_t)dw_out(a1, q, fast);
        }
        if (ox < ow) {
            int32_t a0 = bias;
            for (int ky = 0; ky < 3; ++ky)
                for (int k = 0; k < 3; ++k) a0 += x[ky * (rs_bytes / (int32_t)sizeof(dw_t)) + k] * wt[ky * 4 + k];
            o[0] = (int8_t)dw_out(a0, q, fast);
        }
    }
}
__attribute__((noinline)) static void dw_channel_3x3s1(const ecg_conv_params *p, const dw_t *plane, const int16_t *wt,
                                                       int32_t bias, const dw_rq *q, int8_t *out) {
    if (q->fast && q->lo == -128 && q->hi == 127) dw_3x3_pairs(p, plane, wt, bias, q, out, 1);
    else dw_3x3_pairs(p, plane, wt, bias, q, out, 0);
}

/* any other shape: taps from memory */
__attribute__((noinline)) static void dw_channel_any(const ecg_conv_params *p, const dw_t *plane, const int16_t *wt,
                                                     int32_t bias, const dw_rq *q, int8_t *out) {
    const int32_t kh = p->k_h, kw2 = (p->k_w + 1) & ~1, pw = p->plane_w;
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const dw_t *x = plane + (size_t)oy * p->stride_h * pw + ox * p->stride_w;
            int32_t acc = bias;
            for (int32_t ky = 0; ky < kh; ++ky) {
                const dw_t *xr = x + (size_t)ky * p->dil_h * pw;
                const int16_t *wr = wt + ky * kw2;
                for (int32_t k = 0; k < kw2; ++k) acc += xr[k] * wr[k];
            }
            out[((size_t)oy * p->out_w + ox) * p->out_c] = dw_store(acc, q);
        }
}

/* dilated taps along a row: the plain loop over the taps */
__attribute__((noinline)) static void dw_channel_dilated(const ecg_conv_params *p, const dw_t *plane,
                                                         const int16_t *wt, int32_t bias, const dw_rq *q, int8_t *out) {
    const int32_t kw2 = (p->k_w + 1) & ~1, pw = p->plane_w;
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            int32_t acc = bias;
            for (int32_t ky = 0; ky < p->k_h; ++ky)
                for (int32_t kx = 0; kx < p->k_w; ++kx)
                    acc += plane[(size_t)(oy * p->stride_h + ky * p->dil_h) * pw + ox * p->stride_w + kx * p->dil_w] *
                           wt[ky * kw2 + kx];
            out[((size_t)oy * p->out_w + ox) * p->out_c] = dw_store(acc, q);
        }
}

#define DW_MAX_TAPS 256
void ecg_depthwise_plane(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t in_c = p->in_c, out_c = p->out_c, dm = p->depth_multiplier;
    const int32_t in_off = p->in_offset, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t kh = p->k_h, kw = p->k_w, kw2 = (kw + 1) & ~1;
    if (kh == 1 && kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0) {
        for (int32_t oc = 0; oc < out_c; ++oc) {
            const ecg_rq rq = ecg_rq_make(p->mult[oc], p->shift[oc]);
            const int32_t b = p->bias ? p->bias[oc] : 0, wv = p->filter[oc], n = p->out_h * p->out_w;
            const int8_t *src = in + oc / dm;
            int8_t *dst = out + oc;
            if (affine_ok(rq, lo, hi) && affine_small(b + in_off * wv, wv)) {
                affine_stream(src, dst, n, in_c, out_c, wv, b + in_off * wv, rq.mult, rq.right, oo);
                continue;
            }
            for (int32_t i = 0; i < n; ++i, src += in_c, dst += out_c)
                *dst = (int8_t)ecg_clamp(ecg_rq_apply(b + (*src + in_off) * wv, rq) + oo, lo, hi);
        }
        return;
    }
    if (!p->col_buf || kh * kw2 > DW_MAX_TAPS) {
        ecg_depthwise_ref(p, in, out);
        return;
    }
    dw_t *plane = (dw_t *)p->col_buf;
    const int32_t rows = (p->out_h - 1) * p->stride_h + (kh - 1) * p->dil_h + 1;
    const int32_t cols = (p->out_w - 1) * p->stride_w + (kw - 1) * p->dil_w + 2;   /* + the zero tap */
    int16_t wt[DW_MAX_TAPS];
    /* four planes at a time when the scratch has room for them (kernel_params.py) */
    const size_t plane_elems = (size_t)p->plane_h * p->plane_w;
    const int32_t group = (in_c & 3) == 0 && p->depthwise_planes >= 4 ? 4 : 1;
    for (int32_t ic = 0; ic < in_c; ++ic) {
        if (group == 4 && (ic & 3) == 0) dw_plane_fill4(p, in, ic, (dw_t *)p->col_buf, plane_elems, rows, cols);
        if (group == 4) plane = (dw_t *)p->col_buf + (size_t)(ic & 3) * plane_elems;
        else dw_plane_fill(p, in, ic, plane, rows, cols);
        for (int32_t m = 0; m < dm; ++m) {
            const int32_t oc = ic * dm + m;
            for (int32_t ky = 0; ky < kh; ++ky) {
                for (int32_t kx = 0; kx < kw; ++kx) wt[ky * kw2 + kx] = p->filter[((size_t)ky * kw + kx) * out_c + oc];
                if (kw2 > kw) wt[ky * kw2 + kw] = 0;
            }
            const int32_t bias = p->bias ? p->bias[oc] : 0;
            dw_rq q = {p->mult[oc], p->shift[oc], oo, lo, hi, 0, 0, 0};
            /* the fast requantiser needs |acc| < 2^30: |bias| + taps * 255 * 128 */
            if (rq_fast_ok(q.shift, oo) && (bias < 0 ? -(int64_t)bias : bias) + (int64_t)kh * kw * 255 * 128 < (1 << 29)) {
                const ecg_rqf f = rq_fast_make(q.mult, q.shift, oo);
                q.fast = 1; q.right = f.right; q.rbias = f.rbias;
            }
            int8_t *o = out + oc;
            if (p->dil_w != 1) dw_channel_dilated(p, plane, wt, bias, &q, o);
            else if (kh == 1 && kw2 == 16) dw_channel_1x16(p, plane, wt, bias, &q, o);
            else if (kh == 3 && kw == 3 && p->stride_w == 1) dw_channel_3x3s1(p, plane, wt, bias, &q, o);
            else if (kh == 3 && kw2 == 4) dw_channel_3x4(p, plane, wt, bias, &q, o);
            else if (kh == 1 && kw2 == 4) dw_channel_1x4(p, plane, wt, bias, &q, o);
            else if (kh == 1 && kw2 == 6) dw_channel_1x6(p, plane, wt, bias, &q, o);
            else if (kh == 5 && kw2 == 6) dw_channel_5x6(p, plane, wt, bias, &q, o);
            else dw_channel_any(p, plane, wt, bias, &q, o);
        }
    }
}
#endif

#if defined(ECG_OPTIMIZED)
/* Fully connected: the input offset folded into bias_eff (generator). The input vector is widened once
 * into int16 pairs in SXTB16 order ((x0,x2), (x1,x3) per 4), so per 4 taps and two outputs: two word
 * loads of filter bytes, four SXTB16, one LDRD of the input pairs and four SMLAD. The fast exact
 * requantiser when the channel suits it. */
#define FC_MAX_DEPTH 2048
static inline int8_t fc_out(int32_t acc, int32_t mult, int32_t shift, int32_t oo, int32_t lo, int32_t hi, int fast) {
    if (fast) return (int8_t)ecg_clamp(rq_fast(acc + acc, mult, -shift, (1 << (-shift - 1)) + oo * (1 << -shift)), lo, hi);
    return (int8_t)ecg_clamp(ecg_rq_apply(acc, ecg_rq_make(mult, shift)) + oo, lo, hi);
}
void ecg_fc_opt(const ecg_fc_params *p, const int8_t *in, int8_t *out) {
    if (!p->bias_eff) { ecg_fc_ref(p, in, out); return; }
    const int32_t depth = p->in_depth, n_out = p->out_depth, d4 = depth & ~3;
    const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    if (depth > FC_MAX_DEPTH) {
        for (int32_t bt = 0; bt < p->batches; ++bt, in += depth, out += n_out)
            for (int32_t o = 0; o < n_out; ++o) {
                const int8_t *w = p->filter + (size_t)o * depth;
                int32_t acc = p->bias_eff[o];
                for (int32_t d = 0; d < depth; ++d) acc += in[d] * w[d];
                const int32_t c = p->per_channel ? o : 0;
                out[o] = (int8_t)ecg_clamp(ecg_rq_apply(acc, ecg_rq_make(p->mult[c], p->shift[c])) + oo, lo, hi);
            }
        return;
    }
    uint32_t xw[FC_MAX_DEPTH / 2];
    for (int32_t bt = 0; bt < p->batches; ++bt, in += depth, out += n_out) {
        for (int32_t d = 0; d < d4; d += 4) {
            const uint32_t v = load32(in + d);
            xw[d / 2] = SXTB16(v);
            xw[d / 2 + 1] = SXTB16_ROR8(v);
        }
        int32_t o = 0;
        for (; o < n_out; o += 2) {
            const int two = o + 1 < n_out;
            const int8_t *w0 = p->filter + (size_t)o * depth, *w1 = two ? w0 + depth : w0;
            int32_t a0 = p->bias_eff[o], a1 = two ? p->bias_eff[o + 1] : 0;
            const uint32_t *x = xw;
            for (int32_t d = 0; d < d4; d += 4, x += 2) {
                const uint32_t v0 = load32(w0 + d), v1 = load32(w1 + d), xe = x[0], xo = x[1];
                a0 = SMLAD(SXTB16(v0), xe, a0);
                a0 = SMLAD(SXTB16_ROR8(v0), xo, a0);
                a1 = SMLAD(SXTB16(v1), xe, a1);
                a1 = SMLAD(SXTB16_ROR8(v1), xo, a1);
            }
            for (int32_t d = d4; d < depth; ++d) {
                a0 += in[d] * w0[d];
                a1 += in[d] * w1[d];
            }
            for (int k = 0; k < 1 + two; ++k) {
                const int32_t c = p->per_channel ? o + k : 0, acc = k ? a1 : a0;
                const int32_t sh = p->shift[c];
                const int fast = rq_fast_ok(sh, oo) && acc > -(1 << 30) && acc < (1 << 30);
                out[o + k] = fc_out(acc, p->mult[c], sh, oo, lo, hi, fast);
            }
        }
    }
}
#endif

#if defined(ECG_OPTIMIZED)
/* Mean: the sums four channels at a time from one word load (sign-extending byte adds), then the
 * reference kernel's finalisation for each sum. */
/* acc lanes + sign-extended bytes 1 and 3 of x */
static inline uint32_t SXTAB16_ROR8_ACC(uint32_t acc, uint32_t x) {
#if defined(__ARM_FEATURE_DSP)
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
#else
    return SXTAB16(acc, (x >> 8) | (x << 24));
#endif
}

void ecg_mean_opt(const ecg_mean_params *p, const int8_t *in, int8_t *out) {
    const int32_t n = p->reduce, inner = p->inner;
    if ((inner & 3) != 0) { ecg_mean_ref(p, in, out); return; }
    int32_t mult = p->mult, shift = p->shift;
    if (p->variant != 1) {
        int32_t s = 63 - __builtin_clzll((uint64_t)n);
        if (s > 32) s = 32;
        if (s > 31 + shift) s = 31 + shift;
        mult = (int32_t)(((int64_t)mult << s) / n);
        shift = shift - s;
    }
    for (int32_t o = 0; o < p->outer; ++o)
        for (int32_t i = 0; i < inner; i += 4) {
            const int8_t *src = in + (size_t)o * n * inner + i;
            int32_t acc[4] = {0, 0, 0, 0};
#if defined(ECG_KERNELS_MVE)
            int32x4_t sum = vdupq_n_s32(0);
            for (int32_t r = 0; r < n; ++r, src += inner) sum = vaddq_s32(sum, vldrbq_s32(src));
            vstrwq_s32(acc, sum);
            for (int32_t k = 0; k < 4; ++k) {
                const int32_t v = p->variant == 1 ? acc[k] / n : ecg_mbqm(acc[k] - p->in_zp * n, mult, shift) + p->out_zp;
                out[(size_t)o * inner + i + k] = (int8_t)ecg_clamp(v, -128, 127);
            }
            continue;
#endif
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            /* 16-bit lane sums (SXTAB16) of at most 128 rows cannot overflow; then into 32-bit sums */
            for (int32_t r0 = 0; r0 < n; r0 += 128) {
                const int32_t r1 = n - r0 < 128 ? n : r0 + 128;
                uint32_t p02 = 0, p13 = 0;
                for (int32_t r = r0; r < r1; ++r, src += inner) {
                    const uint32_t w = load32(src);
                    p02 = SXTAB16(p02, w);
                    p13 = SXTAB16_ROR8_ACC(p13, w);
                }
                s0 += (int16_t)p02; s2 += (int16_t)(p02 >> 16); s1 += (int16_t)p13; s3 += (int16_t)(p13 >> 16);
            }
            acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
            for (int32_t k = 0; k < 4; ++k) {
                int32_t v;
                if (p->variant == 1) {
                    v = acc[k] / n;
                } else {
                    v = ecg_mbqm(acc[k] - p->in_zp * n, mult, shift) + p->out_zp;
                }
                out[(size_t)o * inner + i + k] = (int8_t)ecg_clamp(v, -128, 127);
            }
        }
}
#endif

#if defined(ECG_OPTIMIZED)
/* out[r][c] = tables[c][in[r][c]]: the generator's per-channel tables (affine, optionally + Swish) */
void ecg_channel_lut_opt(const int8_t *tables, int32_t rows, int32_t channels, const int8_t *in, int8_t *out) {

#if defined(ECG_KERNELS_MVE)
    if ((channels & 7) == 0) {
        /* 8 channels of a row per gather: index (c + j) * 256 + x + 128 in 16-bit lanes */
        const uint16x8_t lane = vaddq_n_u16(vmulq_n_u16(vidupq_n_u16(0, 1), 256), 128);
        for (int32_t r = 0; r < rows; ++r, in += channels, out += channels)
            for (int32_t c = 0; c < channels; c += 8) {
                const uint16x8_t idx = vaddq_u16(vreinterpretq_u16_s16(vldrbq_s16(in + c)), lane);
                vstrbq_u16((uint8_t *)out + c, vldrbq_gather_offset_u16((const uint8_t *)tables + (size_t)c * 256, idx));
            }
        return;
    }
#endif
    for (int32_t c = 0; c < channels; ++c) {
        const int8_t *t = tables + (size_t)c * 256 + 128;
        const int8_t *s = in + c;
        int8_t *d = out + c;
        int32_t r = 0;
        for (; r + 2 <= rows; r += 2, s += 2 * channels, d += 2 * channels) {
            const int8_t x0 = s[0], x1 = s[channels];
            d[0] = t[x0];
            d[channels] = t[x1];
        }
        if (r < rows) d[0] = t[s[0]];
    }
}
#endif
