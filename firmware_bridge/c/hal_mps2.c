/* mps2-an500 board support: CMSDK UART0 (protocol link) and dual timer 1 (free-running 25 MHz).
 * Under `qemu -icount shift=0` one instruction advances virtual time by 1 ns, so one 25 MHz timer
 * tick is 40 instructions: ecg_hal_counter() returns instructions to within +-40. */
#include "ecg_hal.h"
#include "app.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x0))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x4))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x8))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10))
#define TIMER_BASE 0x40002000u
#define TIMER1_LOAD (*(volatile uint32_t *)(TIMER_BASE + 0x0))
#define TIMER1_VALUE (*(volatile uint32_t *)(TIMER_BASE + 0x4))
#define TIMER1_CTRL (*(volatile uint32_t *)(TIMER_BASE + 0x8))
#define TIMER_HZ 25000000u
#define INSTR_PER_TICK 40u

static uint32_t last_value;
static uint64_t ticks;

void ecg_hal_init(void) {
    UART_BAUDDIV = 16;
    UART_CTRL = 3;               /* TX and RX enable */
    TIMER1_LOAD = 0xFFFFFFFFu;
    TIMER1_CTRL = 0x82;          /* enable, 32-bit, free-running, no interrupt, prescale 1 */
    last_value = TIMER1_VALUE;
}

static uint64_t timer_ticks(void) {
    uint32_t v = TIMER1_VALUE;
    ticks += (uint32_t)(last_value - v);   /* down-counter */
    last_value = v;
    return ticks;
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

uint64_t ecg_hal_counter(void) { return timer_ticks() * INSTR_PER_TICK; }
uint64_t ecg_hal_time_us(void) { return timer_ticks() / (TIMER_HZ / 1000000u); }

int main(void) {
    ecg_hal_init();
    ecg_app_init();
    for (;;) {
        int c = ecg_hal_getc();
        if (c >= 0) ecg_app_rx((uint8_t)c);
        else ecg_app_poll();
    }
}
