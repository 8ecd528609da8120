/* nRF52840 DK (nRF52840, Cortex-M4F at 64 MHz): the 64 MHz crystal (HFXO) started for an accurate baud rate,
 * UARTE0 on the interface MCU's (J-Link OB) virtual COM port (P0.06 TX, P0.08 RX, no flow control).
 * Register names: nRF52840 Product Specification v1.x (CLOCK, GPIO, UARTE).
 * UARTE moves bytes with EasyDMA (from RAM only): transmit from a RAM staging buffer; receive one byte per
 * transfer into two alternating RAM buffers, chained by the ENDRX_STARTRX short so that reception never
 * stops (the next buffer's pointer is written after each RXSTARTED). */
#include "board.h"

#define CLOCK 0x40000000u
#define CLOCK_TASKS_HFCLKSTART REG32(CLOCK + 0x000u)
#define CLOCK_EVENTS_HFCLKSTARTED (CLOCK + 0x100u)
#define UARTE0 0x40002000u
#define UARTE_TASKS_STARTRX REG32(UARTE0 + 0x000u)
#define UARTE_TASKS_STARTTX REG32(UARTE0 + 0x008u)
#define UARTE_EVENTS_ENDRX REG32(UARTE0 + 0x110u)
#define UARTE_EVENTS_ENDTX (UARTE0 + 0x120u)
#define UARTE_EVENTS_ERROR REG32(UARTE0 + 0x124u)
#define UARTE_EVENTS_RXSTARTED (UARTE0 + 0x14Cu)
#define UARTE_SHORTS REG32(UARTE0 + 0x200u)     /* ENDRX_STARTRX 5 */
#define UARTE_ERRORSRC REG32(UARTE0 + 0x480u)
#define UARTE_ENABLE REG32(UARTE0 + 0x500u)     /* 8 = UARTE */
#define UARTE_PSEL_RTS REG32(UARTE0 + 0x508u)
#define UARTE_PSEL_TXD REG32(UARTE0 + 0x50Cu)
#define UARTE_PSEL_CTS REG32(UARTE0 + 0x510u)
#define UARTE_PSEL_RXD REG32(UARTE0 + 0x514u)
#define UARTE_BAUDRATE REG32(UARTE0 + 0x524u)
#define UARTE_RXD_PTR REG32(UARTE0 + 0x534u)
#define UARTE_RXD_MAXCNT REG32(UARTE0 + 0x538u)
#define UARTE_TXD_PTR REG32(UARTE0 + 0x544u)
#define UARTE_TXD_MAXCNT REG32(UARTE0 + 0x548u)
#define UARTE_CONFIG REG32(UARTE0 + 0x56Cu)     /* HWFC 0, PARITY 3:1: 0 = 8N1 */
#define P0_OUTSET REG32(0x50000000u + 0x508u)
#define P0_PIN_CNF(n) REG32(0x50000000u + 0x700u + 4u * (n))
#define PIN_TX 6u
#define PIN_RX 8u
#define PSEL_DISCONNECTED 0xFFFFFFFFu

static volatile uint8_t rx_buf[2];
static int rx_done;                  /* the buffer the next ENDRX completes */
static uint8_t tx_stage[256];

uint32_t board_clock_init(const char **note, uint32_t *uart_hz) {
    REG32(CLOCK_EVENTS_HFCLKSTARTED) = 0;
    CLOCK_TASKS_HFCLKSTART = 1;                       /* HFXO: the crystal, for the UART's baud rate */
    const int xo = board_wait(CLOCK_EVENTS_HFCLKSTARTED, 1u, 1u, BOARD_TIMEOUT);
    *note = xo ? "HFXO" : "HFINT (HFXO did not start)";
    *uart_hz = 16000000u;                             /* UARTE's BAUDRATE values assume the 16 MHz base */
    return 64000000u;
}

static uint32_t baud_value(uint32_t baud) {
    switch (baud) {                                   /* nRF52840 PS, UARTE BAUDRATE register */
    case 115200u: return 0x01D7E000u;
    case 230400u: return 0x03AFB000u;
    case 460800u: return 0x075F7000u;
    case 921600u: return 0x0F000000u;
    case 1000000u: return 0x10000000u;
    default: return 0x01D7E000u;
    }
}

void board_uart_init(uint32_t hz, uint32_t baud) {
    (void)hz;
    P0_OUTSET = 1u << PIN_TX;
    P0_PIN_CNF(PIN_TX) = 1u | (1u << 1);              /* output, input buffer disconnected */
    P0_PIN_CNF(PIN_RX) = 0u;                          /* input */
    UARTE_PSEL_TXD = PIN_TX;
    UARTE_PSEL_RXD = PIN_RX;
    UARTE_PSEL_RTS = PSEL_DISCONNECTED;
    UARTE_PSEL_CTS = PSEL_DISCONNECTED;
    UARTE_CONFIG = 0;
    UARTE_BAUDRATE = baud_value(baud);
    UARTE_ENABLE = 8u;
    UARTE_SHORTS = 1u << 5;                           /* ENDRX -> STARTRX: reception never stops */
    UARTE_RXD_PTR = (uint32_t)(uintptr_t)&rx_buf[0];
    UARTE_RXD_MAXCNT = 1;
    REG32(UARTE_EVENTS_RXSTARTED) = 0;
    UARTE_TASKS_STARTRX = 1;
    board_wait(UARTE_EVENTS_RXSTARTED, 1u, 1u, BOARD_TIMEOUT);
    REG32(UARTE_EVENTS_RXSTARTED) = 0;
    UARTE_RXD_PTR = (uint32_t)(uintptr_t)&rx_buf[1];  /* latched at the next STARTRX */
    rx_done = 0;
}

int board_uart_getc(void) {
    if (UARTE_EVENTS_ERROR) {                         /* overrun/framing: clear; the frame CRC reports the loss */
        UARTE_EVENTS_ERROR = 0;
        UARTE_ERRORSRC = UARTE_ERRORSRC;
    }
    if (!UARTE_EVENTS_ENDRX) return -1;
    UARTE_EVENTS_ENDRX = 0;
    const int c = rx_buf[rx_done];
    /* the short restarted reception into the other buffer; once it has started, point the next transfer
     * at the buffer just read */
    board_wait(UARTE_EVENTS_RXSTARTED, 1u, 1u, BOARD_TIMEOUT);
    REG32(UARTE_EVENTS_RXSTARTED) = 0;
    UARTE_RXD_PTR = (uint32_t)(uintptr_t)&rx_buf[rx_done];
    rx_done ^= 1;
    return c;
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    while (n) {
        const uint32_t k = n < sizeof tx_stage ? n : (uint32_t)sizeof tx_stage;
        for (uint32_t i = 0; i < k; ++i) tx_stage[i] = d[i];   /* EasyDMA reads RAM only */
        UARTE_TXD_PTR = (uint32_t)(uintptr_t)tx_stage;
        UARTE_TXD_MAXCNT = k;
        REG32(UARTE_EVENTS_ENDTX) = 0;
        UARTE_TASKS_STARTTX = 1;
        board_wait(UARTE_EVENTS_ENDTX, 1u, 1u, 0xFFFFFFFFu);
        d += k;
        n -= k;
    }
}
