// The float helper from C++17: windows of float32 millivolts from a file (ECG_MODEL_WINDOW_SAMPLES each)
// -> dequantised outputs as float32 on stdout, one line "clipped N" per window on stderr.
#include <cstdio>
#include <vector>
#include "ecgedge_model.h"

int main(int argc, char **argv) {
#if ECG_MODEL_INPUT_SIZE == ECG_MODEL_WINDOW_SAMPLES
    std::vector<float> mv(ECG_MODEL_WINDOW_SAMPLES);
    float out[ECG_MODEL_OUTPUT_SIZE];
    std::FILE *f = argc == 2 ? std::fopen(argv[1], "rb") : nullptr;
    if (f == nullptr) {
        std::fprintf(stderr, "usage: run_mv WINDOWS.f32 (%d float32 values per window, mV)\n",
                     ECG_MODEL_WINDOW_SAMPLES);
        return 2;
    }
    std::size_t windows = 0;
    while (std::fread(mv.data(), sizeof(float), mv.size(), f) == mv.size()) {
        const int clipped = ecg_model_run_mv(mv.data(), out);
        std::fprintf(stderr, "clipped %d\n", clipped);
        std::fwrite(out, sizeof(float), ECG_MODEL_OUTPUT_SIZE, stdout);
        ++windows;
    }
    std::fclose(f);
    return windows ? 0 : 2;
#else
    (void)argc; (void)argv;
    std::fprintf(stderr, "run_mv: this model's input is not one window of samples\n");
    return 2;
#endif
}
