/* tfab/cluster.h - distributed inference: the cluster file, launcher environments (Slurm, MPI),
 * and the pipeline engine. A coordinator (rank 0, first stage) and nodes (ranks 1.., later
 * stages) join over the fabric; activations travel as pool buffers from stage to stage and the
 * last stage returns logits to the coordinator. Logits are bit-identical to one host. */
#ifndef TFAB_CLUSTER_H
#define TFAB_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>
#include <tfab/topology.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFAB_CLUSTER_MAX_RANKS 64

typedef struct tfab_cluster_rank {
    char     address[80];            /* "ip:port" this rank listens on */
    uint32_t layer_begin, layer_end; /* both 0: not given (placed by memory) */
    uint64_t mem;                    /* bytes this rank may use for the model; 0: not given
                                        (its free memory, reported when it joins) */
    char host[64];                   /* its host in the topology file ("" if none) */
    int  line;                       /* where it was defined */
} tfab_cluster_rank_t;

/* A parsed cluster file (format in README "Cluster file"). */
typedef struct tfab_cluster {
    char     name[256];     /* the file, for messages */
    char     token[128];    /* cluster secret ("" if not given) */
    char     model[512];    /* model path on the coordinator ("" if not given) */
    uint32_t chunk;         /* prefill chunk in tokens (default 32) */
    uint32_t heartbeat_ms;  /* node heartbeat interval (default 200) */
    uint32_t dead_ms;       /* a node silent this long is dead (default 2000) */
    uint32_t join_s;        /* how long the coordinator waits for nodes (default 60) */
    char     backend[16];   /* "tcp" (default) or "verbs" */
    char     topology[512]; /* topology file ranking the links ("" if none) */
    uint32_t tp;            /* > 1: tensor parallel across all ranks (default 1:
                               pipeline) */
    int                 tp_line;
    unsigned            n_ranks; /* rank 0 = coordinator */
    tfab_cluster_rank_t ranks[TFAB_CLUSTER_MAX_RANKS];
} tfab_cluster_t;

/* Parse cluster file text; name is used in messages. On error writes "NAME:LINE: what is wrong"
 * into err and returns TFAB_ERR_INVALID. */
TFAB_API tfab_status_t tfab_cluster_parse(const char *text, size_t len, const char *name,
                                          tfab_cluster_t *cluster, char *err, size_t err_len);
/* Read and parse a file; TFAB_ERR_IO (named in err) when it cannot be read. */
TFAB_API tfab_status_t tfab_cluster_load(const char *path, tfab_cluster_t *cluster, char *err,
                                         size_t err_len);

/* Rank and size from a launcher's environment: TFAB_RANK/TFAB_SIZE, Slurm (SLURM_PROCID,
 * SLURM_NTASKS), Open MPI (OMPI_COMM_WORLD_RANK/SIZE), MPICH/Intel MPI/PMI (PMI_RANK,
 * PMI_SIZE), first found. Returns 1 and sets both when found, 0 when none is set, -1 (with
 * err) when set but malformed. which_p names the variable used. */
TFAB_API int tfab_cluster_env_rank(int *rank_p, int *size_p, const char **which_p, char *err,
                                   size_t err_len);

/* ---- placement ---------------------------------------------------------------------------- */

/* What placement needs to know of a model: bytes per layer (weights) and KV cache per layer. */
typedef struct tfab_plan_model {
    char      path[512];
    uint32_t  n_layer, n_embd, n_vocab, n_ctx;
    uint64_t *layer_bytes; /* [n_layer] weights of blk.L.* */
    uint64_t  kv_layer;    /* KV cache bytes per layer at n_ctx (f32 keys and values) */
    uint64_t  first_bytes; /* token embeddings (first stage) */
    uint64_t  last_bytes;  /* output norm and head (last stage; the embeddings when tied) */
} tfab_plan_model_t;

/* Read the sizes from a GGUF file's tensor table (no weight page is touched); n_ctx 0: the
 * model's, at most 4096. Free with tfab_plan_model_free. Errors name the file. */
TFAB_API tfab_status_t tfab_plan_model_read(const char *path, uint32_t n_ctx,
                                            tfab_plan_model_t *model, char *err, size_t err_len);
TFAB_API void          tfab_plan_model_free(tfab_plan_model_t *model);

typedef struct tfab_plan {
    unsigned n;                             /* stages (= ranks) */
    unsigned order[TFAB_CLUSTER_MAX_RANKS]; /* rank of each stage; order[0] = 0 */
    uint32_t begin[TFAB_CLUSTER_MAX_RANKS]; /* layers of each stage */
    uint32_t end[TFAB_CLUSTER_MAX_RANKS];
    uint64_t need[TFAB_CLUSTER_MAX_RANKS];      /* bytes: weights + KV (+ embeddings/head) */
    uint64_t mem[TFAB_CLUSTER_MAX_RANKS];       /* bytes available on that rank */
    char     link[TFAB_CLUSTER_MAX_RANKS][128]; /* stage s -> s + 1; [n - 1]: logits back to 0 */
    int      link_cost[TFAB_CLUSTER_MAX_RANKS]; /* 0 verbs, 10 tcp, 1000 no path between the
                                                   hosts, -1 without a topology */
    uint64_t act_bytes_decode;  /* bytes per generated token on each stage -> stage link */
    uint64_t act_bytes_prefill; /* bytes per prompt token on each stage -> stage link */
    uint64_t logits_bytes;      /* bytes per generated token on the logits link */
    uint64_t weights, kv;       /* totals */
} tfab_plan_t;

