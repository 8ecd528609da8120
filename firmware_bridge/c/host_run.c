/* Host harness: reads input tensors (raw bytes, the model's input type) on stdin, writes the output tensor
 * of each to stdout. */
#include <stdio.h>
#include <stdint.h>
#include "model.h"

int main(void) {
    static ECG_INPUT_T in[ECG_INPUT_SIZE];
    static ECG_OUTPUT_T out[ECG_OUTPUT_SIZE];
    while (fread(in, 1, ECG_INPUT_BYTES, stdin) == ECG_INPUT_BYTES) {
        ecg_model_invoke(in, out);
        if (fwrite(out, 1, ECG_OUTPUT_BYTES, stdout) != ECG_OUTPUT_BYTES) return 1;
    }
    return 0;
}
