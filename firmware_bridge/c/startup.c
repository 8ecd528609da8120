/* Startup for every Cortex-M core the engine builds for (ARMv6-M to ARMv8.1-M): vector table,
 * .data copy, .bss zero, FPU / Helium (MVE) access on cores that have them, then main(). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void Reset_Handler(void);

static void Default_Handler(void) {
    for (;;) { }
}

/* hal_common.c extends the 24-bit SysTick counter; harnesses without the HAL (verify_main.c) never start it */
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

__attribute__((section(".vectors"), used)) void (*const ecg_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    SysTick_Handler};

void Reset_Handler(void) {
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* CP10/CP11 full access: the FPU, and on ARMv8.1-M the MVE (Helium) registers behind it */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    uint32_t *src = &_sidata, *dst = &_sdata;
    if (src != dst)
        while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    main();
    for (;;) { }
}
