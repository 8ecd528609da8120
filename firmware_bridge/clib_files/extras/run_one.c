/* Smallest C99 program on the library: quantised windows from a file (ECG_MODEL_INPUT_SIZE int8 values
 * each, one or more) -> raw int8 outputs of each on stdout.
 *   cc -std=c99 -Isrc extras/run_one.c build/host/libecgedge_model.a -o run_one && ./run_one window.bin */
#include <stdio.h>
#include <stdint.h>
#include "ecgedge_model.h"

int main(int argc, char **argv) {
    static int8_t in[ECG_MODEL_INPUT_SIZE];
    int8_t out[ECG_MODEL_OUTPUT_SIZE];
    FILE *f;
    size_t n, windows = 0;
    if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: run_one WINDOWS.bin (%d int8 values per window)\n", ECG_MODEL_INPUT_SIZE);
        return 2;
    }
    if (!ecg_model_verify()) {
        fprintf(stderr, "run_one: model constants fail their SHA-256 check\n");
        fclose(f);
        return 1;
    }
    while ((n = fread(in, 1, sizeof in, f)) == sizeof in) {
        ecg_model_invoke(in, out);
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out) break;
        ++windows;
    }
    fclose(f);
    if (n != 0 || windows == 0) {
        fprintf(stderr, "run_one: %s is not a whole number of %d-byte windows\n", argv[1], ECG_MODEL_INPUT_SIZE);
        return 2;
    }
    return 0;
}
