/* NUCLEO-H743ZI2 (STM32H743ZI rev V, Cortex-M7): 480 MHz from HSE through PLL1, I- and D-caches on,
 * USART3 on the STLINK-V3E virtual COM port (PD8 TX, PD9 RX, AF7). Register names: RM0433 (STM32H742,
 * H743/753 and H750 reference manual) and the Cortex-M7 TRM (cache maintenance).
 *
 * Power: LDO supply, VOS1 then VOS0 through SYSCFG_PWRCR.ODEN (rev V: 480 MHz needs VOS0; without it the
 * clock stays at 400 MHz). PLL1 from HSE in bypass (the STLINK-V3's 8 MHz MCO) or, when HSE does not start,
 * from HSI 64 MHz: DIVM1 -> 2 MHz, DIVN1 480 (400) -> VCO 960 (800) MHz, DIVP1 2. Buses: AXI/AHB /2
 * (240 MHz), APB1-4 /2 (120 MHz); USART3's kernel clock is PCLK1. Flash: 4 wait states, WRHIGHFREQ 2. */
#include "board.h"
#include "stm32_usart.h"

#define RCC 0x58024400u
#define RCC_CR REG32(RCC + 0x000u)          /* HSION 0, HSIRDY 2, HSEON 16, HSERDY 17, HSEBYP 18, PLL1ON 24, PLL1RDY 25 */
#define RCC_CFGR REG32(RCC + 0x010u)        /* SW 2:0 (3 = PLL1), SWS 5:3 */
#define RCC_D1CFGR REG32(RCC + 0x018u)      /* HPRE 3:0, D1PPRE 6:4, D1CPRE 11:8 */
#define RCC_D2CFGR REG32(RCC + 0x01Cu)      /* D2PPRE1 6:4, D2PPRE2 10:8 */
#define RCC_D3CFGR REG32(RCC + 0x020u)      /* D3PPRE 6:4 */
#define RCC_PLLCKSELR REG32(RCC + 0x028u)   /* PLLSRC 1:0 (0 HSI, 2 HSE), DIVM1 9:4 */
#define RCC_PLLCFGR REG32(RCC + 0x02Cu)     /* PLL1FRACEN 0, PLL1VCOSEL 1, PLL1RGE 3:2, DIVP1EN 16 */
#define RCC_PLL1DIVR REG32(RCC + 0x030u)    /* DIVN1 8:0 (N-1), DIVP1 15:9 (P-1), DIVQ1 22:16, DIVR1 30:24 */
#define RCC_AHB4ENR REG32(RCC + 0x0E0u)     /* GPIODEN 3 */
#define RCC_APB1LENR REG32(RCC + 0x0E8u)    /* USART3EN 18 */
#define RCC_APB4ENR REG32(RCC + 0x0F4u)     /* SYSCFGEN 1 */
#define PWR 0x58024800u
#define PWR_CSR1 (PWR + 0x004u)             /* ACTVOSRDY 13 */
#define PWR_CR3 REG32(PWR + 0x00Cu)         /* BYPASS 0, LDOEN 1, SCUEN 2 */
#define PWR_D3CR REG32(PWR + 0x018u)        /* VOSRDY 13, VOS 15:14 (3 = VOS1) */
#define SYSCFG_PWRCR REG32(0x58000400u + 0x02Cu)   /* ODEN 0: VOS0 when VOS1 is selected */
#define FLASH_ACR REG32(0x52002000u)        /* LATENCY 3:0, WRHIGHFREQ 5:4 */
#define GPIOD 0x58020C00u
#define GPIOD_MODER REG32(GPIOD + 0x00u)
#define GPIOD_OSPEEDR REG32(GPIOD + 0x08u)
#define GPIOD_AFRH REG32(GPIOD + 0x24u)
#define USART3 0x40004800u
/* Cortex-M7 cache maintenance (ARMv7-M ARM B2.2.7, Cortex-M7 TRM 4.1) */
#define SCB_CCR REG32(0xE000ED14u)          /* DC 16, IC 17 */
#define SCB_CCSIDR REG32(0xE000ED80u)
#define SCB_CSSELR REG32(0xE000ED84u)
#define SCB_ICIALLU REG32(0xE000EF50u)
#define SCB_DCISW REG32(0xE000EF60u)

static void caches_on(void) {
    __asm__ volatile("dsb\n isb" ::: "memory");
    SCB_ICIALLU = 0;                                   /* invalidate the I-cache, then enable */
    __asm__ volatile("dsb\n isb" ::: "memory");
    SCB_CCR |= 1u << 17;
    __asm__ volatile("dsb\n isb" ::: "memory");
    SCB_CSSELR = 0;                                    /* L1 data cache: invalidate every set and way */
    __asm__ volatile("dsb" ::: "memory");
    const uint32_t ccsidr = SCB_CCSIDR;
    const uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u, ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    for (uint32_t s = 0; s < sets; ++s)
        for (uint32_t w = 0; w < ways; ++w) SCB_DCISW = (s << 5) | (w << 30);   /* 32-byte lines, 4 ways */
    __asm__ volatile("dsb" ::: "memory");
    SCB_CCR |= 1u << 16;
    __asm__ volatile("dsb\n isb" ::: "memory");
}

