/* The device's inference path as a host program, for the simulator (device_sim): the same engine, model and
 * input quantisation as the firmware, so a simulated device answers bit for bit what the firmware answers.
 * Commands on stdin, one answer (the model's ECG_OUTPUT_SIZE int8 outputs) on stdout per command:
 *   'Q' int8[ECG_INPUT_SIZE]      a quantised input (LOAD_INPUT + INFER)
 *   'U' float64[ECG_INPUT_SIZE]   filtered microvolts, quantised by ecg_input_q8 as WINDOW_INFER does
 * End of input: exit 0; a short or unknown command: exit 1 or 2. */
#include <stdio.h>
#include <stdint.h>
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
        ecg_model_invoke(in, out);
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out || fflush(stdout) != 0) return 1;
    }
}
