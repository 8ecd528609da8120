/* Verify harness for a Cortex-M core in QEMU (no UART, no protocol): the semihosting command line is
 * "verify IN OUT"; each input tensor read from the host file IN (raw bytes, the model's input type) is run
 * through ecg_model_invoke and its output tensor appended to the host file OUT. Exit code (semihosting
 * SYS_EXIT_EXTENDED): 0 when every complete input was run, 1 on an I/O error. Instruction counts come
 * from the QEMU plugin (markers ecg_model_invoke / ecg_layer_NNN / ecg_model_done). */
#include <stdint.h>
#include <string.h>
#include "model.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT_EXTENDED 0x20

static int32_t semihost(int32_t op, void *arg) {
    register int32_t r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void sh_exit(int32_t code) {
    uint32_t block[2] = {0x20026u, (uint32_t)code};   /* ADP_Stopped_ApplicationExit, exit code */
    semihost(SYS_EXIT_EXTENDED, block);
    for (;;) { }
}

static int32_t sh_open(const char *name, int32_t mode) {
    uint32_t block[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, (uint32_t)strlen(name)};
    return semihost(SYS_OPEN, block);
}

static int32_t sh_rw(int32_t op, int32_t handle, void *buf, uint32_t n) {   /* bytes NOT transferred */
    uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, n};
    return semihost(op, block);
}

static ECG_INPUT_T in[ECG_INPUT_SIZE];
static ECG_OUTPUT_T out[ECG_OUTPUT_SIZE];
static char cmdline[512];

int main(void) {
    uint32_t block[2] = {(uint32_t)(uintptr_t)cmdline, sizeof cmdline - 1};
    if (semihost(SYS_GET_CMDLINE, block) != 0) sh_exit(1);
    cmdline[block[1]] = 0;
    char *args[3] = {0, 0, 0};
    int n = 0;
    for (char *p = cmdline; *p && n < 3;) {
        while (*p == ' ') *p++ = 0;
        if (*p) args[n++] = p;
        while (*p && *p != ' ') ++p;
    }
    if (n < 3) sh_exit(1);
    const int32_t fin = sh_open(args[1], 1 /* rb */), fout = sh_open(args[2], 5 /* wb */);
    if (fin < 0 || fout < 0) sh_exit(1);
    while (sh_rw(SYS_READ, fin, in, ECG_INPUT_BYTES) == 0) {
        ecg_model_invoke(in, out);
        if (sh_rw(SYS_WRITE, fout, out, ECG_OUTPUT_BYTES) != 0) sh_exit(1);
    }
    semihost(SYS_CLOSE, (uint32_t[]){(uint32_t)fin});
    semihost(SYS_CLOSE, (uint32_t[]){(uint32_t)fout});
    sh_exit(0);
    return 0;
}
