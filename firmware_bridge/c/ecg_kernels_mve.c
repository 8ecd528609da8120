/* Optimised INT8 kernels, Helium path (Cortex-M55, ARMv8.1-M MVE; arm_mve.h intrinsics).
 *
 * The dot products take int8 on both sides: VMLADAVA.S8 multiplies 16 int8 lanes and adds the 16
 * products to a 32-bit scalar. The input offset is folded into the bias (sum (x + off) w =
 * sum x w + off sum w, the generator's bias_eff for conv and fully connected, the channel's tap sum
 * for depthwise); padding is the input zero point (x + off = 0), so padded taps add nothing.
 * Requantisation runs on four outputs at once: VQRDMULH is TFLite's SaturatingRoundingDoublingHighMul
 * ((2ab + 2^31) >> 32 = floor((ab + 2^30) / 2^31)), and its RoundingDivideByPOT (half away from zero) is
 * VRSHL by -e after adding -1 to negative values when e > 0 (gemmlowp's fixup: (x & -e) >> 31).
 * Integer results equal the reference path. */
#include "ecg_opt.h"

#if defined(ECG_OPTIMIZED) && defined(ECG_KERNELS_MVE)

/* the same with a multiplier and shift per lane (left = max(shift, 0), neg_right = min(shift, 0)) */
static inline int32x4_t rq4v(int32x4_t acc, int32x4_t mult, int32x4_t left, int32x4_t neg_right) {
    acc = vshlq_s32(acc, left);
    acc = vqrdmulhq_s32(acc, mult);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(acc, neg_right), 31);
    return vrshlq_s32(vqaddq_s32(acc, fixup), neg_right);
}

static inline int32x4_t lanes4(int32_t a0, int32_t a1, int32_t a2, int32_t a3) {
    int32x4_t v = vdupq_n_s32(a0);
    v = vsetq_lane_s32(a1, v, 1);
    v = vsetq_lane_s32(a2, v, 2);
    return vsetq_lane_s32(a3, v, 3);
}

/* offset + clamp, the fused table (Swish) if any, then the int8 stores at o + offs[k] */
static inline void store4(int32x4_t v, int32_t oo, int32_t lo, int32_t hi, const int8_t *post, int8_t *o,
                          uint32x4_t offs, int32_t n) {
    v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, oo), vdupq_n_s32(lo)), vdupq_n_s32(hi));
    if (post) v = vldrbq_gather_offset_s32(post - 128, vreinterpretq_u32_s32(vaddq_n_s32(v, 128)));
    if (n >= 4) vstrbq_scatter_offset_s32(o, offs, v);
    else vstrbq_scatter_offset_p_s32(o, offs, v, vctp32q((uint32_t)n));
}

/* n bytes from src to dst, or the byte `fill` when src is NULL (16 per vector, the tail predicated) */
static inline void copy_or_fill(int8_t *dst, const int8_t *src, int32_t n, int8_t fill) {
    int32_t i = 0;
    if (src) {
        for (; i + 16 <= n; i += 16) vstrbq_s8(dst + i, vldrbq_s8(src + i));
    } else {
        const int8x16_t f = vdupq_n_s8(fill);
        for (; i + 16 <= n; i += 16) vstrbq_s8(dst + i, f);
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        vstrbq_p_s8(dst + i, src ? vldrbq_z_s8(src + i, pr) : vdupq_n_s8(fill), pr);
    }
}

/* ---------------------------------------------------------------- convolution */

/* column of output (ox, oy) for group channels c0.. into dst (col_len bytes), padding = zero point */
static void im2col_mve(const ecg_conv_params *p, const int8_t *in, int32_t ox, int32_t oy, int32_t c0, int8_t *dst) {
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int32_t fic = p->filter_in_c;
    const int8_t zp = (int8_t)(-p->in_offset);
    const int run_taps = fic == p->in_c && p->dil_w == 1;   /* taps along x are contiguous */
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        const int row_ok = iy >= 0 && iy < p->in_h;
        if (run_taps && row_ok && ix0 >= 0 && ix0 + p->k_w <= p->in_w) {
            copy_or_fill(dst, in + ((size_t)iy * p->in_w + ix0) * p->in_c, p->k_w * fic, 0);
            dst += p->k_w * fic;
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx, dst += fic) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int ok = row_ok && ix >= 0 && ix < p->in_w;
            copy_or_fill(dst, ok ? in + ((size_t)iy * p->in_w + ix) * p->in_c + c0 : NULL, fic, zp);
        }
    }
}

/* *a_j += dot(w[0:n], x_j[0:n]) for n a multiple of 16: per 16 bytes one filter load, four column loads
 * (post-incremented) and four VMLADAVA.S8 in a low-overhead loop (VMLADAVA takes even accumulators) */
