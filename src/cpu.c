/* cpu.c - CPU model and SIMD features, checked with cpuid and xgetbv (OS-enabled state), so
 * kernels can pick AVX2/AVX-512 paths at run time without -march=native. */
#include <cpuid.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <tfab/devinfo.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void read_model(tfab_cpu_info_t *cpu)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + (v[1] == ' ');
                v[strcspn(v, "\n")] = '\0';
                snprintf(cpu->model, sizeof(cpu->model), "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

void tfab_cpu_info_query(tfab_cpu_info_t *cpu)
{
    memset(cpu, 0, sizeof(*cpu));
    long n      = sysconf(_SC_NPROCESSORS_ONLN);
    cpu->n_cpus = n > 0 ? (unsigned)n : 1;
    read_model(cpu);

    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int      osxsave = (c >> 27) & 1;
    uint64_t xcr0    = osxsave ? xgetbv0() : 0;
    int      ymm_ok  = (xcr0 & 0x6) == 0x6;           /* SSE and AVX state */
    int      zmm_ok  = ymm_ok && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM hi256, hi16 ZMM */
    cpu->fma         = ymm_ok && ((c >> 12) & 1);
    cpu->f16c        = ymm_ok && ((c >> 29) & 1);
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        cpu->avx2       = ymm_ok && ((b >> 5) & 1);
        cpu->avx512f    = zmm_ok && ((b >> 16) & 1);
        cpu->avx512bw   = zmm_ok && ((b >> 30) & 1);
        cpu->avx512vnni = zmm_ok && ((c >> 11) & 1);
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d))
        cpu->avx512bf16 = zmm_ok && ((a >> 5) & 1);
}
