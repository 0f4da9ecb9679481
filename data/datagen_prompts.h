// Prompt folders for `llava datagen`, in LLaVA's own layout
// (playground/data/prompts/<type>/): system_message.txt plus few-shot pairs
// NNN_caps.txt (an image's context) / NNN_conv.txt (the wanted response).
// The messages sent for one image: the system message, each pair as a
// user/assistant turn in NNN order, then the image's context as the last user
// turn.
#ifndef LLAVA_DATAGEN_PROMPTS_H
#define LLAVA_DATAGEN_PROMPTS_H

#include "common/chat_client.h"
#include "common/util.h"

typedef struct {
    char *dir;
    char *system;    // system_message.txt, trailing whitespace trimmed
    char **caps;     // [n_shots] NNN_caps.txt
    char **conv;     // [n_shots] NNN_conv.txt
    int n_shots;
} PromptFolder;

// Loads a folder. A caps file without its conv file (or the reverse) is
// skipped with a warning on stderr (LLaVA's own complex_reasoning folder has
// one); a missing system_message.txt or an unreadable file is an error.
int prompt_folder_load(PromptFolder *pf, const char *dir, Error *err);
void prompt_folder_free(PromptFolder *pf);
// The message list for one context (points into pf and context):
// 1 + 2 * n_shots + 1 messages. malloc'd array.
ChatMessage *prompt_folder_messages(const PromptFolder *pf, const char *context, int *n);

#endif
