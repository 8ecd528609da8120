/* UART of the MPS2/MPS3 boards (an385, an386, an500, an505, an547): CMSDK APB UART0 at ECG_UART_BASE
 * (cores.toml). DATA +0x0, STATE +0x4 (bit 0 TX full, bit 1 RX full), CTRL +0x8, BAUDDIV +0x10. */
#include "ecg_hal.h"

#define UART_DATA (*(volatile uint32_t *)(ECG_UART_BASE + 0x0u))
#define UART_STATE (*(volatile uint32_t *)(ECG_UART_BASE + 0x4u))
#define UART_CTRL (*(volatile uint32_t *)(ECG_UART_BASE + 0x8u))
#define UART_BAUDDIV (*(volatile uint32_t *)(ECG_UART_BASE + 0x10u))

void ecg_hal_init(void) {
    UART_BAUDDIV = 16;
    UART_CTRL = 3;               /* TX and RX enable */
}

int ecg_hal_getc(void) {
    if (UART_STATE & 2u) return (int)(UART_DATA & 0xFFu);
    return -1;
}

void ecg_hal_write(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (UART_STATE & 1u) { }
        UART_DATA = d[i];
    }
}
