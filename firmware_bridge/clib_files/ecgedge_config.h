/* ecgedge model library: build options. CMake, the Makefile and Zephyr's Kconfig set them with -D
 * flags; the Arduino IDE has no per-library flags, so edit this file there. See README.md. */
#ifndef ECGEDGE_CONFIG_H
#define ECGEDGE_CONFIG_H

/* Kernels. Default: the optimised path (ARMv7E-M / ARMv8-M DSP instructions where the core has
 * them, the same integer arithmetic in portable C elsewhere). ECG_REFERENCE: the plain reference
 * loops (slower, same outputs). */
#if !defined(ECG_REFERENCE) && !defined(ECG_OPTIMIZED)
#define ECG_OPTIMIZED 1
#endif
#if defined(ECG_REFERENCE) && defined(ECG_OPTIMIZED)
#error "define ECG_REFERENCE or ECG_OPTIMIZED, not both"
#endif

/* Tensor arena (ECG_MODEL_ARENA_BYTES, 16-byte aligned). Default: a static array in .bss.
 *   ECG_ARENA_ATTR=__attribute__((section(".dtcm_bss")))  our array, with these attributes
 *                                                        (a linker section: DTCM, a no-init region)
 *   ECG_ARENA_SYMBOL=my_arena   your own `int8_t my_arena[]` (at least ECG_MODEL_ARENA_BYTES,
 *                               16-byte aligned), or a symbol your linker script defines */
/* #define ECG_ARENA_SYMBOL my_arena */

#endif
