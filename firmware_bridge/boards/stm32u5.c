/* B-U585I-IOT02A (STM32U585AI, Cortex-M33, TrustZone disabled as shipped): 160 MHz in voltage range 1 from
 * MSIS 4 MHz through PLL1 with the EPOD booster, the instruction cache on, USART1 on the STLINK-V3E virtual
 * COM port (PA9 TX, PA10 RX, AF7). Register names: RM0456 (STM32U5 reference manual); non-secure aliases.
 * PLL1: PLL1SRC MSIS, PLL1M /1 (PLL1RGE 4-8 MHz, MBOOST /1), PLL1N 80 -> VCO 320 MHz, PLL1R /2 -> 160 MHz;
 * flash 4 wait states. When the booster or PLL1 does not come up the core stays on MSIS 4 MHz and says so. */
#include "board.h"
#include "stm32_usart.h"

#define RCC 0x46020C00u
#define RCC_CR REG32(RCC + 0x000u)         /* MSISON 0, MSISRDY 2, PLL1ON 24, PLL1RDY 25 */
#define RCC_CFGR1 REG32(RCC + 0x01Cu)      /* SW 1:0 (3 = PLL1), SWS 3:2 */
#define RCC_CFGR2 REG32(RCC + 0x020u)      /* HPRE 3:0, PPRE1 6:4, PPRE2 10:8 */
#define RCC_PLL1CFGR REG32(RCC + 0x028u)   /* PLL1SRC 1:0 (1 = MSIS), PLL1RGE 3:2, PLL1M 11:8, PLL1MBOOST 15:12, PLL1REN 18 */
#define RCC_PLL1DIVR REG32(RCC + 0x034u)   /* PLL1N 8:0 (N-1), PLL1P 15:9, PLL1Q 22:16, PLL1R 30:24 */
#define RCC_AHB2ENR1 REG32(RCC + 0x08Cu)   /* GPIOAEN 0 */
#define RCC_AHB3ENR REG32(RCC + 0x094u)    /* PWREN 2 */
#define RCC_APB2ENR REG32(RCC + 0x0A4u)    /* USART1EN 14 */
#define RCC_CCIPR1 REG32(RCC + 0x0E0u)     /* USART1SEL 1:0 (0 = PCLK2) */
#define PWR_VOSR_ADDR (0x46020800u + 0x00Cu)
#define PWR_VOSR REG32(PWR_VOSR_ADDR)      /* BOOSTRDY 14, VOSRDY 15, VOS 17:16 (3 = range 1), BOOSTEN 18 */
#define FLASH_ACR REG32(0x40022000u)       /* LATENCY 3:0, PRFTEN 8 */
#define ICACHE_CR REG32(0x40030400u)       /* EN 0 */
#define GPIOA 0x42020000u
#define GPIOA_MODER REG32(GPIOA + 0x00u)
#define GPIOA_OSPEEDR REG32(GPIOA + 0x08u)
#define GPIOA_AFRH REG32(GPIOA + 0x24u)
#define USART1 0x40013800u

uint32_t board_clock_init(const char **note, uint32_t *uart_hz) {
    RCC_AHB3ENR |= 1u << 2;                            /* PWREN */
    (void)RCC_AHB3ENR;
    PWR_VOSR = (PWR_VOSR & ~(3u << 16)) | (3u << 16);  /* range 1 */
    board_wait(PWR_VOSR_ADDR, 1u << 15, 1u << 15, BOARD_TIMEOUT);
    PWR_VOSR |= 1u << 18;                              /* BOOSTEN: EPOD booster for PLL1 above 55 MHz */
    const int boost = board_wait(PWR_VOSR_ADDR, 1u << 14, 1u << 14, BOARD_TIMEOUT);
    board_wait(RCC + 0x000u, 1u << 2, 1u << 2, BOARD_TIMEOUT);  /* MSIS 4 MHz (reset range) */
    RCC_CR &= ~(1u << 24);
    board_wait(RCC + 0x000u, 1u << 25, 0, BOARD_TIMEOUT);
    RCC_PLL1CFGR = 1u | (0u << 2) | (0u << 8) | (0u << 12) | (1u << 18);   /* MSIS, 4-8 MHz, M /1, R on */
    RCC_PLL1DIVR = (80u - 1u) | (1u << 9) | (1u << 16) | (1u << 24);       /* N 80, P = Q = R = 2 */
    RCC_CR |= 1u << 24;
    if (!boost || !board_wait(RCC + 0x000u, 1u << 25, 1u << 25, BOARD_TIMEOUT)) {
        RCC_CR &= ~(1u << 24);
        *note = boost ? "MSIS (PLL1 did not lock)" : "MSIS (EPOD booster not ready)";
        *uart_hz = 4000000u;
        ICACHE_CR |= 1u;
        return 4000000u;
    }
    FLASH_ACR = 4u | (1u << 8);                        /* 4 wait states at 160 MHz, range 1 (RM0456 table 54) */
    board_wait(0x40022000u, 0xFu, 4u, BOARD_TIMEOUT);
    RCC_CFGR2 = (RCC_CFGR2 & ~0xFu) | 8u;              /* AHB /2 across the switch above 80 MHz */
    RCC_CFGR1 = (RCC_CFGR1 & ~3u) | 3u;                /* SW = PLL1 */
    board_wait(RCC + 0x01Cu, 3u << 2, 3u << 2, BOARD_TIMEOUT);
    for (volatile uint32_t i = 0; i < 200u; ++i) {     /* > 1 us */
    }
    RCC_CFGR2 &= ~(0xFu | (7u << 4) | (7u << 8));      /* AHB, APB1, APB2 /1 */
    ICACHE_CR |= 1u;                                   /* instruction cache on */
    *note = "MSIS, PLL1, EPOD boost, ICACHE on";
    *uart_hz = 160000000u;
    return 160000000u;
}

void board_uart_init(uint32_t hz, uint32_t baud) {
    RCC_AHB2ENR1 |= 1u;                                /* GPIOAEN */
    RCC_APB2ENR |= 1u << 14;                           /* USART1EN */
    RCC_CCIPR1 &= ~3u;                                 /* USART1SEL = PCLK2 */
    (void)RCC_APB2ENR;
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);       /* PA9, PA10: alternate function */
    GPIOA_OSPEEDR |= 0xFu << 18;
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);         /* AF7 = USART1 */
    stm32_usart_enable(USART1, (hz + baud / 2u) / baud);
}

int board_uart_getc(void) { return stm32_usart_getc(USART1); }

void board_uart_write(const uint8_t *d, uint32_t n) { stm32_usart_write(USART1, d, n); }
