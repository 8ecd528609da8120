/* The device's inference path as a host program, for the simulator (device_sim): the same engine, model and
 * input quantisation as the firmware, so a simulated device answers bit for bit what the firmware answers.
 * Commands on stdin, one answer per command on stdout: the model's ECG_OUTPUT_SIZE int8 outputs, then the
 * inference's own time in microseconds (uint32, host byte order; the thread's CPU time, so a busy host's
 * scheduling does not count, as a device's inference counter counts only the inference):
 *   'Q' int8[ECG_INPUT_SIZE]      a quantised input (LOAD_INPUT + INFER)
 *   'U' float64[ECG_INPUT_SIZE]   filtered microvolts, quantised by ecg_input_q8 as WINDOW_INFER does
 * End of input: exit 0; a short or unknown command: exit 1 or 2. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdint.h>
#include <time.h>
#include "ecg_input.h"
#include "model.h"

int main(void) {
    static int8_t in[ECG_INPUT_SIZE];
    static double uv[ECG_INPUT_SIZE];
    int8_t out[ECG_OUTPUT_SIZE];
    for (;;) {
        int c = getchar();
        if (c == EOF) return 0;
        if (c == 'Q') {
            if (fread(in, 1, sizeof in, stdin) != sizeof in) return 1;
        } else if (c == 'U') {
            if (fread(uv, sizeof uv[0], ECG_INPUT_SIZE, stdin) != ECG_INPUT_SIZE) return 1;
            for (uint32_t k = 0; k < ECG_INPUT_SIZE; ++k)
                in[k] = ecg_input_q8(uv[k], ECG_SCALE_UV, ECG_INPUT_SCALE, ECG_INPUT_ZERO_POINT);
        } else {
            return 2;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        ecg_model_invoke(in, out);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        int64_t ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
        uint32_t us = (uint32_t)(ns / 1000);
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out || fwrite(&us, sizeof us, 1, stdout) != 1 ||
            fflush(stdout) != 0) return 1;
    }
}
