// The flags every command that talks to a chat-completions endpoint shares
// (datagen, judge, the ScienceQA ensemble), and their translation into a
// ChatConfig. The key is read from the environment variable --api-key-env
// names: it is never a flag, so it never shows in `ps` or shell history.
#ifndef LLAVA_CHAT_CLI_H
#define LLAVA_CHAT_CLI_H

#include "common/args.h"
#include "common/chat_client.h"

typedef struct {
    const char *endpoint, *model, *api_key_env, *price;
    int concurrency, retries, max_tokens, seed, no_system_role;
    float timeout_s, temperature, backoff_s;
} ChatCli;

void chat_cli_default(ChatCli *cli, float temperature, int max_tokens);
// Appends the flags to specs (room for 12 more); `judge` names them
// --judge-endpoint, --judge-model, ... (then optional: the judge is an
// option of that command) for commands whose --model is a model folder.
// Returns the new count.
int chat_cli_args(ChatCli *cli, ArgSpec *specs, int n, int judge);
// Checks the flags, reads the key; err names the flag or variable.
int chat_cli_config(const ChatCli *cli, ChatConfig *cfg, Error *err);

#endif