static inline __attribute__((always_inline)) void dot4_mve(const int8_t *w, const int8_t *x0, const int8_t *x1,
                                                          const int8_t *x2, const int8_t *x3, int32_t n, int32_t *a0,
                                                          int32_t *a1, int32_t *a2, int32_t *a3) {
    if (n <= 0) return;
    register int32_t r0 __asm__("r0") = *a0;
    register int32_t r2 __asm__("r2") = *a1;
    register int32_t r4 __asm__("r4") = *a2;
    register int32_t r12 __asm__("r12") = *a3;
    register int32_t count __asm__("lr") = n >> 4;
    __asm__ volatile(
        "dls lr, lr\n"
        "1:\n\t"
        "vldrb.u8 q0, [%[w]], #16\n\t"
        "vldrb.u8 q1, [%[x0]], #16\n\t"
        "vmlava.s8 %[a0], q1, q0\n\t"
        "vldrb.u8 q2, [%[x1]], #16\n\t"
        "vmlava.s8 %[a1], q2, q0\n\t"
        "vldrb.u8 q3, [%[x2]], #16\n\t"
        "vmlava.s8 %[a2], q3, q0\n\t"
        "vldrb.u8 q4, [%[x3]], #16\n\t"
        "vmlava.s8 %[a3], q4, q0\n\t"
        "le lr, 1b\n"
        : [a0] "+r"(r0), [a1] "+r"(r2), [a2] "+r"(r4), [a3] "+r"(r12), [w] "+r"(w), [x0] "+r"(x0),
          [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3), "+r"(count)
        :
        : "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "memory");
    *a0 = r0; *a1 = r2; *a2 = r4; *a3 = r12;
}

/* all output channels oc0.. of a group for four columns: per 16 taps one filter load, four column loads,
 * four VMLADAVA.S8 */
__attribute__((noinline)) static void conv_block_mve(const ecg_conv_params *p, const int8_t *const cols[NCOL], int8_t *o,
                                                     int32_t oc0, int32_t n_oc, int32_t col_len, int32_t ncols) {
    const int32_t out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int8_t *post = p->post_lut;
    const int8_t *c0 = cols[0], *c1 = cols[1], *c2 = cols[2], *c3 = cols[3];
    const int32_t full = col_len & ~15, tail = col_len - full;
    const mve_pred16_t pt = vctp8q((uint32_t)tail);
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)out_c);
    for (int32_t oc = oc0; oc < oc0 + n_oc; ++oc) {
        const int8_t *w = p->filter + (size_t)oc * col_len;
        const int32_t b = p->bias_eff[oc];
        int32_t a0 = b, a1 = b, a2 = b, a3 = b;
        dot4_mve(w, c0, c1, c2, c3, full, &a0, &a1, &a2, &a3);
        if (tail) {
            const int8x16_t wv = vldrbq_z_s8(w + full, pt);
            a0 = vmladavaq_p_s8(a0, vldrbq_z_s8(c0 + full, pt), wv, pt);
            a1 = vmladavaq_p_s8(a1, vldrbq_z_s8(c1 + full, pt), wv, pt);
            a2 = vmladavaq_p_s8(a2, vldrbq_z_s8(c2 + full, pt), wv, pt);
            a3 = vmladavaq_p_s8(a3, vldrbq_z_s8(c3 + full, pt), wv, pt);
        }
        store4(rq4(lanes4(a0, a1, a2, a3), p->mult[oc], p->shift[oc]), oo, lo, hi, post, o + oc, offs, ncols);
    }
}

/* Columns of 16 taps (1x1 convs of 16 input channels, the 1->16 stem): weight-stationary. Four
 * output channels' filters stay in vector registers while the columns stream past; per column: one LDM
 * puts the four channels' biases in the accumulators, one load, four VMLADAVA.S8, two VMOV (core pairs to
 * the D halves of q7: not MVE's two-lane VMOV, which QEMU 7.2 executes with its lanes swapped),  the requantisation of the four as one vector with per-lane multipliers and shifts (q4, q5),
 * the output offset, saturation to int8 (VQSHL #24, VSHR #24), the fused table if any (a gather), and
 * one store of four consecutive bytes. Columns start at x + j * xstride (inside the input). Needs
 * 16 taps exactly, out_c % 4 == 0, no left shift and a full-range output (the caller checks). */
