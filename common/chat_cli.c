#include "common/chat_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void chat_cli_default(ChatCli *cli, float temperature, int max_tokens) {
    memset(cli, 0, sizeof *cli);
    cli->concurrency = 4;
    cli->retries = 5;
    cli->max_tokens = max_tokens;
    cli->timeout_s = 120.0f;
    cli->temperature = temperature;
    cli->backoff_s = 1.0f;
}

typedef struct {
    const char *endpoint, *model, *key, *conc, *timeout, *retries, *backoff, *temp, *max_tokens, *price, *seed,
        *no_system;
} FlagNames;

static const FlagNames PLAIN = {"endpoint", "model", "api-key-env", "concurrency", "timeout", "retries", "backoff",
                                "temperature", "max-tokens", "price-per-1k", "seed", "no-system-role"};
static const FlagNames JUDGE = {"judge-endpoint", "judge-model", "api-key-env", "judge-concurrency", "judge-timeout",
                                "judge-retries", "judge-backoff", "judge-temperature", "judge-max-tokens",
                                "price-per-1k", "judge-seed", "judge-no-system-role"};

int chat_cli_args(ChatCli *cli, ArgSpec *specs, int n, int judge) {
    const FlagNames *f = judge ? &JUDGE : &PLAIN;
    specs[n++] = (ArgSpec){f->endpoint, ARG_STRING, &cli->endpoint,
                           "chat-completions base URL, e.g. http://127.0.0.1:8080/v1 (/chat/completions is added)",
                           !judge};
    specs[n++] = (ArgSpec){f->model, ARG_STRING, &cli->model, "model name the endpoint serves", !judge};
    specs[n++] = (ArgSpec){f->key, ARG_STRING, &cli->api_key_env,
                           "name of the environment variable holding the API key (default: none sent)", 0};
    specs[n++] = (ArgSpec){f->conc, ARG_INT, &cli->concurrency, "requests in flight at once (default 4)", 0};
    specs[n++] = (ArgSpec){f->timeout, ARG_FLOAT, &cli->timeout_s, "seconds per attempt (default 120)", 0};
    specs[n++] = (ArgSpec){f->retries, ARG_INT, &cli->retries,
                           "retries on timeouts, 429, 5xx, broken bodies (default 5)", 0};
    specs[n++] = (ArgSpec){f->backoff, ARG_FLOAT, &cli->backoff_s,
                           "first backoff in seconds, doubled per retry with jitter, at least Retry-After (default 1)",
                           0};
    specs[n++] = (ArgSpec){f->temp, ARG_FLOAT, &cli->temperature, "sampling temperature sent (negative: not sent)", 0};
    specs[n++] = (ArgSpec){f->max_tokens, ARG_INT, &cli->max_tokens, "max_tokens sent (0: not sent)", 0};
    specs[n++] = (ArgSpec){f->price, ARG_STRING, &cli->price,
                           "P or P,C: price per 1K prompt (and completion) tokens, for a cost line", 0};
    specs[n++] = (ArgSpec){f->seed, ARG_INT, &cli->seed, "seed of the retry jitter (default 0)", 0};
    specs[n++] = (ArgSpec){f->no_system, ARG_FLAG, &cli->no_system_role,
                           "send the system message at the head of the first user message (for servers without "
                           "a system role, e.g. llava serve)", 0};
    return n;
}

int chat_cli_config(const ChatCli *cli, ChatConfig *cfg, Error *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->endpoint = cli->endpoint;
    cfg->model = cli->model;
    cfg->concurrency = cli->concurrency;
    cfg->timeout_s = cli->timeout_s;
    cfg->max_retries = cli->retries;
    cfg->backoff_s = cli->backoff_s;
    cfg->backoff_max_s = 60.0;
    cfg->retry_after_max_s = 300.0;
    // The flag is a float: send 0.2, not 0.20000000298023224.
    char t[32];
    snprintf(t, sizeof t, "%.6g", (double)cli->temperature);
    cfg->temperature = strtod(t, NULL);
    cfg->max_tokens = cli->max_tokens;
    cfg->seed = (uint64_t)cli->seed;
    cfg->fold_system = cli->no_system_role;
    cfg->price_prompt_1k = cfg->price_completion_1k = -1;
    if (cli->api_key_env) {
        const char *key = getenv(cli->api_key_env);
        if (!key || !key[0])
            return err_set(err, "--api-key-env %s: that environment variable is not set or empty", cli->api_key_env);
        cfg->api_key = key;
        cfg->api_key_env = cli->api_key_env;
    }
    if (cli->price) {
        char *end;
        cfg->price_prompt_1k = strtod(cli->price, &end);
        if (end == cli->price || cfg->price_prompt_1k < 0) goto bad_price;
        if (*end == ',') {
            const char *c = end + 1;
            cfg->price_completion_1k = strtod(c, &end);
            if (end == c || cfg->price_completion_1k < 0) goto bad_price;
        }
        if (*end) goto bad_price;
    }
    if (cli->backoff_s <= 0) return err_set(err, "--backoff must be > 0");
    return 0;
bad_price:
    return err_set(err, "--price-per-1k: expected P or P,C (non-negative numbers), got '%s'", cli->price);
}
