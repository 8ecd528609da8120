/* Real-board firmware, common part: vector table and reset, the cycle counter (DWT), the time base,
 * the protocol link on the probe's virtual COM port and the main loop (firmware_bridge/c/app.c).
 *
 * Latency is counted in core cycles by the DWT cycle counter (ARMv7-M/ARMv8-M ARM ARM: DEMCR.TRCENA,
 * DWT_CTRL.CYCCNTENA, DWT_CYCCNT) and reported in RESULT as counter kind 2 (cycles). SysTick (core
 * clock, 24 bits) interrupts every 2^24 cycles to extend the 32-bit counter, so long inferences do not
 * wrap. Where DWT_CYCCNT does not count (QEMU models no DWT) the firmware says so: counter kind 0 (none),
 * and SysTick alone is the time base. */
#include <stdint.h>
#include <string.h>
#include "board.h"
#include "ecg_hal.h"
#include "app.h"
#include "protocol.h"

/* System control space (ARMv7-M / ARMv8-M architecture reference manual) */
#define SCB_VTOR REG32(0xE000ED08u)
#define SCB_CPACR REG32(0xE000ED88u)
#define SYST_CSR REG32(0xE000E010u)       /* ENABLE bit0, TICKINT bit1, CLKSOURCE bit2 (1 = core clock) */
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define DEMCR REG32(0xE000EDFCu)          /* TRCENA bit24 */
#define DWT_CTRL REG32(0xE0001000u)       /* CYCCNTENA bit0 */
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR REG32(0xE0001FB0u)        /* Cortex-M7: software lock access (0xC5ACCE55 unlocks) */

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sarena, _earena, _estack;
int main(void);
void Reset_Handler(void);
void SysTick_Handler(void);

static void Default_Handler(void) {
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) void (*const ecg_board_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    SysTick_Handler};

static uint32_t core_hz, uart_hz;
static const char *clock_note;
static int dwt_counts;
static uint64_t cycles;          /* core cycles since boot (DWT, or SysTick where DWT does not count) */
static uint32_t last_raw;

void Reset_Handler(void) {
    SCB_CPACR |= 0xFu << 20;                 /* FPU: full access for CP10/CP11 */
    __asm__ volatile("dsb\n isb" ::: "memory");
    const char *note = "";
    uint32_t u = 0;
    uint32_t hz = board_clock_init(&note, &u);   /* before the copy: flash wait states first */
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    for (dst = &_sarena; dst < &_earena;) *dst++ = 0;
    core_hz = hz;
    uart_hz = u;
    clock_note = note;
    SCB_VTOR = ECG_BOARD_FLASH_ORIGIN;
    main();
    for (;;) {
    }
}

static uint32_t raw_count(void) {
    return dwt_counts ? DWT_CYCCNT : (0xFFFFFFu - SYST_CVR) & 0xFFFFFFu;
}

static uint64_t now_cycles(void) {
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(primask) :: "memory");
    uint32_t r = raw_count();
    cycles += (r - last_raw) & (dwt_counts ? 0xFFFFFFFFu : 0xFFFFFFu);
    last_raw = r;
    uint64_t c = cycles;
    __asm__ volatile("msr primask, %0" :: "r"(primask) : "memory");
    return c;
}

void SysTick_Handler(void) { (void)now_cycles(); }

void ecg_hal_init(void) {
    DEMCR |= 1u << 24;
    DWT_LAR = 0xC5ACCE55u;
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    uint32_t a = DWT_CYCCNT;
    for (volatile int i = 0; i < 64; ++i) {
    }
    dwt_counts = DWT_CYCCNT != a;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u;                           /* core clock, interrupt on wrap, enable */
    last_raw = raw_count();
    board_uart_init(uart_hz, ECG_BOARD_BAUD);
}

int ecg_hal_getc(void) { return board_uart_getc(); }
void ecg_hal_write(const uint8_t *d, size_t n) { board_uart_write(d, (uint32_t)n); }
uint64_t ecg_hal_counter(void) { return dwt_counts ? now_cycles() : 0; }
uint64_t ecg_hal_time_us(void) { return now_cycles() / (core_hz / 1000000u); }

/* INFO's name and counter kind (app.c, ECG_BOARD_INFO) */
uint8_t ecg_board_counter_kind(void) { return dwt_counts ? ECG_COUNTER_CYCLES : ECG_COUNTER_NONE; }

const char *ecg_board_name(void) {
    static char name[160];
    if (!name[0]) {
        char hz[12];
        uint32_t mhz = core_hz / 1000000u, k = 0;
        char tmp[12];
        do { tmp[k++] = (char)('0' + mhz % 10u); mhz /= 10u; } while (mhz && k < sizeof tmp);
        for (uint32_t j = 0; j < k; ++j) hz[j] = tmp[k - 1 - j];
        hz[k] = 0;
        strcpy(name, ECG_FW_NAME " ");
        strcat(name, hz);
        strcat(name, " MHz ");
        strncat(name, clock_note, sizeof name - strlen(name) - 16);
        strcat(name, dwt_counts ? ", DWT" : ", no DWT");
    }
    return name;
}

int main(void) {
    ecg_hal_init();
    ecg_app_init();
    for (;;) {
        int c = ecg_hal_getc();
        if (c >= 0) ecg_app_rx((uint8_t)c);
        else ecg_app_poll();
    }
}
