/* NUCLEO-F446RE (STM32F446RE, Cortex-M4F): 180 MHz from the PLL, USART2 on the ST-LINK/V2-1 virtual COM
 * port (PA2 TX, PA3 RX, AF7). Register names: RM0390 (STM32F446xx reference manual).
 *
 * Clock tree with fallbacks, each wait bounded: HSE in bypass (the ST-LINK's 8 MHz MCO) else HSI 16 MHz
 * as the PLL input; PLL at 360 MHz VCO / 2 = 180 MHz with the regulator's over-drive (RM0390 5.1.4), or
 * 168 MHz when over-drive does not come up, or no PLL at all (HSI, 16 MHz) when it does not lock.
 * QEMU's netduinoplus2 (STM32F405) models none of RCC, PWR or the flash interface (reads as 0): there the
 * firmware takes the last fallback and says so in INFO; the USART block is the same. */
#include "board.h"

#define RCC 0x40023800u
#define RCC_CR REG32(RCC + 0x00u)          /* HSION 0, HSIRDY 1, HSEON 16, HSERDY 17, HSEBYP 18, PLLON 24, PLLRDY 25 */
#define RCC_PLLCFGR REG32(RCC + 0x04u)     /* PLLM 5:0, PLLN 14:6, PLLP 17:16, PLLSRC 22, PLLQ 27:24, PLLR 30:28 */
#define RCC_CFGR REG32(RCC + 0x08u)        /* SW 1:0, SWS 3:2, HPRE 7:4, PPRE1 12:10, PPRE2 15:13 */
#define RCC_AHB1ENR REG32(RCC + 0x30u)     /* GPIOAEN 0 */
#define RCC_APB1ENR REG32(RCC + 0x40u)     /* USART2EN 17, PWREN 28 */
#define PWR_CR REG32(0x40007000u)          /* VOS 15:14, ODEN 16, ODSWEN 17 */
#define PWR_CSR (0x40007004u)              /* ODRDY 16, ODSWRDY 17 */
#define FLASH_ACR REG32(0x40023C00u)       /* LATENCY 3:0, PRFTEN 8, ICEN 9, DCEN 10 */
#define GPIOA 0x40020000u
#define GPIOA_MODER REG32(GPIOA + 0x00u)
#define GPIOA_OSPEEDR REG32(GPIOA + 0x08u)
#define GPIOA_PUPDR REG32(GPIOA + 0x0Cu)
#define GPIOA_AFRL REG32(GPIOA + 0x20u)
#define USART2 0x40004400u
#define USART2_SR REG32(USART2 + 0x00u)    /* ORE 3, RXNE 5, TXE 7 */
#define USART2_DR REG32(USART2 + 0x04u)
#define USART2_BRR REG32(USART2 + 0x08u)
#define USART2_CR1 REG32(USART2 + 0x0Cu)   /* RE 2, TE 3, UE 13 */

static uint32_t pll_cfg(uint32_t m, uint32_t n, int hse) {
    /* PLLP = 00 (/2), PLLQ = 8 (USB/SDIO unused), PLLR = 2 (reset value, I2S/SAI unused) */
    return m | (n << 6) | (0u << 16) | ((hse ? 1u : 0u) << 22) | (8u << 24) | (2u << 28);
}

