/* Minimal Cortex-M7 startup for QEMU mps2-an500: vector table, .data copy, .bss zero, FPU on. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void Reset_Handler(void);

static void Default_Handler(void) {
    for (;;) { }
}

__attribute__((section(".vectors"), used)) void (*const ecg_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    Default_Handler};

void Reset_Handler(void) {
    /* FPU: full access for CP10/CP11 */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
    uint32_t *src = &_sidata, *dst = &_sdata;
    if (src != dst)
        while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    main();
    for (;;) { }
}
