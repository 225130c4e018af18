/* cmd_plan.c - `tfab plan`: where each layer of a model goes on a cluster, the link every stage
 * boundary uses and the bytes per token it carries, or why the model does not fit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/cluster.h>
#include <tfab/units.h>
#include "cli.h"


int tfab_cli_plan(int argc, char **argv)
{
    const char *cluster = NULL, *model = NULL;
    uint32_t    ctx = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: tfab plan --cluster FILE [--model GGUF] [--ctx N]\n"
                   "\n"
                   "Places the model on the cluster as tfab run --cluster would: layer ranges in\n"
                   "proportion to each rank's memory ('mem' in the cluster file, else this host's\n"
                   "free memory), nodes ordered so consecutive stages use the best-ranked links\n"
                   "of the file's topology. Prints each stage, the link of each boundary and the\n"
                   "bytes per token it carries; exits 1 with the numbers if the model does not\n"
                   "fit.\n");
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "tfab plan: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--cluster") == 0)
            cluster = v;
        else if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--ctx") == 0)
            ctx = (uint32_t)strtoul(v, NULL, 10);
        else {
            fprintf(stderr, "tfab plan: unknown option '%s' (see tfab plan --help)\n", a);
            return 2;
        }
    }
    static tfab_cluster_t cl;
    char                  err[1024];
    if (cluster == NULL) {
        fprintf(stderr, "tfab plan: --cluster FILE is required\n");
        return 2;
    }
    if (tfab_cluster_load(cluster, &cl, err, sizeof(err)) != TFAB_OK) {
        fprintf(stderr, "tfab plan: %s\n", err);
        return 2;
    }
    if (model == NULL && cl.model[0])
        model = cl.model;
    if (model == NULL) {
        fprintf(stderr, "tfab plan: no model: give --model or 'model PATH' in %s\n", cluster);
        return 2;
    }
    tfab_topology_t *topo = NULL;
    if (cl.topology[0] && tfab_topology_load(cl.topology, &topo, err, sizeof(err)) != TFAB_OK) {
        fprintf(stderr, "tfab plan: %s\n", err);
        return 2;
    }
    for (unsigned r = 0; topo && r < cl.n_ranks; r++)
        if (cl.ranks[r].host[0] && tfab_topology_find_host(topo, cl.ranks[r].host) == NULL) {
            fprintf(stderr, "tfab plan: %s:%d: host '%s' is not in %s\n", cluster, cl.ranks[r].line,
                    cl.ranks[r].host, cl.topology);
            tfab_topology_free(topo);
            return 2;
        }
    tfab_plan_model_t pm;
    if (tfab_plan_model_read(model, ctx, &pm, err, sizeof(err)) != TFAB_OK) {
        fprintf(stderr, "tfab plan: %s\n", err);
        tfab_topology_free(topo);
        return 1;
    }
    uint64_t mem[TFAB_CLUSTER_MAX_RANKS], here = tfab_plan_mem_available();
    int      assumed = 0;
    for (unsigned r = 0; r < cl.n_ranks; r++) {
        mem[r] = cl.ranks[r].mem ? cl.ranks[r].mem : here;
        assumed |= cl.ranks[r].mem == 0;
    }
    static tfab_plan_t p;
    int                rc = 1;
    char               a[32], b[32], c[32];
    if (tfab_plan_make(&cl, topo, &pm, mem, cl.chunk, &p, err, sizeof(err)) != TFAB_OK) {
        fprintf(stderr, "tfab plan: %s\n", err);
        goto out;
    }
    printf("model %s: %u layers, weights %s, KV cache %s at n_ctx %u (%s per layer)\n", model,
           pm.n_layer, tfab_size_human(p.weights, a, sizeof(a)),
           tfab_size_human(p.kv, b, sizeof(b)), pm.n_ctx,
           tfab_size_human(pm.kv_layer, c, sizeof(c)));
    if (assumed)
        printf("memory: ranks without 'mem' in %s assume this host's free memory (%s); at run "
               "time each node reports its own\n",
               cluster, tfab_size_human(here, a, sizeof(a)));
    for (unsigned s = 0; s < p.n; s++) {
        unsigned r = p.order[s];
        printf("stage %u: rank %u %-21s layers [%u, %u)  needs %s of %s\n", s, r,
               cl.ranks[r].address, p.begin[s], p.end[s], tfab_size_human(p.need[s], a, sizeof(a)),
               tfab_size_human(p.mem[s], b, sizeof(b)));
    }
    for (unsigned s = 0; s + 1 < p.n; s++)
        printf("link %u -> %u: %s: %llu bytes/token decode, %llu bytes/token prefill (chunk "
               "%u)\n",
               s, s + 1, p.link[s], (unsigned long long)p.act_bytes_decode,
               (unsigned long long)p.act_bytes_prefill, cl.chunk);
    if (p.n > 1)
        printf("link %u -> 0 (logits): %s: %llu bytes/token decode\n", p.n - 1, p.link[p.n - 1],
               (unsigned long long)p.logits_bytes);
    rc = 0;
out:
    tfab_plan_model_free(&pm);
    tfab_topology_free(topo);
    return rc;
}
