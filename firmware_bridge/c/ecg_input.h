/* The model's input contract in C: filtered microvolts -> one INT8 model input. The firmware's WINDOW_INFER
 * builds its input with it, and so does the simulator (host_sim.c), so both quantise the same way:
 *     q = clip(round_half_even(uv / scale_uv / input_scale) + zero_point, -128, 127), in double. */
#ifndef ECG_INPUT_H
#define ECG_INPUT_H
#include <math.h>
#include <stdint.h>

static inline int8_t ecg_input_q8(double uv, double scale_uv, double input_scale, int32_t zero_point) {
    double q = nearbyint(uv / scale_uv / input_scale) + zero_point;
    return (int8_t)(q < -128.0 ? -128 : (q > 127.0 ? 127 : (int)q));
}
#endif
