#ifndef ECG_APP_H
#define ECG_APP_H
#include <stdint.h>
void ecg_app_init(void);
void ecg_app_rx(uint8_t byte);   /* one received byte */
void ecg_app_poll(void);         /* streaming work when idle */
int ecg_app_model_ok(void);
#endif