__attribute__((noinline)) static void conv_cols16_mve(const ecg_conv_params *p, const int8_t *x, int32_t xstride,
                                                      int32_t ncols, int8_t *o) {
    const int32_t out_c = p->out_c;
    const int8_t *post = p->post_lut;
    for (int32_t oc = 0; oc < out_c; oc += 4) {
        /* r0, r2, r4: the filter, multipliers and shifts while q0-q5 load; then accumulators */
        register int32_t r0 __asm__("r0") = (int32_t)(p->filter + (size_t)oc * 16);
        register int32_t r2 __asm__("r2") = (int32_t)(p->mult + oc);
        register int32_t r4 __asm__("r4") = (int32_t)(p->shift + oc);
        register int32_t r6 __asm__("r6");
        register int32_t count __asm__("lr") = ncols;
        const int32_t *bias = p->bias_eff + oc;
        const int8_t *xc = x;
        int8_t *oj = o + oc;
#define COLS16_HEAD                                                                          \
        "vldrb.u8 q0, [r0]\n\t" "vldrb.u8 q1, [r0, #16]\n\t" "vldrb.u8 q2, [r0, #32]\n\t"  \
        "vldrb.u8 q3, [r0, #48]\n\t" "vldrw.u32 q4, [r2]\n\t" "vldrw.u32 q5, [r4]\n\t"     \
        "dls lr, lr\n"                                                                       \
        "1:\n\t"                                                                             \
        "ldm %[b], {r0, r2, r4, r6}\n\t"                                                     \
        "vldrb.u8 q7, [%[x]]\n\t"                                                            \
        "add %[x], %[xs]\n\t"                                                                \
        "vmlava.s8 r0, q7, q0\n\t" "vmlava.s8 r2, q7, q1\n\t"                                \
        "vmlava.s8 r4, q7, q2\n\t" "vmlava.s8 r6, q7, q3\n\t"                                \
        "vmov d14, r0, r2\n\t" "vmov d15, r4, r6\n\t"                                        \
        "vqrdmulh.s32 q7, q7, q4\n\t"                                                        \
        "vand q6, q7, q5\n\t" "vshr.s32 q6, q6, #31\n\t" "vqadd.s32 q7, q7, q6\n\t"          \
        "vrshl.s32 q7, q7, q5\n\t"                                                           \
        "vadd.i32 q7, q7, %[oo]\n\t"
        if (post) {
            /* output offset + 128, saturated to 0..255: the fused table's index */
            __asm__ volatile(
                COLS16_HEAD
                "vqshlu.s32 q7, q7, #24\n\t" "vshr.u32 q7, q7, #24\n\t"
                "vldrb.s32 q6, [%[post], q7]\n\t"
                "vstrb.32 q6, [%[o]]\n\t"
                "add %[o], %[os]\n\t"
                "le lr, 1b\n"
                : [x] "+r"(xc), [o] "+r"(oj), "+r"(count), "+r"(r0), "+r"(r2), "+r"(r4), "=&r"(r6)
                : [b] "r"(bias), [xs] "r"(xstride), [os] "r"(out_c), [oo] "r"(p->out_offset + 128),
                  [post] "r"(post - 128)
                : "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12", "d13", "d14",
                  "d15", "memory");
        } else {
            __asm__ volatile(
                COLS16_HEAD
                "vqshl.s32 q7, q7, #24\n\t" "vshr.s32 q7, q7, #24\n\t"
                "vstrb.32 q7, [%[o]]\n\t"
                "add %[o], %[os]\n\t"
                "le lr, 1b\n"
                : [x] "+r"(xc), [o] "+r"(oj), "+r"(count), "+r"(r0), "+r"(r2), "+r"(r4), "=&r"(r6)
                : [b] "r"(bias), [xs] "r"(xstride), [os] "r"(out_c), [oo] "r"(p->out_offset)
                : "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12", "d13", "d14",
                  "d15", "memory");
        }
#undef COLS16_HEAD
    }
}

void ecg_conv2d_mve(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t fic = p->filter_in_c, groups = p->in_c / fic, per_group = p->out_c / groups;
    const int32_t col_len = p->k_h * p->k_w * fic, col16 = (col_len + 15) & ~15;
    const int32_t n_pos = p->out_h * p->out_w;
    int8_t *scratch = (int8_t *)p->col_buf;
    if (!scratch || !p->bias_eff) {
        ecg_conv2d_ref(p, in, out);
        return;
    }
    /* a column that is one contiguous run of the input (no groups, one kernel row, inside the input)
     * is read where it is; others are built in the scratch block */
    const int direct = groups == 1 && p->dil_w == 1 && p->k_h == 1;
    int no_left = 1;
    for (int32_t oc = 0; oc < p->out_c; ++oc) no_left &= p->shift[oc] <= 0;
    if (direct && col_len == 16 && (p->out_c & 3) == 0 && no_left && p->act_min == -128 && p->act_max == 127) {
        /* interior columns of each output row stream through the weight-stationary kernel; the
         * columns that reach into the padding take the block path below */
        const int32_t xstride = p->stride_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy = oy * p->stride_h - p->pad_h;
            int32_t x0 = 0, x1 = p->out_w;   /* interior: ox * sw - pad_w >= 0 and + k_w <= in_w */
            while (x0 < x1 && x0 * p->stride_w - p->pad_w < 0) ++x0;
            while (x1 > x0 && (x1 - 1) * p->stride_w - p->pad_w + p->k_w > p->in_w) --x1;
            if (iy < 0 || iy >= p->in_h) x1 = x0;
            int8_t *orow = out + (size_t)oy * p->out_w * p->out_c;
            if (x1 > x0)
                conv_cols16_mve(p, in + ((size_t)iy * p->in_w + x0 * p->stride_w - p->pad_w) * p->in_c, xstride,
                                x1 - x0, orow + (size_t)x0 * p->out_c);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                if (ox == x0 && x1 > x0) ox = x1;   /* past the interior */
                if (ox >= p->out_w) break;
                const int8_t *cols[NCOL];
                im2col_mve(p, in, ox, oy, 0, scratch);
                cols[0] = cols[1] = cols[2] = cols[3] = scratch;
                conv_block_mve(p, cols, orow + (size_t)ox * p->out_c, 0, p->out_c, col_len, 1);
            }
        }
        return;
    }
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t oc0 = g * per_group, c0 = g * fic;
        for (int32_t pos = 0; pos < n_pos; pos += NCOL) {
            const int32_t ncols = n_pos - pos < NCOL ? n_pos - pos : NCOL;
            const int8_t *cols[NCOL];
            for (int32_t j = 0; j < NCOL; ++j) {
                const int32_t q = pos + (j < ncols ? j : 0);   /* short block: repeat a column */
                const int32_t ox = q % p->out_w, oy = q / p->out_w;
                const int32_t iy = oy * p->stride_h - p->pad_h, ix = ox * p->stride_w - p->pad_w;
                if (direct && iy >= 0 && iy < p->in_h && ix >= 0 && ix + p->k_w <= p->in_w) {
                    cols[j] = in + ((size_t)iy * p->in_w + ix) * p->in_c;
                } else {
                    im2col_mve(p, in, ox, oy, c0, scratch + j * col16);
                    cols[j] = scratch + j * col16;
                }
            }
            conv_block_mve(p, cols, out + (size_t)pos * p->out_c, oc0, per_group, col_len, ncols);
        }
    }
}

