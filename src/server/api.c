/* api.c - the request parser of tfab serve: OpenAI (chat, completions) and Ollama (generate,
 * chat) JSON bodies into one srv_request_t, every field type- and range-checked, and the OpenAI
 * error JSON. Input is untrusted: any bytes give a request or an error, never a crash. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "srv.h"

void srv_error_set(srv_error_t *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    snprintf(e->type, sizeof(e->type), "%s", type ? type : "invalid_request_error");
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

char *srv_error_json(const srv_error_t *err)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", err->message);
    cJSON_AddStringToObject(e, "type", err->type);
    if (err->param[0])
        cJSON_AddStringToObject(e, "param", err->param);
    else
        cJSON_AddNullToObject(e, "param");
    if (err->code[0])
        cJSON_AddStringToObject(e, "code", err->code);
    else
        cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

#define BAD(param, ...)                                                                            \
    do {                                                                                           \
        srv_error_set(err, 400, "invalid_request_error", param, NULL, __VA_ARGS__);                \
        return -1;                                                                                 \
    } while (0)

/* Optional number field within [lo, hi]; 1 when present. */
static int get_num(const cJSON *obj, const char *key, double lo, double hi, double *out,
                   srv_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        BAD(key, "'%s' must be a number", key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        BAD(key, "'%s' must be from %g to %g, got %g", key, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 1;
}

static int get_int(const cJSON *obj, const char *key, double lo, double hi, double *out,
                   srv_error_t *err)
{
    int r = get_num(obj, key, lo, hi, out, err);
    if (r == 1 && *out != floor(*out))
        BAD(key, "'%s' must be an integer", key);
    return r;
}

static int get_bool(const cJSON *obj, const char *key, int *out, srv_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        BAD(key, "'%s' must be a boolean", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static int get_stop(const cJSON *obj, const char *key, srv_request_t *req, srv_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    const cJSON *one = cJSON_IsString(v) ? v : NULL;
    if (one == NULL && !cJSON_IsArray(v))
        BAD(key, "'%s' must be a string or an array of strings", key);
    if (!one && cJSON_GetArraySize(v) > SRV_MAX_STOP)
        BAD(key, "'%s' holds at most %d strings", key, SRV_MAX_STOP);
    const cJSON *it = one ? one : (v->child);
    for (; it; it = one ? NULL : it->next) {
        if (!cJSON_IsString(it))
            BAD(key, "'%s' must be a string or an array of strings", key);
        size_t n = strlen(it->valuestring);
        if (n == 0)
            continue;
        if (n >= SRV_STOP_LEN)
            BAD(key, "each '%s' string is at most %d bytes", key, SRV_STOP_LEN - 1);
        memcpy(req->stop[req->n_stop++], it->valuestring, n + 1);
    }
    return 1;
}

/* Text of a message's content: a string, or OpenAI's array of {type:"text", text} parts. */
static char *content_text(const cJSON *c)
{
    if (cJSON_IsString(c))
        return strdup(c->valuestring);
    if (!cJSON_IsArray(c))
        return NULL;
    size_t       len = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsString(t) || !cJSON_IsString(k) || strcmp(k->valuestring, "text") != 0)
            return NULL;
        len += strlen(t->valuestring);
    }
    char *s = malloc(len + 1), *w = s;
    if (s == NULL)
        return NULL;
    cJSON_ArrayForEach(p, c)
    {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t      n = strlen(t);
        memcpy(w, t, n);
        w += n;
    }
    *w = '\0';
    return s;
}

static int parse_messages(const cJSON *root, srv_request_t *req, srv_error_t *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (m == NULL)
        BAD("messages", "'messages' is required");
    if (!cJSON_IsArray(m))
        BAD("messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(m);
    if (n == 0)
        BAD("messages", "'messages' must not be empty");
    if ((req->msgs = calloc((size_t)n, sizeof(*req->msgs))) == NULL)
        BAD(NULL, "out of memory");
    const cJSON *it;
    int          i = 0;
    cJSON_ArrayForEach(it, m)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *c    = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsObject(it) || !cJSON_IsString(role))
            BAD("messages", "messages[%d].role must be a string", i);
        if (c == NULL || cJSON_IsNull(c)) {
            req->msgs[i].content = strdup("");
        } else if ((req->msgs[i].content = content_text(c)) == NULL) {
            BAD("messages", "messages[%d].content must be a string or an array of text parts", i);
        }
        req->msgs[i].role = strdup(role->valuestring);
        req->n_msgs       = (size_t)++i;
        if (req->msgs[i - 1].role == NULL || req->msgs[i - 1].content == NULL)
            BAD(NULL, "out of memory");
    }
    return 0;
}

/* Sampling fields: OpenAI's at the top level, Ollama's inside "options". */
static int parse_sampling(const cJSON *o, int ollama, srv_request_t *req, srv_error_t *err)
{
    double x;
    int    r;
    if ((r = get_num(o, "temperature", 0, 100, &x, err)) < 0)
        return -1;
    if (r) {
        req->sp.temperature = (float)x;
        req->sp.field_mask |= TFAB_SAMPLER_PARAM_TEMPERATURE;
    }
    if ((r = get_num(o, "top_p", 0, 1, &x, err)) < 0)
        return -1;
    if (r) {
        req->sp.top_p = (float)x;
        req->sp.field_mask |= TFAB_SAMPLER_PARAM_TOP_P;
    }
    if ((r = get_int(o, "top_k", 0, 1e9, &x, err)) < 0)
        return -1;
    if (r) {
        req->sp.top_k = (int32_t)x;
        req->sp.field_mask |= TFAB_SAMPLER_PARAM_TOP_K;
    }
    if ((r = get_num(o, "min_p", 0, 1, &x, err)) < 0)
        return -1;
    if (r) {
        req->sp.min_p = (float)x;
        req->sp.field_mask |= TFAB_SAMPLER_PARAM_MIN_P;
    }
    if ((r = get_num(o, "repeat_penalty", 0.01, 100, &x, err)) < 0)
        return -1;
    if (r) {
        req->sp.repeat_penalty = (float)x;
        req->sp.field_mask |= TFAB_SAMPLER_PARAM_REPEAT_PENALTY;
    }
    if ((r = get_int(o, "seed", -9.2e18, 9.2e18, &x, err)) < 0)
        return -1;
    if (r) {
        req->sp.seed = (uint64_t)(int64_t)x;
        req->sp.field_mask |= TFAB_SAMPLER_PARAM_SEED;
    }
    if (get_num(o, "frequency_penalty", -2, 2, &x, err) < 0 ||
        get_num(o, "presence_penalty", -2, 2, &x, err) < 0)
        return -1; /* accepted, not applied */
    const char *mt[] = {"max_tokens", "max_completion_tokens", "num_predict"};
    for (int i = ollama ? 2 : 0; i < (ollama ? 3 : 2); i++) {
        if ((r = get_int(o, mt[i], ollama ? -2 : 1, 1e7, &x, err)) < 0)
            return -1;
        if (r)
            req->max_tokens = x < 0 ? -1 : (int)x; /* Ollama: -1, -2 = no limit */
    }
    return get_stop(o, "stop", req, err) < 0 ? -1 : 0;
}

int srv_request_parse(srv_api_t api, const char *body, size_t len, srv_request_t *req,
                      srv_error_t *err)
{
    memset(req, 0, sizeof(*req));
    req->api        = api;
    req->max_tokens = -1;
    int ollama      = api == SRV_API_OL_GENERATE || api == SRV_API_OL_CHAT;
    req->stream     = ollama; /* Ollama streams unless told not to */
    cJSON *root     = cJSON_ParseWithLength(body, len);
    int    rc       = -1;
    if (root == NULL) {
        srv_error_set(err, 400, "invalid_request_error", NULL, NULL,
                      "the request body is not valid JSON");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        srv_error_set(err, 400, "invalid_request_error", NULL, NULL,
                      "the request body must be a JSON object");
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model == NULL) {
        srv_error_set(err, 400, "invalid_request_error", "model", NULL, "'model' is required");
        goto out;
    }
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0' ||
        strlen(model->valuestring) >= sizeof(req->model)) {
        srv_error_set(err, 400, "invalid_request_error", "model", NULL,
                      "'model' must be a non-empty string of at most %zu bytes",
                      sizeof(req->model) - 1);
        goto out;
    }
    snprintf(req->model, sizeof(req->model), "%s", model->valuestring);
    if (get_bool(root, "stream", &req->stream, err) < 0)
        goto out;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            srv_error_set(err, 400, "invalid_request_error", "stream_options", NULL,
                          "'stream_options' must be an object");
            goto out;
        }
        if (get_bool(so, "include_usage", &req->include_usage, err) < 0)
            goto out;
    }
    double n;
    int    r = get_int(root, "n", 1, 1, &n, err); /* one choice only */
    if (r < 0)
        goto out;
    if (api == SRV_API_CHAT || api == SRV_API_OL_CHAT) {
        if (parse_messages(root, req, err) < 0)
            goto out;
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child))
            p = p->child; /* ["text"] */
        if (p == NULL) {
            srv_error_set(err, 400, "invalid_request_error", "prompt", NULL,
                          "'prompt' is required");
            goto out;
        }
        if (!cJSON_IsString(p)) {
            srv_error_set(err, 400, "invalid_request_error", "prompt", NULL,
                          "'prompt' must be a string");
            goto out;
        }
        if ((req->prompt = strdup(p->valuestring)) == NULL)
            goto out;
    }
    if (ollama) {
        /* Ollama's defaults (temperature 0.8, top_k 40, top_p 0.9), then its "options" */
        req->sp.field_mask =
            TFAB_SAMPLER_PARAM_TEMPERATURE | TFAB_SAMPLER_PARAM_TOP_K | TFAB_SAMPLER_PARAM_TOP_P;
        req->sp.temperature = 0.8f;
        req->sp.top_k       = 40;
        req->sp.top_p       = 0.9f;
        const cJSON *o      = cJSON_GetObjectItemCaseSensitive(root, "options");
        if (o && !cJSON_IsNull(o)) {
            if (!cJSON_IsObject(o)) {
                srv_error_set(err, 400, "invalid_request_error", "options", NULL,
                              "'options' must be an object");
                goto out;
            }
            if (parse_sampling(o, 1, req, err) < 0)
                goto out;
        }
    } else {
        /* OpenAI's defaults: temperature 1, top_p 1, nothing else cut */
        req->sp.field_mask = TFAB_SAMPLER_PARAM_TEMPERATURE | TFAB_SAMPLER_PARAM_TOP_K |
                             TFAB_SAMPLER_PARAM_TOP_P | TFAB_SAMPLER_PARAM_MIN_P;
        req->sp.temperature = 1.0f;
        req->sp.top_k       = 0;
        req->sp.top_p       = 1.0f;
        req->sp.min_p       = 0.0f;
        if (parse_sampling(root, 0, req, err) < 0)
            goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc < 0)
        srv_request_free(req);
    return rc;
}

void srv_request_free(srv_request_t *req)
{
    for (size_t i = 0; i < req->n_msgs; i++) {
        free((char *)req->msgs[i].role);
        free((char *)req->msgs[i].content);
    }
    free(req->msgs);
    free(req->prompt);
    req->msgs   = NULL;
    req->prompt = NULL;
    req->n_msgs = 0;
}
