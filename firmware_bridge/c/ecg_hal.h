/* What the firmware app needs from a board (or the host build). */
#ifndef ECG_HAL_H
#define ECG_HAL_H
#include <stdint.h>
#include <stddef.h>
void ecg_hal_init(void);
int ecg_hal_getc(void);                       /* -1 when no byte is waiting */
void ecg_hal_write(const uint8_t *data, size_t n);
uint64_t ecg_hal_counter(void);               /* in units of ECG_COUNTER_KIND (see app.c) */
uint64_t ecg_hal_time_us(void);
void ecg_hal_counter_start(void);              /* hal_common.c: start the SysTick counter */
#endif