/* ---------------------------------------------------------------- depthwise convolution */

/* one input channel into an int8 plane padded with the zero point: rows x p->plane_w */
static void dw_plane_fill_mve(const ecg_conv_params *p, const int8_t *in, int32_t ic, int8_t *plane, int32_t rows,
                              int32_t cols) {
    const int32_t pw = p->plane_w, in_c = p->in_c;
    const int8_t zp = (int8_t)(-p->in_offset);
    const uint16x8_t offs = vmulq_n_u16(vidupq_n_u16(0, 1), (uint16_t)in_c);
    for (int32_t r = 0; r < rows; ++r) {
        int8_t *dst = plane + (size_t)r * pw;
        const int32_t iy = r - p->pad_h;
        if (iy < 0 || iy >= p->in_h) {
            copy_or_fill(dst, NULL, cols, zp);
            continue;
        }
        const int32_t x0 = p->pad_w < cols ? p->pad_w : cols;
        const int32_t x1 = p->pad_w + p->in_w < cols ? p->pad_w + p->in_w : cols;
        copy_or_fill(dst, NULL, x0, zp);
        const int8_t *src = in + (size_t)iy * p->in_w * in_c + ic;
        int32_t x = x0;
        for (; x + 8 <= x1; x += 8, src += 8 * in_c) vstrbq_s16(dst + x, vldrbq_gather_offset_s16(src, offs));
        if (x < x1) {
            const mve_pred16_t pr = vctp16q((uint32_t)(x1 - x));
            vstrbq_p_s16(dst + x, vldrbq_gather_offset_z_s16(src, offs, pr), pr);
        }
        if (cols > x1) copy_or_fill(dst + x1, NULL, cols - x1, zp);
    }
}

#define DW_MAX_ROWS 16
/* one output channel: per output and kernel row one load of 16 plane bytes and one VMLADAVA.S8 with the
 * row's taps (lanes past the kernel width are zero); four outputs requantised at once */
__attribute__((noinline)) static void dw_channel_mve(const ecg_conv_params *p, const int8_t *plane, const int8x16_t *wrow,
                                                     int32_t bias, int32_t mult, int32_t shift, int8_t *out) {
    const int32_t kh = p->k_h, pw = p->plane_w, sh = p->stride_h, sw = p->stride_w, dpw = p->dil_h * pw;
    const int32_t out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max, ow = p->out_w;
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)out_c);
    const int8x16_t w0 = wrow[0];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int8_t *row = plane + (size_t)oy * sh * pw;
        int8_t *o = out + (size_t)oy * ow * out_c;
        for (int32_t ox = 0; ox < ow; ox += 4, o += 4 * out_c) {
            int32_t acc[4];
            for (int32_t j = 0; j < 4; ++j) {
                const int8_t *x = row + (ox + (ox + j < ow ? j : 0)) * sw;
                int32_t a = vmladavaq_s8(bias, vldrbq_s8(x), w0);
                for (int32_t ky = 1; ky < kh; ++ky) a = vmladavaq_s8(a, vldrbq_s8(x + ky * dpw), wrow[ky]);
                acc[j] = a;
            }
            store4(rq4(lanes4(acc[0], acc[1], acc[2], acc[3]), mult, shift), oo, lo, hi, NULL, o, offs, ow - ox);
        }
    }
}

