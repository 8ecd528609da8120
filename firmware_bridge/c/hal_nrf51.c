/* UART of the BBC micro:bit (nRF51822, QEMU `microbit`): nRF51 UART0 at ECG_UART_BASE (cores.toml).
 * Tasks STARTRX +0x000, STARTTX +0x008; events RXDRDY +0x108, TXDRDY +0x11C; ENABLE +0x500 (4);
 * RXD +0x518, TXD +0x51C. */
#include "ecg_hal.h"

#define REG(off) (*(volatile uint32_t *)(ECG_UART_BASE + (off)))
#define TASKS_STARTRX REG(0x000u)
#define TASKS_STARTTX REG(0x008u)
#define EVENTS_RXDRDY REG(0x108u)
#define EVENTS_TXDRDY REG(0x11Cu)
#define UART_ENABLE REG(0x500u)
#define UART_RXD REG(0x518u)
#define UART_TXD REG(0x51Cu)

void ecg_hal_init(void) {
    UART_ENABLE = 4;
    TASKS_STARTRX = 1;
    TASKS_STARTTX = 1;
}

int ecg_hal_getc(void) {
    if (!EVENTS_RXDRDY) return -1;
    EVENTS_RXDRDY = 0;
    return (int)(UART_RXD & 0xFFu);
}

void ecg_hal_write(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        EVENTS_TXDRDY = 0;
        UART_TXD = d[i];
        while (!EVENTS_TXDRDY) { }
    }
}
