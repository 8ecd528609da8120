/* Real-board firmware: what one board file (stm32f4.c, stm32h7.c, ...) provides to board.c.
 * Register-level, no vendor HAL: register and bit names follow each chip's reference manual. */
#ifndef ECG_BOARD_H
#define ECG_BOARD_H
#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* The clock tree: returns the core clock reached in Hz (the board falls back to its reset clock when an
 * oscillator or PLL does not come up in time) and a short note on how it got there. Sets *uart_hz to the
 * UART's kernel clock. Called once from Reset_Handler, before .data/.bss are set up: no globals here. */
uint32_t board_clock_init(const char **note, uint32_t *uart_hz);
/* Pins and the UART on the debug probe's virtual COM port, 8N1 */
void board_uart_init(uint32_t uart_hz, uint32_t baud);
int board_uart_getc(void);            /* -1 when no byte is waiting */
void board_uart_write(const uint8_t *d, uint32_t n);

/* busy-wait until (REG32(addr) & mask) == want; 1 when it happened, 0 after `tries` reads */
static inline int board_wait(uint32_t addr, uint32_t mask, uint32_t want, uint32_t tries) {
    while (tries--) {
        if ((REG32(addr) & mask) == want) return 1;
    }
    return 0;
}
#define BOARD_TIMEOUT 200000u     /* status polls before a clock source counts as failed (ms at reset clocks) */

/* filled in by the build (firmware_bridge/board_firmware.py) */
#ifndef ECG_BOARD_NAME
#define ECG_BOARD_NAME "board"
#endif
#ifndef ECG_BOARD_BAUD
#define ECG_BOARD_BAUD 115200u
#endif
#ifndef ECG_BOARD_FLASH_ORIGIN
#define ECG_BOARD_FLASH_ORIGIN 0x08000000u
#endif
#endif