uint32_t board_clock_init(const char **note, uint32_t *uart_hz) {
    RCC_CR |= 1u;                                            /* HSION (on after reset) */
    board_wait(RCC + 0x00u, 1u << 1, 1u << 1, BOARD_TIMEOUT);
    RCC_CR |= (1u << 18) | (1u << 16);                       /* HSEBYP + HSEON: the ST-LINK's MCO */
    const int hse = board_wait(RCC + 0x00u, 1u << 17, 1u << 17, BOARD_TIMEOUT);
    if (!hse) RCC_CR &= ~((1u << 16) | (1u << 18));
    const uint32_t pll_in_div = hse ? 4u : 8u;               /* 2 MHz at the VCO input */
    RCC_APB1ENR |= 1u << 28;                                 /* PWREN */
    PWR_CR = (PWR_CR & ~(3u << 14)) | (3u << 14);            /* VOS = scale 1 */
    RCC_CR &= ~(1u << 24);
    RCC_PLLCFGR = pll_cfg(pll_in_div, 180u, hse);
    RCC_CR |= 1u << 24;                                      /* PLLON */
    PWR_CR |= 1u << 16;                                      /* ODEN, then ODSWEN (RM0390 5.1.4) */
    int od = board_wait(PWR_CSR, 1u << 16, 1u << 16, BOARD_TIMEOUT);
    if (od) {
        PWR_CR |= 1u << 17;
        od = board_wait(PWR_CSR, 1u << 17, 1u << 17, BOARD_TIMEOUT);
    }
    uint32_t target = 180000000u;
    if (!od) {                                               /* no over-drive: 168 MHz is the limit */
        PWR_CR &= ~((1u << 16) | (1u << 17));
        RCC_CR &= ~(1u << 24);
        board_wait(RCC + 0x00u, 1u << 25, 0, BOARD_TIMEOUT);
        RCC_PLLCFGR = pll_cfg(pll_in_div, 168u, hse);
        RCC_CR |= 1u << 24;
        target = 168000000u;
    }
    const uint32_t src_hz = hse ? 8000000u : 16000000u;
    if (!board_wait(RCC + 0x00u, 1u << 25, 1u << 25, BOARD_TIMEOUT)) {   /* PLL did not lock */
        RCC_CR &= ~(1u << 24);
        RCC_CFGR = (RCC_CFGR & ~3u) | (hse ? 1u : 0u);       /* SW: HSE or HSI directly */
        *note = hse ? "HSE bypass (PLL did not lock)" : "HSI (HSE and PLL did not start)";
        *uart_hz = src_hz;
        return src_hz;
    }
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10);     /* 5 wait states (RM0390 table 5), prefetch, caches */
    board_wait(0x40023C00u, 0xFu, 5u, BOARD_TIMEOUT);
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) | (0u << 4) | (5u << 10) | (4u << 13);
    RCC_CFGR = (RCC_CFGR & ~3u) | 2u;                        /* SW = PLL; AHB /1, APB1 /4, APB2 /2 */
    board_wait(RCC + 0x08u, 3u << 2, 2u << 2, BOARD_TIMEOUT);
    *note = hse ? (od ? "HSE bypass, PLL, over-drive" : "HSE bypass, PLL, no over-drive")
                : (od ? "HSI, PLL, over-drive (no HSE)" : "HSI, PLL, no over-drive (no HSE)");
    *uart_hz = target / 4u;                                  /* USART2 is on APB1 */
    return target;
}

void board_uart_init(uint32_t hz, uint32_t baud) {
    RCC_AHB1ENR |= 1u;                                       /* GPIOAEN */
    RCC_APB1ENR |= 1u << 17;                                 /* USART2EN */
    (void)RCC_APB1ENR;
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);        /* PA2, PA3: alternate function */
    GPIOA_OSPEEDR |= 0xFu << 4;
    GPIOA_PUPDR = (GPIOA_PUPDR & ~(0xFu << 4)) | (0x4u << 4);        /* pull-up on RX (PA3) */
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);        /* AF7 = USART2 */
    USART2_CR1 = 0;
    USART2_BRR = (hz + baud / 2u) / baud;                    /* OVER8 = 0: BRR = USARTDIV x 16 */
    USART2_CR1 = (1u << 13) | (1u << 3) | (1u << 2);         /* UE, TE, RE; 8N1 */
}

int board_uart_getc(void) {
    uint32_t sr = USART2_SR;
    if (sr & (1u << 5)) return (int)(USART2_DR & 0xFFu);     /* RXNE */
    if (sr & (1u << 3)) (void)USART2_DR;                     /* ORE: SR then DR read clears it */
    return -1;
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
        while (!(USART2_SR & (1u << 7))) {                   /* TXE */
        }
        USART2_DR = d[i];
    }
}
