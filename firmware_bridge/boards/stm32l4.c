/* NUCLEO-L4R5ZI (STM32L4R5ZI, Cortex-M4F): 120 MHz in range 1 boost mode from MSI 4 MHz through the main
 * PLL, LPUART1 on the ST-LINK/V2-1 virtual COM port (PG7 TX, PG8 RX, AF8; port G[15:2] is on VDDIO2, which
 * must be declared valid). Register names: RM0432 (STM32L4+ reference manual).
 * PLL: PLLSRC MSI, PLLM /1, PLLN 60 -> VCO 240 MHz, PLLR /2 -> 120 MHz; flash 5 wait states. Entering
 * boost mode (PWR_CR5.R1MODE = 0) above 80 MHz goes through AHB /2 for the first microsecond (RM0432 5.1.8).
 * When the PLL does not lock the core stays on MSI 4 MHz and says so in INFO. */
#include "board.h"
#include "stm32_usart.h"

#define RCC 0x40021000u
#define RCC_CR REG32(RCC + 0x00u)          /* MSION 0, MSIRDY 1, PLLON 24, PLLRDY 25 */
#define RCC_CFGR REG32(RCC + 0x08u)        /* SW 1:0 (3 = PLL), SWS 3:2, HPRE 7:4, PPRE1 10:8, PPRE2 13:11 */
#define RCC_PLLCFGR REG32(RCC + 0x0Cu)     /* PLLSRC 1:0 (1 = MSI), PLLM 7:4, PLLN 14:8, PLLREN 24, PLLR 26:25 */
#define RCC_AHB2ENR REG32(RCC + 0x4Cu)     /* GPIOGEN 6 */
#define RCC_APB1ENR1 REG32(RCC + 0x58u)    /* PWREN 28 */
#define RCC_APB1ENR2 REG32(RCC + 0x5Cu)    /* LPUART1EN 0 */
#define RCC_CCIPR REG32(RCC + 0x88u)       /* LPUART1SEL 11:10 (0 = PCLK1) */
#define PWR 0x40007000u
#define PWR_CR1 REG32(PWR + 0x00u)         /* VOS 10:9 (1 = range 1) */
#define PWR_CR2 REG32(PWR + 0x04u)         /* IOSV 9: VDDIO2 valid */
#define PWR_SR2 (PWR + 0x14u)              /* VOSF 10 */
#define PWR_CR5 REG32(PWR + 0x80u)         /* R1MODE 8 (0 = boost) */
#define FLASH_ACR REG32(0x40022000u)       /* LATENCY 3:0, PRFTEN 8, ICEN 9, DCEN 10 */
#define GPIOG 0x48001800u
#define GPIOG_MODER REG32(GPIOG + 0x00u)
#define GPIOG_OSPEEDR REG32(GPIOG + 0x08u)
#define GPIOG_AFRL REG32(GPIOG + 0x20u)
#define GPIOG_AFRH REG32(GPIOG + 0x24u)
#define LPUART1 0x40008000u

uint32_t board_clock_init(const char **note, uint32_t *uart_hz) {
    RCC_APB1ENR1 |= 1u << 28;                          /* PWREN */
    (void)RCC_APB1ENR1;
    PWR_CR1 = (PWR_CR1 & ~(3u << 9)) | (1u << 9);      /* range 1 */
    board_wait(PWR_SR2, 1u << 10, 0, BOARD_TIMEOUT);
    PWR_CR2 |= 1u << 9;                                /* IOSV: PG2..PG15 usable */
    board_wait(RCC + 0x00u, 1u << 1, 1u << 1, BOARD_TIMEOUT);   /* MSI (4 MHz after reset) */
    RCC_CR &= ~(1u << 24);
    board_wait(RCC + 0x00u, 1u << 25, 0, BOARD_TIMEOUT);
    RCC_PLLCFGR = 1u | (0u << 4) | (60u << 8) | (1u << 24) | (0u << 25);   /* MSI, M /1, N 60, R /2 on */
    RCC_CR |= 1u << 24;
    if (!board_wait(RCC + 0x00u, 1u << 25, 1u << 25, BOARD_TIMEOUT)) {
        RCC_CR &= ~(1u << 24);
        *note = "MSI (PLL did not lock)";
        *uart_hz = 4000000u;
        return 4000000u;
    }
    PWR_CR5 &= ~(1u << 8);                             /* boost mode */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10);   /* 5 wait states at 120 MHz (RM0432 table 12) */
    board_wait(0x40022000u, 0xFu, 5u, BOARD_TIMEOUT);
    RCC_CFGR = (RCC_CFGR & ~(0xFu << 4)) | (8u << 4);  /* AHB /2 for the switch */
    RCC_CFGR = (RCC_CFGR & ~3u) | 3u;                  /* SW = PLL */
    board_wait(RCC + 0x08u, 3u << 2, 3u << 2, BOARD_TIMEOUT);
    for (volatile uint32_t i = 0; i < 200u; ++i) {     /* > 1 us at 60 MHz */
    }
    RCC_CFGR &= ~(0xFu << 4);                          /* AHB /1; APB1, APB2 /1 */
    *note = "MSI, PLL, boost mode";
    *uart_hz = 120000000u;
    return 120000000u;
}

void board_uart_init(uint32_t hz, uint32_t baud) {
    RCC_AHB2ENR |= 1u << 6;                            /* GPIOGEN */
    RCC_APB1ENR2 |= 1u;                                /* LPUART1EN */
    RCC_CCIPR &= ~(3u << 10);                          /* LPUART1SEL = PCLK1 */
    (void)RCC_APB1ENR2;
    GPIOG_MODER = (GPIOG_MODER & ~(0xFu << 14)) | (0xAu << 14);       /* PG7, PG8: alternate function */
    GPIOG_OSPEEDR |= 0xFu << 14;
    GPIOG_AFRL = (GPIOG_AFRL & ~(0xFu << 28)) | (8u << 28);           /* PG7 AF8 */
    GPIOG_AFRH = (GPIOG_AFRH & ~0xFu) | 8u;                           /* PG8 AF8 */
    stm32_usart_enable(LPUART1, (uint32_t)(((uint64_t)hz * 256u + baud / 2u) / baud));   /* LPUART: 256 x fck / baud */
}

int board_uart_getc(void) { return stm32_usart_getc(LPUART1); }

void board_uart_write(const uint8_t *d, uint32_t n) { stm32_usart_write(LPUART1, d, n); }
