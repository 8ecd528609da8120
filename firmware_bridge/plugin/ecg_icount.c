/* QEMU TCG plugin (plugin API v1; Debian's QEMU 7.2 ships no qemu-plugin.h, so the few declarations
 * used are written out here). Counts executed guest instructions in total and per inference of
 * ecg_model_invoke, split by layer function. Markers are function entry addresses from the ELF:
 *   -plugin libecg_icount.so,out=FILE,mark=ADDR:ID,...   ID -1 = invoke start, -2 = done, >=0 layer
 * On every `done` marker one line is appended to FILE:
 *   inference <n> total <instructions> layers <id>:<count> ... */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_MARKS 1024
#define NONE (-3)
static uint64_t mark_addr[MAX_MARKS];
static int mark_id[MAX_MARKS];
static int n_marks, max_layer = -1;
static uint64_t *layer_counts;
static uint64_t total_all, total_inference, inferences;
static int bucket = NONE;
static FILE *out;

/* per-TB data: instruction count and marker id (NONE if the TB does not start at a marker) */
struct tbinfo { uint32_t n; int mark; };

static void tb_exec(unsigned int vcpu, void *ud) {
    struct tbinfo *t = ud;
    if (t->mark != NONE) {
        if (t->mark == -1) {            /* ecg_model_invoke entry */
            total_inference = 0;
            memset(layer_counts, 0, sizeof(uint64_t) * (size_t)(max_layer + 1));
            bucket = -1;
        } else if (t->mark == -2) {     /* ecg_model_done: the inference is complete */
            if (bucket != NONE) {
                inferences++;
                if (out) {
                    fprintf(out, "inference %" PRIu64 " total %" PRIu64 " layers", inferences, total_inference);
                    for (int i = 0; i <= max_layer; ++i)
                        if (layer_counts[i]) fprintf(out, " %d:%" PRIu64, i, layer_counts[i]);
                    fputc('\n', out);
                    fflush(out);
                }
            }
            bucket = NONE;
        } else {
            bucket = t->mark;
        }
    }
    total_all += t->n;
    if (bucket != NONE) {
        total_inference += t->n;
        if (bucket >= 0) layer_counts[bucket] += t->n;
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    struct tbinfo *t = malloc(sizeof *t);
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    t->n = (uint32_t)qemu_plugin_tb_n_insns(tb);
    t->mark = NONE;
    for (int i = 0; i < n_marks; ++i)
        if (mark_addr[i] == pc) t->mark = mark_id[i];
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, t);
}

static void at_exit(qemu_plugin_id_t id, void *ud) {
    char buf[128];
    snprintf(buf, sizeof buf, "ecg_icount: %" PRIu64 " instructions, %" PRIu64 " inferences\n", total_all, inferences);
    qemu_plugin_outs(buf);
    if (out) {
        fprintf(out, "exit total_all %" PRIu64 "\n", total_all);
        fclose(out);
        out = NULL;
    }
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "w");
            if (!out) return -1;
        } else if (strncmp(argv[i], "mark=", 5) == 0 && n_marks < MAX_MARKS) {
            char *colon = strchr(argv[i] + 5, ':');
            if (!colon) return -1;
            mark_addr[n_marks] = strtoull(argv[i] + 5, NULL, 0) & ~1ull;   /* Thumb bit off */
            mark_id[n_marks] = atoi(colon + 1);
            if (mark_id[n_marks] > max_layer) max_layer = mark_id[n_marks];
            n_marks++;
        }
    }
    layer_counts = calloc((size_t)(max_layer + 2), sizeof(uint64_t));
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
