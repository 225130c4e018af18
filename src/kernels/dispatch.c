/* dispatch.c - picks the kernel table for this CPU once (cpuid via tfab_cpu_info_query). */
#include <pthread.h>
#include <tfab/devinfo.h>
#include "kernels.h"

static tfab_kern_t    tables[TFAB_ISA_COUNT];
static int            have[TFAB_ISA_COUNT];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
    tfab_cpu_info_t cpu;
    tfab_cpu_info_query(&cpu);
    tfab_kern_fill_scalar(&tables[TFAB_ISA_SCALAR]);
    have[TFAB_ISA_SCALAR] = 1;
    if (cpu.avx2 && cpu.fma && cpu.f16c) {
        tables[TFAB_ISA_AVX2] = tables[TFAB_ISA_SCALAR];
        tfab_kern_fill_avx2(&tables[TFAB_ISA_AVX2]);
        have[TFAB_ISA_AVX2] = 1;
        if (cpu.avx512f && cpu.avx512bw) {
            tables[TFAB_ISA_AVX512] = tables[TFAB_ISA_AVX2];
            tfab_kern_fill_avx512(&tables[TFAB_ISA_AVX512], cpu.avx512vnni);
            have[TFAB_ISA_AVX512] = 1;
        }
    }
}

const tfab_kern_t *tfab_kern_get(tfab_isa_t isa)
{
    pthread_once(&once, init_tables);
    return (unsigned)isa < TFAB_ISA_COUNT && have[isa] ? &tables[isa] : NULL;
}

const tfab_kern_t *tfab_kern_best(void)
{
    for (int i = TFAB_ISA_COUNT - 1; i >= 0; i--)
        if (tfab_kern_get((tfab_isa_t)i))
            return tfab_kern_get((tfab_isa_t)i);
    return tfab_kern_get(TFAB_ISA_SCALAR);
}

tfab_act_kind_t tfab_kern_act_kind(tfab_dtype_t type)
{
    return type == TFAB_DTYPE_Q8_0 || type == TFAB_DTYPE_Q4_0 ? TFAB_ACT_Q8_0 : TFAB_ACT_F32;
}

tfab_act_kind_t tfab_kern_gemm_act(tfab_dtype_t type)
{
    return type == TFAB_DTYPE_Q8_0 ? TFAB_ACT_Q8X : tfab_kern_act_kind(type);
}

int tfab_kern_supported(tfab_dtype_t type)
{
    return type == TFAB_DTYPE_F32 || type == TFAB_DTYPE_F16 || type == TFAB_DTYPE_BF16 ||
           type == TFAB_DTYPE_Q8_0 || type == TFAB_DTYPE_Q4_0;
}
