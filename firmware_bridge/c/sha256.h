#ifndef ECG_SHA256_H
#define ECG_SHA256_H
#include <stdint.h>
#include <stddef.h>
void ecg_sha256(const uint8_t *data, size_t n, uint8_t digest[32]);
#endif
