/* test_cluster_file.c - the cluster file parser (every directive, defaults, layer ranges, and
 * each error naming file:line) and the launcher environments (Slurm, Open MPI, PMI). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <tfab/cluster.h>

static tfab_cluster_t c;
static char           err[512];

static tfab_status_t parse(const char *text)
{
    err[0] = '\0';
    return tfab_cluster_parse(text, strlen(text), "c.txt", &c, err, sizeof(err));
}

static void test_full(void **state)
{
    assert_int_equal(parse("# a cluster\n"
                           "token s3cret   # secret\n"
                           "model /m/llama.gguf\n"
                           "chunk 16\n"
                           "heartbeat_ms 100\n"
                           "dead_ms 900\n"
                           "join_s 5\n"
                           "backend verbs\n"
                           "topology /etc/tfab/topo.yaml\n"
                           "coordinator 10.0.0.1:7700 layers 0-3 host a\n"
                           "node 10.0.0.2:7700 mem 2GiB layers 3-5 host b\n"
                           "  node\t10.0.0.3:7701 layers 5-32\r\n"),
                     TFAB_OK);
    assert_string_equal(c.topology, "/etc/tfab/topo.yaml");
    assert_string_equal(c.ranks[0].host, "a");
    assert_string_equal(c.ranks[1].host, "b");
    assert_string_equal(c.ranks[2].host, "");
    assert_int_equal(c.ranks[1].mem, 2ull << 30);
    assert_int_equal(c.ranks[0].mem, 0);
    assert_string_equal(c.token, "s3cret");
    assert_string_equal(c.model, "/m/llama.gguf");
    assert_string_equal(c.backend, "verbs");
    assert_int_equal(c.chunk, 16);
    assert_int_equal(c.heartbeat_ms, 100);
    assert_int_equal(c.dead_ms, 900);
    assert_int_equal(c.join_s, 5);
    assert_int_equal(c.n_ranks, 3);
    assert_string_equal(c.ranks[2].address, "10.0.0.3:7701");
    assert_int_equal(c.ranks[1].layer_begin, 3);
    assert_int_equal(c.ranks[1].layer_end, 5);
    assert_int_equal(c.ranks[2].layer_end, 32);
    assert_int_equal(c.ranks[2].line, 12);
}

static void test_defaults(void **state)
{
    assert_int_equal(parse("coordinator 127.0.0.1:1\nnode 127.0.0.1:2"), TFAB_OK);
    assert_int_equal(c.n_ranks, 2);
    assert_int_equal(c.tp, 1);
    assert_int_equal(c.chunk, 32);
    assert_int_equal(c.heartbeat_ms, 200);
    assert_int_equal(c.dead_ms, 2000);
    assert_int_equal(c.join_s, 60);
    assert_string_equal(c.backend, "tcp");
    assert_string_equal(c.token, "");
    assert_int_equal(c.ranks[1].layer_end, 0);
    assert_int_equal(parse("tp 2\ncoordinator a:1\nnode b:1\n"), TFAB_OK);
    assert_int_equal(c.tp, 2);
}

static void expect_err(const char *text, const char *want)
{
    assert_int_equal(parse(text), TFAB_ERR_INVALID);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' lacks '%s'", err, want);
}

static void test_errors(void **state)
{
    expect_err("", "c.txt:0: no 'coordinator IP:PORT' line");
    expect_err("node 1.2.3.4:5\n", "c.txt:1: node before the coordinator line");
    expect_err("coordinator 1.2.3.4:5\ncoordinator 1.2.3.4:6\n", "c.txt:2: a second coordinator");
    expect_err("coordinator 1.2.3.4\n", "c.txt:1: '1.2.3.4' is not an IP:PORT address");
    expect_err("coordinator 1.2.3.4:70000\n", "c.txt:1: '1.2.3.4:70000' is not an IP:PORT");
    expect_err("coordinator a:1\nnode a:1\n", "c.txt:2: address a:1 already used by line 1");
    expect_err("\n\nchunk 0\n", "c.txt:3: chunk '0': tokens in 1..65536");
    expect_err("chunk 12x\n", "c.txt:1: chunk '12x'");
    expect_err("heartbeat_ms 5\n", "c.txt:1: heartbeat_ms '5'");
    expect_err("backend ib\n", "c.txt:1: backend 'ib': tcp or verbs");
    expect_err("frobnicate 1\n", "c.txt:1: unknown directive 'frobnicate'");
    expect_err("token\n", "c.txt:1: expected 'token VALUE'");
    expect_err("coordinator a:1 layers 0-2\nnode b:1\n",
               "c.txt:2: give 'layers' on every rank or on none");
    expect_err("coordinator a:1 layers 1-2\n", "c.txt:1: the coordinator's layers must start at 0");
    expect_err("coordinator a:1 layers 0-2\nnode b:1 layers 3-4\n",
               "c.txt:2: layers start at 3 but the previous rank (line 1) ends at 2");
    expect_err("coordinator a:1 layers 2-2\n", "c.txt:1: layers '2-2': need BEGIN < END");
    expect_err("coordinator a:1 levels 0-2\n", "c.txt:1: unknown rank attribute 'levels'");
    expect_err("coordinator a:1 layers 2\n", "c.txt:1: expected 'layers BEGIN-END'");
    expect_err("coordinator a:1 mem lots\n", "c.txt:1: mem 'lots': a size like 16GiB");
    expect_err("coordinator a:1 mem\n", "c.txt:1: expected 'coordinator IP:PORT [layers");
    expect_err("tp 2\ncoordinator a:1\nnode b:1\nnode c:1\n",
               "c.txt:1: tp 2 with 3 ranks: tensor parallelism spans all ranks (tp = 3)");
    expect_err("tp 2\ncoordinator a:1 layers 0-1\nnode b:1 layers 1-2\n",
               "c.txt:1: tp 2: every rank holds every layer");
    expect_err("tp 0\n", "c.txt:1: tp '0'");
    expect_err("heartbeat_ms 500\ndead_ms 400\ncoordinator a:1\n",
               "dead_ms 400 must exceed heartbeat_ms 500");
    char big[1200];
    memset(big, 'x', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    expect_err(big, "c.txt:1: line longer than");
    assert_int_equal(tfab_cluster_parse("coordinator a:1\0x", 17, "c.txt", &c, err, sizeof(err)),
                     TFAB_ERR_INVALID);
    assert_non_null(strstr(err, "NUL byte"));
}

static void test_load(void **state)
{
    assert_int_equal(tfab_cluster_load("/nonexistent/c.txt", &c, err, sizeof(err)), TFAB_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/c.txt: cannot open"));
}

static void clear_env(void)
{
    const char *v[] = {"TFAB_RANK",
                       "TFAB_SIZE",
                       "SLURM_PROCID",
                       "SLURM_NTASKS",
                       "OMPI_COMM_WORLD_RANK",
                       "OMPI_COMM_WORLD_SIZE",
                       "PMI_RANK",
                       "PMI_SIZE"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        unsetenv(v[i]);
}

static void test_env(void **state)
{
    int         rank = -7, size = -7;
    const char *which = NULL;
    clear_env();
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), 0);
    assert_int_equal(rank, -7);
    setenv("PMI_RANK", "2", 1);
    setenv("PMI_SIZE", "4", 1);
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), 1);
    assert_int_equal(rank, 2);
    assert_int_equal(size, 4);
    assert_string_equal(which, "PMI_RANK");
    setenv("OMPI_COMM_WORLD_RANK", "1", 1); /* Open MPI before PMI */
    setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), 1);
    assert_int_equal(rank, 1);
    assert_string_equal(which, "OMPI_COMM_WORLD_RANK");
    setenv("SLURM_PROCID", "0", 1); /* Slurm before MPI */
    setenv("SLURM_NTASKS", "2", 1);
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), 1);
    assert_int_equal(rank, 0);
    assert_int_equal(size, 2);
    assert_string_equal(which, "SLURM_PROCID");
    setenv("SLURM_PROCID", "2", 1); /* rank >= size */
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "SLURM_PROCID='2' and SLURM_NTASKS='2'"));
    setenv("SLURM_PROCID", "x", 1);
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), -1);
    clear_env();
    setenv("TFAB_RANK", "1", 1); /* without a size */
    assert_int_equal(tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "TFAB_SIZE='(unset)'"));
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full), cmocka_unit_test(test_defaults), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load), cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