/* This host's available memory (MemAvailable of /proc/meminfo), what placement counts a rank
 * as having when the cluster file gives no `mem`; 0 if unknown. */
TFAB_API uint64_t tfab_plan_mem_available(void);

/* Place the model: layer ranges from the cluster file when given, else consecutive ranges in
 * proportion to each rank's memory (mem_by_rank[r], bytes); the order of the nodes is the one
 * whose consecutive stages use the best-ranked links of topo (NULL or hosts not named: the
 * file's order). TFAB_ERR_NOMEM with the numbers in err when the model does not fit. */
TFAB_API tfab_status_t tfab_plan_make(const tfab_cluster_t *cluster, const tfab_topology_t *topo,
                                      const tfab_plan_model_t *model, const uint64_t *mem_by_rank,
                                      uint32_t chunk, tfab_plan_t *plan, char *err, size_t err_len);

/* ---- the pipeline engine ----------------------------------------------------------------- */

typedef struct tfab_pipe tfab_pipe_t;

typedef struct tfab_pipe_params {
    const tfab_cluster_t *cluster;   /* required */
    const char           *model;     /* required: the model on the coordinator */
    uint32_t              n_ctx;     /* 0: the model's (at most 4096) */
    unsigned              n_threads; /* 0: online CPUs */
} tfab_pipe_params_t;

/* Coordinator: listen on rank 0's address, wait up to join_s for every node to join (token
 * checked by the fabric), assign each its stage (layers), load stage 0 here, and wait until
 * every node has loaded its stage and connected to the next. Blocks. Errors are logged with
 * the rank and address: TFAB_ERR_TIMEOUT (a node did not join), TFAB_ERR_INVALID (cluster
 * file vs model: layer ranges), a node's own failure status, transport errors. */
TFAB_API tfab_status_t tfab_pipe_create(const tfab_pipe_params_t *params, tfab_pipe_t **pipe_p);
/* Stop every node (they exit) and free everything. NULL is a no-op. */
TFAB_API void tfab_pipe_destroy(tfab_pipe_t *pipe);

TFAB_API uint32_t tfab_pipe_n_vocab(const tfab_pipe_t *pipe);
/* The placement, "RANK:[BEGIN,END) -> RANK:[BEGIN,END) ..." in pipeline order, into buf. */
TFAB_API void     tfab_pipe_stages(const tfab_pipe_t *pipe, char *buf, size_t len);
TFAB_API uint32_t tfab_pipe_n_ctx(const tfab_pipe_t *pipe);

/* Run tokens at positions pos..pos+n-1 through the pipeline in chunks of the cluster's chunk
 * size (transfers of one chunk overlap the compute of the next) and write the logits of the
 * last token (n_vocab floats) to logits. Blocks. A node that dies or falls silent for dead_ms
 * fails the call with TFAB_ERR_CONN or TFAB_ERR_TIMEOUT, logged naming the node; the pipe is
 * then unusable. */
TFAB_API tfab_status_t tfab_pipe_eval(tfab_pipe_t *pipe, const int32_t *tokens, uint32_t n,
                                      uint32_t pos, float *logits);

typedef struct tfab_pipe_stats {
    uint64_t bytes_sent;     /* activation bytes sent by the coordinator */
    uint64_t bytes_received; /* logits bytes received */
    uint64_t tokens;         /* tokens evaluated */
    double   compute_s;      /* time in the coordinator's own stage */
    double   wait_s;         /* time waiting for the rest of the pipeline */
    double   xfer_s;         /* batch sends to the next stage: posted to completed */
    double   hidden_s;       /* ... the part the next chunk's compute here overlapped */
} tfab_pipe_stats_t;
TFAB_API void tfab_pipe_get_stats(const tfab_pipe_t *pipe, tfab_pipe_stats_t *stats);

typedef struct tfab_node_params {
    const char *coordinator; /* required: "ip:port" of rank 0 */
    const char *listen;      /* required: "ip:port" this node listens on (its cluster-file
                                address) */
    const char *token;       /* required: the cluster token */
    const char *model;       /* this host's copy of the model; NULL: the coordinator's path */
    int         rank;        /* from a launcher, or -1: the coordinator matches listen */
    unsigned    n_threads;   /* 0: online CPUs */
    const char *backend;     /* NULL: "tcp" */
    size_t      pool_bytes;  /* message buffers (pre-faulted); 0: 32 MiB */
} tfab_node_params_t;

/* A node: join the coordinator, load the assigned stage, serve it until the coordinator stops
 * the cluster (TFAB_OK) or goes away (TFAB_ERR_CONN). Blocks. */
TFAB_API tfab_status_t tfab_node_run(const tfab_node_params_t *params);

#ifdef __cplusplus
}
#endif
#endif