uint32_t board_clock_init(const char **note, uint32_t *uart_hz) {
    PWR_CR3 = (PWR_CR3 & ~1u) | (1u << 1);             /* LDO supply (locks the supply configuration) */
    board_wait(PWR_CSR1, 1u << 13, 1u << 13, BOARD_TIMEOUT);
    PWR_D3CR = (PWR_D3CR & ~(3u << 14)) | (3u << 14);  /* VOS1 */
    board_wait(PWR + 0x018u, 1u << 13, 1u << 13, BOARD_TIMEOUT);
    RCC_APB4ENR |= 1u << 1;                            /* SYSCFGEN */
    (void)RCC_APB4ENR;
    SYSCFG_PWRCR |= 1u;                                /* ODEN: VOS0 */
    const int vos0 = board_wait(PWR + 0x018u, 1u << 13, 1u << 13, BOARD_TIMEOUT) && (SYSCFG_PWRCR & 1u);
    RCC_CR |= (1u << 18) | (1u << 16);                 /* HSEBYP + HSEON */
    const int hse = board_wait(RCC + 0x000u, 1u << 17, 1u << 17, BOARD_TIMEOUT);
    if (!hse) RCC_CR &= ~((1u << 16) | (1u << 18));
    const uint32_t target = vos0 ? 480000000u : 400000000u;
    RCC_CR &= ~(1u << 24);
    board_wait(RCC + 0x000u, 1u << 25, 0, BOARD_TIMEOUT);
    RCC_PLLCKSELR = (hse ? 2u : 0u) | ((hse ? 4u : 32u) << 4);        /* 2 MHz into PLL1 */
    RCC_PLLCFGR = (RCC_PLLCFGR & ~0xFu & ~(1u << 16)) | (1u << 2) | (1u << 16);   /* RGE 2-4 MHz, wide VCO, P on */
    RCC_PLL1DIVR = ((target / 1000000u) - 1u) | (1u << 9) | (1u << 16) | (1u << 24);   /* N, P = 2, Q = R = 2 */
    RCC_CR |= 1u << 24;                                /* PLL1ON */
    if (!board_wait(RCC + 0x000u, 1u << 25, 1u << 25, BOARD_TIMEOUT)) {
        RCC_CR &= ~(1u << 24);
        *note = "HSI (PLL1 did not lock)";
        *uart_hz = 64000000u;
        caches_on();
        return 64000000u;
    }
    FLASH_ACR = 4u | (2u << 4);                        /* 4 wait states, WRHIGHFREQ 2 (RM0433 table 17) */
    board_wait(0x52002000u, 0x3Fu, 4u | (2u << 4), BOARD_TIMEOUT);
    RCC_D1CFGR = (0u << 8) | (4u << 4) | 8u;           /* D1CPRE /1, D1PPRE /2, HPRE /2 */
    RCC_D2CFGR = (4u << 8) | (4u << 4);                /* D2PPRE2 /2, D2PPRE1 /2 */
    RCC_D3CFGR = 4u << 4;                              /* D3PPRE /2 */
    RCC_CFGR = (RCC_CFGR & ~7u) | 3u;                  /* SW = PLL1 */
    board_wait(RCC + 0x010u, 7u << 3, 3u << 3, BOARD_TIMEOUT);
    caches_on();
    *note = hse ? (vos0 ? "HSE bypass, PLL1, VOS0, caches on" : "HSE bypass, PLL1, VOS1 (no VOS0), caches on")
                : (vos0 ? "HSI, PLL1, VOS0 (no HSE), caches on" : "HSI, PLL1, VOS1 (no HSE, no VOS0), caches on");
    *uart_hz = target / 4u;                            /* PCLK1 = SYSCLK / 2 / 2 */
    return target;
}

void board_uart_init(uint32_t hz, uint32_t baud) {
    RCC_AHB4ENR |= 1u << 3;                            /* GPIODEN */
    RCC_APB1LENR |= 1u << 18;                          /* USART3EN */
    (void)RCC_APB1LENR;
    GPIOD_MODER = (GPIOD_MODER & ~(0xFu << 16)) | (0xAu << 16);       /* PD8, PD9: alternate function */
    GPIOD_OSPEEDR |= 0xFu << 16;
    GPIOD_AFRH = (GPIOD_AFRH & ~0xFFu) | 0x77u;                       /* AF7 = USART3 */
    stm32_usart_enable(USART3, (hz + baud / 2u) / baud);   /* OVER8 = 0: BRR = kernel clock / baud */
}

int board_uart_getc(void) { return stm32_usart_getc(USART3); }

void board_uart_write(const uint8_t *d, uint32_t n) { stm32_usart_write(USART3, d, n); }