/* 3x3, stride 1, full-range output: four adjacent outputs of one channel in the four lanes. Per tap one
 * VLDRB.S32 of four plane bytes and one VMLA.S32 by the tap; the nine taps live in r4-r12, the plane's
 * three rows in r0-r2 (post-incremented by the row's last load), the bias, multiplier, shift and
 * output offset in q4-q7; the four results go out with one scatter at stride out_c (offsets q3,
 * advanced by q2 each pass). 30 instructions per 36 MACs. */
/* the nine taps into r4-r12 and q2-q7 from the vector block at r4 (step, offsets, bias, multiplier,
 * shift, output offset); one pass of four outputs over the three plane rows in r0-r2 */
#define DW3X3_SETUP                                                                                          \
    "vldrw.u32 q2, [r4]\n\t" "vldrw.u32 q3, [r4, #16]\n\t" "vldrw.u32 q4, [r4, #32]\n\t"                  \
    "vldrw.u32 q5, [r4, #48]\n\t" "vldrw.u32 q6, [r4, #64]\n\t" "vldrw.u32 q7, [r4, #80]\n\t"              \
    "ldrsb r4, [r5]\n\t" "ldrsb r6, [r5, #2]\n\t" "ldrsb r7, [r5, #3]\n\t" "ldrsb r8, [r5, #4]\n\t"          \
    "ldrsb r9, [r5, #5]\n\t" "ldrsb r10, [r5, #6]\n\t" "ldrsb r11, [r5, #7]\n\t" "ldrsb r12, [r5, #8]\n\t"    \
    "ldrsb r5, [r5, #1]"
#define DW3X3_PASS                                                                                           \
    "vmov q0, q4\n\t"                                                                                        \
    "vldrb.s32 q1, [r0, #1]\n\t" "vmla.s32 q0, q1, r5\n\t"                                                  \
    "vldrb.s32 q1, [r0, #2]\n\t" "vmla.s32 q0, q1, r6\n\t"                                                  \
    "vldrb.s32 q1, [r0], #4\n\t" "vmla.s32 q0, q1, r4\n\t"                                                  \
    "vldrb.s32 q1, [r1, #1]\n\t" "vmla.s32 q0, q1, r8\n\t"                                                  \
    "vldrb.s32 q1, [r1, #2]\n\t" "vmla.s32 q0, q1, r9\n\t"                                                  \
    "vldrb.s32 q1, [r1], #4\n\t" "vmla.s32 q0, q1, r7\n\t"                                                  \
    "vldrb.s32 q1, [r2, #1]\n\t" "vmla.s32 q0, q1, r11\n\t"                                                 \
    "vldrb.s32 q1, [r2, #2]\n\t" "vmla.s32 q0, q1, r12\n\t"                                                 \
    "vldrb.s32 q1, [r2], #4\n\t" "vmla.s32 q0, q1, r10\n\t"                                                 \
    "vqrdmulh.s32 q0, q0, q5\n\t"                                                                           \
    "vand q1, q0, q6\n\t" "vshr.s32 q1, q1, #31\n\t" "vqadd.s32 q0, q0, q1\n\t"                              \
    "vrshl.s32 q0, q0, q6\n\t"                                                                              \
    "vadd.i32 q0, q0, q7\n\t"                                                                               \
    "vqshl.s32 q0, q0, #24\n\t" "vshr.s32 q0, q0, #24\n\t"                                                  \
    "vstrb.32 q0, [r3, q3]\n\t"                                                                             \
    "vadd.i32 q3, q3, q2\n\t"

