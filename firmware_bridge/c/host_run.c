/* Host harness: reads int8 input windows from stdin, writes the int8 outputs of each to stdout. */
#include <stdio.h>
#include <stdint.h>
#include "model.h"

int main(void) {
    static int8_t in[ECG_INPUT_SIZE];
    int8_t out[ECG_OUTPUT_SIZE];
    while (fread(in, 1, sizeof in, stdin) == sizeof in) {
        ecg_model_invoke(in, out);
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out) return 1;
    }
    return 0;
}
