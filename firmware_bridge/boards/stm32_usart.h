/* The STM32 USART/LPUART block of the H7, L4+ and U5 families (one register layout: RM0433 48.7,
 * RM0432 50.8 / 51.7, RM0456 68.8): CR1, BRR, ISR, ICR, RDR, TDR. 8N1, no FIFO, polled. */
#ifndef ECG_STM32_USART_H
#define ECG_STM32_USART_H
#include "board.h"

#define USART_CR1(b) REG32((b) + 0x00u)   /* UE 0, RE 2, TE 3 */
#define USART_BRR(b) REG32((b) + 0x0Cu)
#define USART_ISR(b) REG32((b) + 0x1Cu)   /* ORE 3, RXNE 5, TXE 7 */
#define USART_ICR(b) REG32((b) + 0x20u)   /* ORECF 3 */
#define USART_RDR(b) REG32((b) + 0x24u)
#define USART_TDR(b) REG32((b) + 0x28u)

static inline void stm32_usart_enable(uint32_t base, uint32_t brr) {
    USART_CR1(base) = 0;
    USART_BRR(base) = brr;
    USART_CR1(base) = (1u << 3) | (1u << 2) | 1u;     /* TE, RE, UE */
}

static inline int stm32_usart_getc(uint32_t base) {
    const uint32_t isr = USART_ISR(base);
    if (isr & (1u << 5)) return (int)(USART_RDR(base) & 0xFFu);
    if (isr & (1u << 3)) USART_ICR(base) = 1u << 3;   /* overrun: clear ORE (the frame's CRC reports the loss) */
    return -1;
}

static inline void stm32_usart_write(uint32_t base, const uint8_t *d, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
        while (!(USART_ISR(base) & (1u << 7))) {
        }
        USART_TDR(base) = d[i];
    }
}
#endif