__attribute__((noinline)) static void dw3x3_mve(const ecg_conv_params *p, const int8_t *plane, const int8_t *taps,
                                                int32_t bias, int32_t mult, int32_t shift, int8_t *out) {
    const int32_t pw = p->plane_w, ow = p->out_w, out_c = p->out_c, oo = p->out_offset, n4 = ow >> 2;
    const int32_t t0 = taps[0], t1 = taps[1], t2 = taps[2], t3 = taps[3], t4 = taps[4], t5 = taps[5], t6 = taps[6],
                  t7 = taps[7], t8 = taps[8];
    /* q2: the offsets' step, q3: the offsets, q4-q7: bias, multiplier, shift, output offset */
    int32_t blk[24];
    for (int k = 0; k < 4; ++k) {
        blk[k] = 4 * out_c;
        blk[4 + k] = k * out_c;
        blk[8 + k] = bias;
        blk[12 + k] = mult;
        blk[16 + k] = shift;
        blk[20 + k] = oo;
    }
    if ((ow & 3) == 0 && n4 && p->out_h > 0) {
        /* whole rows of four-output groups: every row in one assembly block, the row counter, the pass
         * count and the row step on the stack (lr is free between rows) */
        int32_t rowinfo[3] = {p->out_h, n4, pw - 4 * n4};
        register const int8_t *x0 __asm__("r0") = plane;
        register const int8_t *x1 __asm__("r1") = plane + pw;
        register const int8_t *x2 __asm__("r2") = plane + 2 * pw;
        register int8_t *op __asm__("r3") = out;
        register const int32_t *vb __asm__("r4") = blk;
        register const int8_t *tp __asm__("r5") = taps;
        register const int32_t *ri __asm__("lr") = rowinfo;
        __asm__ volatile(
            "ldm lr, {r6, r7, r8}\n\t"
            "push {r6, r7, r8}\n\t"
            DW3X3_SETUP "\n"
            "2:\n\t"
            "ldr lr, [sp, #4]\n\t"
            "dls lr, lr\n"
            "1:\n\t"
            DW3X3_PASS
            "le lr, 1b\n\t"
            "ldr lr, [sp, #8]\n\t"
            "add r0, lr\n\t" "add r1, lr\n\t" "add r2, lr\n\t"
            "ldr lr, [sp]\n\t"
            "subs lr, #1\n\t"
            "str lr, [sp]\n\t"
            "bne 2b\n\t"
            "add sp, #12\n"
            : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(op), "+r"(vb), "+r"(tp), "+r"(ri)
            :
            : "r6", "r7", "r8", "r9", "r10", "r11", "r12", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8",
              "d9", "d10", "d11", "d12", "d13", "d14", "d15", "cc", "memory");
        return;
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int8_t *row = plane + (size_t)oy * pw;
        int8_t *o = out + (size_t)oy * ow * out_c;
        if (n4) {
            register const int8_t *x0 __asm__("r0") = row;
            register const int8_t *x1 __asm__("r1") = row + pw;
            register const int8_t *x2 __asm__("r2") = row + 2 * pw;
            register int8_t *op __asm__("r3") = o;
            register const int32_t *vb __asm__("r4") = blk;
            register const int8_t *tp __asm__("r5") = taps;
            register int32_t count __asm__("lr") = n4;
            __asm__ volatile(
                DW3X3_SETUP "\n\t"
                "dls lr, lr\n"
                "1:\n\t"
                DW3X3_PASS
                "le lr, 1b\n"
                : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(op), "+r"(vb), "+r"(tp), "+r"(count)
                :
                : "r6", "r7", "r8", "r9", "r10", "r11", "r12", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8",
                  "d9", "d10", "d11", "d12", "d13", "d14", "d15", "memory");
        }
        const int8_t *r0 = row + 4 * n4, *r1 = r0 + pw, *r2 = r1 + pw;
        for (int32_t ox = 4 * n4; ox < ow; ++ox, ++r0, ++r1, ++r2) {   /* the row's last outputs */
            const int32_t acc = bias + r0[0] * t0 + r0[1] * t1 + r0[2] * t2 + r1[0] * t3 + r1[1] * t4 + r1[2] * t5 +
                                r2[0] * t6 + r2[1] * t7 + r2[2] * t8;
            o[(size_t)ox * out_c] = (int8_t)ecg_clamp(ecg_mbqm(acc, mult, shift) + oo, -128, 127);
        }
    }
}

/* One kernel row of at most 16 taps (1-D depthwise), stride 1 or 2, full-range output, no left shift:
 * four adjacent outputs per pass, each one 16-byte load and one VMLADAVA.S8 with the taps (lanes past
 * the kernel width are zero), the four requantised as one vector and stored with one scatter at stride
 * out_c. 26 instructions per four outputs. */
