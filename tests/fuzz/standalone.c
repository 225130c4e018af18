/* standalone.c - runs a libFuzzer target without libFuzzer (gcc builds, CI smoke): replays
 * every file of the corpus directories given, then mutates them at random for -runs=N inputs
 * or -max_total_time=S seconds (flags spelled as libFuzzer's, so ctest calls both alike).
 * A crash or abort in the target fails the run; the input is written to ./crash-standalone. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 4096
#define MAX_SEEDS 1024

static uint8_t *seeds[MAX_SEEDS];
static size_t   seed_len[MAX_SEEDS];
static size_t   n_seeds;
static uint8_t  cur[FUZZ_MAX_INPUT];
static size_t   cur_len;

static void on_crash(int sig)
{
    FILE *f = fopen("crash-standalone", "wb");
    if (f) {
        fwrite(cur, 1, cur_len, f);
        fclose(f);
    }
    fprintf(stderr, "standalone fuzz: signal %d on an input of %zu bytes (saved to "
                    "crash-standalone)\n", sig, cur_len);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run(const uint8_t *d, size_t n)
{
    cur_len = n < FUZZ_MAX_INPUT ? n : FUZZ_MAX_INPUT;
    memcpy(cur, d, cur_len);
    LLVMFuzzerTestOneInput(cur, cur_len);
}

static void load_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    uint8_t buf[FUZZ_MAX_INPUT];
    size_t  n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    run(buf, n);
    if (n_seeds < MAX_SEEDS && (seeds[n_seeds] = malloc(n ? n : 1)) != NULL) {
        memcpy(seeds[n_seeds], buf, n);
        seed_len[n_seeds++] = n;
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One random mutation of a random seed: flip, insert, delete, or splice interesting bytes. */
static size_t mutate(uint8_t *out)
{
    static const char dict[] = "0123456789kKmMgGtTiBsnuh -.";
    size_t            n      = 0;
    if (n_seeds) {
        size_t s = rnd() % n_seeds;
        n        = seed_len[s];
        memcpy(out, seeds[s], n);
    }
    for (int k = 1 + (int)(rnd() % 4); k > 0; k--) {
        size_t pos = n ? rnd() % (n + 1) : 0;
        switch (rnd() % 4) {
        case 0:
            if (n)
                out[pos % n] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1:
            if (n < FUZZ_MAX_INPUT - 1) {
                memmove(out + pos + 1, out + pos, n - pos);
                out[pos] = (uint8_t)dict[rnd() % (sizeof(dict) - 1)];
                n++;
            }
            break;
        case 2:
            if (n) {
                pos %= n;
                memmove(out + pos, out + pos + 1, n - pos - 1);
                n--;
            }
            break;
        default:
            if (n)
                out[pos % n] = (uint8_t)rnd();
            break;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    long   runs = 10000;
    double max_time = 0;
    signal(SIGSEGV, on_crash);
    signal(SIGABRT, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (strncmp(argv[i], "-runs=", 6) == 0)
            runs = atol(argv[i] + 6);
        else if (strncmp(argv[i], "-max_total_time=", 16) == 0)
            max_time = atof(argv[i] + 16);
        else if (strncmp(argv[i], "-seed=", 6) == 0)
            rng_state = strtoull(argv[i] + 6, NULL, 0) | 1;
        else if (argv[i][0] == '-')
            continue; /* other libFuzzer flags do not apply */
        else if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
                if (e->d_name[0] == '.')
                    continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                load_file(path);
            }
            if (d)
                closedir(d);
        } else {
            load_file(argv[i]);
        }
    }
    time_t  t0 = time(NULL);
    uint8_t buf[FUZZ_MAX_INPUT];
    long    done = 0;
    for (; max_time > 0 ? difftime(time(NULL), t0) < max_time : done < runs; done++)
        run(buf, mutate(buf));
    printf("standalone fuzz: %zu corpus inputs, %ld mutated inputs, no crash\n", n_seeds, done);
    return 0;
}
