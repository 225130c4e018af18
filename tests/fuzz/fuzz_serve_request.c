/* fuzz_serve_request.c - libFuzzer target for tfab serve's request parser: the first byte picks
 * the endpoint (OpenAI chat/completions, Ollama generate/chat), the rest is the body. Any bytes
 * give a request whose fields hold the parser's promises, or a 400 whose error JSON parses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "server/srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    srv_api_t     api = (srv_api_t)(data[0] % 4);
    srv_request_t req;
    srv_error_t   err = {0};
    if (srv_request_parse(api, (const char *)data + 1, size - 1, &req, &err) != 0) {
        if (err.status != 400 || err.message[0] == '\0')
            __builtin_trap();
        char  *j = srv_error_json(&err);
        cJSON *p = j ? cJSON_Parse(j) : NULL;
        if (p == NULL ||
            !cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "error"), "message")))
            __builtin_trap();
        cJSON_Delete(p);
        free(j);
        return 0;
    }
    if (req.model[0] == '\0' || strlen(req.model) >= sizeof(req.model) || req.n_stop > SRV_MAX_STOP)
        __builtin_trap();
    int chat = api == SRV_API_CHAT || api == SRV_API_OL_CHAT;
    if (chat ? (req.n_msgs == 0 || req.prompt != NULL) : (req.prompt == NULL || req.n_msgs != 0))
        __builtin_trap();
    for (size_t i = 0; i < req.n_msgs; i++)
        if (req.msgs[i].role == NULL || req.msgs[i].content == NULL)
            __builtin_trap();
    for (unsigned i = 0; i < req.n_stop; i++)
        if (req.stop[i][0] == '\0' || strlen(req.stop[i]) >= SRV_STOP_LEN)
            __builtin_trap();
    if (req.sp.temperature < 0 || req.sp.top_p < 0 || req.sp.top_p > 1)
        __builtin_trap();
    srv_request_free(&req);
    return 0;
}