#define DW_ROW16_ASM(S)                                                                   \
    __asm__ volatile(                                                                     \
        "vldrw.u32 q2, [r4]\n\t" "vldrw.u32 q3, [r4, #16]\n\t" "vldrw.u32 q4, [r4, #32]\n\t" \
        "vldrw.u32 q5, [r4, #48]\n\t" "vldrw.u32 q6, [r4, #64]\n\t" "vldrb.u8 q0, [r5]\n\t" \
        "dls lr, lr\n"                                                                    \
        "1:\n\t"                                                                          \
        "mov r0, r8\n\t" "mov r2, r8\n\t" "mov r4, r8\n\t" "mov r6, r8\n\t"               \
        "vldrb.u8 q1, [r1]\n\t" "vmlava.s8 r0, q1, q0\n\t"                                \
        "vldrb.u8 q1, [r1, #" #S "]\n\t" "vmlava.s8 r2, q1, q0\n\t"                       \
        "vldrb.u8 q1, [r1, #2 * " #S "]\n\t" "vmlava.s8 r4, q1, q0\n\t"                   \
        "vldrb.u8 q1, [r1, #3 * " #S "]\n\t" "vmlava.s8 r6, q1, q0\n\t"                   \
        "adds r1, #4 * " #S "\n\t"                                                        \
        "vmov d2, r0, r2\n\t" "vmov d3, r4, r6\n\t"                                       \
        "vqrdmulh.s32 q1, q1, q4\n\t"                                                     \
        "vand q7, q1, q5\n\t" "vshr.s32 q7, q7, #31\n\t" "vqadd.s32 q1, q1, q7\n\t"       \
        "vrshl.s32 q1, q1, q5\n\t"                                                        \
        "vadd.i32 q1, q1, q6\n\t"                                                         \
        "vqshl.s32 q1, q1, #24\n\t" "vshr.s32 q1, q1, #24\n\t"                            \
        "vstrb.32 q1, [r3, q3]\n\t"                                                       \
        "vadd.i32 q3, q3, q2\n\t"                                                         \
        "le lr, 1b\n"                                                                     \
        : "+r"(xp), "+r"(vb), "+r"(count)                                                 \
        : "r"(op), "r"(wp), "r"(b8)                                                       \
        : "r0", "r2", "r6", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", \
          "d11", "d12", "d13", "d14", "d15", "cc", "memory")

__attribute__((noinline)) static void dw_row16_mve(const ecg_conv_params *p, const int8_t *row, const int8x16_t *w,
                                                   int32_t bias, int32_t mult, int32_t shift, int8_t *out,
                                                   int32_t n4) {
    const int32_t out_c = p->out_c;
    int32_t blk[20];
    for (int k = 0; k < 4; ++k) {
        blk[k] = 4 * out_c;
        blk[4 + k] = k * out_c;
        blk[8 + k] = mult;
        blk[12 + k] = shift;
        blk[16 + k] = p->out_offset;
    }
    int8_t taps[16];
    vstrbq_s8(taps, *w);
    register const int8_t *xp __asm__("r1") = row;
    register int8_t *op __asm__("r3") = out;
    register const int32_t *vb __asm__("r4") = blk;
    register const int8_t *wp __asm__("r5") = taps;
    register int32_t b8 __asm__("r8") = bias;
    register int32_t count __asm__("lr") = n4;
    if (p->stride_w == 1) DW_ROW16_ASM(1);
    else DW_ROW16_ASM(2);
}
#undef DW_ROW16_ASM

#undef DW3X3_SETUP
#undef DW3X3_PASS

/* eight channels ic..ic+7 into eight int8 planes (plane k at planes + k * plane_stride), padded with the
 * zero point: per pixel one load of the eight channel bytes and one scatter store (16-bit lane offsets) */
static void dw_plane_fill8_mve(const ecg_conv_params *p, const int8_t *in, int32_t ic, int8_t *planes,
                               uint32_t plane_stride, int32_t rows, int32_t cols) {
    const int32_t pw = p->plane_w, in_c = p->in_c;
    const uint16x8_t offs = vmulq_n_u16(vidupq_n_u16(0, 1), (uint16_t)plane_stride);
    const int16x8_t zp = vdupq_n_s16((int16_t)(int8_t)(-p->in_offset));
    for (int32_t r = 0; r < rows; ++r) {
        int8_t *dst = planes + (size_t)r * pw;
        const int32_t iy = r - p->pad_h;
        const int inside = iy >= 0 && iy < p->in_h;
        const int32_t x0 = !inside ? cols : (p->pad_w < cols ? p->pad_w : cols);
        const int32_t x1 = !inside ? cols : (p->pad_w + p->in_w < cols ? p->pad_w + p->in_w : cols);
        int32_t x = 0;
        for (; x < x0; ++x) vstrbq_scatter_offset_s16(dst + x, offs, zp);
        const int8_t *src = in + ((size_t)iy * p->in_w + (x - p->pad_w)) * in_c + ic;
        for (; x < x1; ++x, src += in_c) vstrbq_scatter_offset_s16(dst + x, offs, vldrbq_s16(src));
        for (; x < cols; ++x) vstrbq_scatter_offset_s16(dst + x, offs, zp);
    }
}

void ecg_depthwise_mve(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t in_c = p->in_c, out_c = p->out_c, dm = p->depth_multiplier, kh = p->k_h, kw = p->k_w;
    if (!p->col_buf || kw > 16 || p->dil_w != 1 || kh > DW_MAX_ROWS) {
        ecg_depthwise_ref(p, in, out);
        return;
    }
    int8_t *plane = (int8_t *)p->col_buf;
    const int32_t rows = (p->out_h - 1) * p->stride_h + (kh - 1) * p->dil_h + 1;
    const int32_t cols = (p->out_w - 1) * p->stride_w + kw;
    const uint32_t plane_elems = (uint32_t)p->plane_h * (uint32_t)p->plane_w;
    const int group = p->depthwise_planes >= 8 && (in_c & 7) == 0 && plane_elems * 7 < 65536u ? 8 : 1;
    const int fast3x3 = kh == 3 && kw == 3 && p->stride_w == 1 && p->stride_h == 1 && p->dil_h == 1 &&
                        p->act_min == -128 && p->act_max == 127;
    int8x16_t wrow[DW_MAX_ROWS];
    for (int32_t ic = 0; ic < in_c; ++ic) {
        if (group == 8) {
            if ((ic & 7) == 0) dw_plane_fill8_mve(p, in, ic, (int8_t *)p->col_buf, plane_elems, rows, cols);
            plane = (int8_t *)p->col_buf + (size_t)(ic & 7) * plane_elems;
        } else {
            dw_plane_fill_mve(p, in, ic, plane, rows, cols);
        }
        for (int32_t m = 0; m < dm; ++m) {
            const int32_t oc = ic * dm + m;
            int32_t wsum = 0;
            if (fast3x3 && p->shift[oc] <= 0) {
                int8_t t9[9];
                for (int32_t k = 0; k < 9; ++k) wsum += t9[k] = p->filter[(size_t)k * out_c + oc];
                const int32_t bias = (p->bias ? p->bias[oc] : 0) + p->in_offset * wsum;
                dw3x3_mve(p, plane, t9, bias, p->mult[oc], p->shift[oc], out + oc);
                continue;
            }
            for (int32_t ky = 0; ky < kh; ++ky) {
                int8_t t[16] = {0};
                for (int32_t kx = 0; kx < kw; ++kx) {
                    t[kx] = p->filter[((size_t)ky * kw + kx) * out_c + oc];
                    wsum += t[kx];
                }
                wrow[ky] = vldrbq_s8(t);
            }
            const int32_t bias = (p->bias ? p->bias[oc] : 0) + p->in_offset * wsum;
            if (kh == 1 && p->out_h == 1 && (p->stride_w == 1 || p->stride_w == 2) && p->shift[oc] <= 0 &&
                p->act_min == -128 && p->act_max == 127 && p->out_w >= 4) {
                const int32_t n4 = p->out_w >> 2;
                dw_row16_mve(p, plane, wrow, bias, p->mult[oc], p->shift[oc], out + oc, n4);
                if (p->out_w & 3) {   /* the last outputs: the generic loop on a shifted view */
                    const int32_t done = 4 * n4;
                    for (int32_t ox = done; ox < p->out_w; ++ox) {
                        const int32_t acc = vmladavaq_s8(bias, vldrbq_s8(plane + ox * p->stride_w), wrow[0]);
                        out[(size_t)ox * out_c + oc] =
                            (int8_t)ecg_clamp(ecg_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset, -128, 127);
                    }
                }
                continue;
            }
            dw_channel_mve(p, plane, wrow, bias, p->mult[oc], p->shift[oc], out + oc);
        }
    }
}

/* ---------------------------------------------------------------- fully connected */

void ecg_fc_mve(const ecg_fc_params *p, const int8_t *in, int8_t *out) {
    if (!p->bias_eff) {
        ecg_fc_ref(p, in, out);
        return;
    }
    const int32_t depth = p->in_depth, n_out = p->out_depth, full = depth & ~15, tail = depth - full;
    const mve_pred16_t pt = vctp8q((uint32_t)tail);
    const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const uint32x4_t offs = vidupq_n_u32(0, 1);
    for (int32_t bt = 0; bt < p->batches; ++bt, in += depth, out += n_out) {
        for (int32_t o = 0; o < n_out; o += 4) {
            int32_t a[4];
            const int32_t n = n_out - o < 4 ? n_out - o : 4;
            for (int32_t k = 0; k < 4; ++k) a[k] = p->bias_eff[o + (k < n ? k : 0)];
            const int8_t *w0 = p->filter + (size_t)o * depth;
            const int8_t *w1 = p->filter + (size_t)(o + (1 < n ? 1 : 0)) * depth;
            const int8_t *w2 = p->filter + (size_t)(o + (2 < n ? 2 : 0)) * depth;
            const int8_t *w3 = p->filter + (size_t)(o + (3 < n ? 3 : 0)) * depth;
            int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
            for (int32_t i = 0; i < full; i += 16) {
                const int8x16_t xv = vldrbq_s8(in + i);
                a0 = vmladavaq_s8(a0, xv, vldrbq_s8(w0 + i));
                a1 = vmladavaq_s8(a1, xv, vldrbq_s8(w1 + i));
                a2 = vmladavaq_s8(a2, xv, vldrbq_s8(w2 + i));
                a3 = vmladavaq_s8(a3, xv, vldrbq_s8(w3 + i));
            }
            if (tail) {
                const int8x16_t xv = vldrbq_z_s8(in + full, pt);
                a0 = vmladavaq_p_s8(a0, xv, vldrbq_z_s8(w0 + full, pt), pt);
                a1 = vmladavaq_p_s8(a1, xv, vldrbq_z_s8(w1 + full, pt), pt);
                a2 = vmladavaq_p_s8(a2, xv, vldrbq_z_s8(w2 + full, pt), pt);
                a3 = vmladavaq_p_s8(a3, xv, vldrbq_z_s8(w3 + full, pt), pt);
            }
            int32x4_t v = lanes4(a0, a1, a2, a3);
            if (p->per_channel) {
                int32_t m[4], l[4], r[4];
                for (int32_t k = 0; k < 4; ++k) {
                    const int32_t c = o + (k < n ? k : 0), s = p->shift[c];
                    m[k] = p->mult[c]; l[k] = s > 0 ? s : 0; r[k] = s > 0 ? 0 : s;
                }
                v = rq4v(v, vldrwq_s32(m), vldrwq_s32(l), vldrwq_s32(r));
            } else {
                v = rq4(v, p->mult[0], p->shift[0]);
            }
            store4(v, oo, lo, hi, NULL, out + o, offs, n);
        }
    }
}
#endif
