/* Board-independent part of the HAL: the instruction counter (SysTick) and main().
 * SysTick runs from the processor clock (ECG_SYSTICK_HZ, from the machine's row in cores.toml); its
 * 24-bit down-counter is extended to 64 bits by counting wraps in the interrupt. Under
 * `qemu -icount shift=0` one instruction advances virtual time by 1 ns, so one tick is
 * 1e9 / ECG_SYSTICK_HZ = ECG_TICK_NUM / ECG_TICK_DEN instructions: ecg_hal_counter() returns
 * instructions to within one tick. */
#include "ecg_hal.h"
#include "app.h"

#ifndef ECG_SYSTICK_HZ
#error "ECG_SYSTICK_HZ (the machine's SysTick clock) must be defined by the build"
#endif
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define SYST_RELOAD 0xFFFFFFu

static volatile uint32_t wraps;

void SysTick_Handler(void) { wraps++; }

void ecg_hal_counter_start(void) {
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7;   /* processor clock, interrupt on wrap, enabled */
}

static uint64_t ticks(void) {
    uint32_t w, v, again;
    int pending;
    do {
        w = wraps;
        v = SYST_CVR;
        pending = (SCB_ICSR & ICSR_PENDSTSET) != 0;
        again = wraps;
    } while (w != again);
    /* wrapped, interrupt not taken yet: the counter was just reloaded (upper half) */
    if (pending && v > SYST_RELOAD / 2) w++;
    return (uint64_t)w * (SYST_RELOAD + 1u) + (SYST_RELOAD - v);
}

uint64_t ecg_hal_counter(void) { return ticks() * ECG_TICK_NUM / ECG_TICK_DEN; }
uint64_t ecg_hal_time_us(void) { return ticks() / (ECG_SYSTICK_HZ / 1000000u); }

int main(void) {
    ecg_hal_init();
    ecg_hal_counter_start();
    ecg_app_init();
    for (;;) {
        int c = ecg_hal_getc();
        if (c >= 0) ecg_app_rx((uint8_t)c);
        else ecg_app_poll();
    }
}
