// One LLaVA sample (data/dataset.c + data/conversation.c): a JSON item ->
// DatasetSample -> conv_build with every template, with and without a length
// limit, with the legacy tokenizer fixture.
#include <cjson/cJSON.h>

#include "common/json.h"
#include "data/conversation.h"
#include "data/dataset.h"
#include "tests/fuzz/fuzz_util.h"

#ifndef LLAVA_SOURCE_DIR
#define LLAVA_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Tokenizer *tok;
    Error err = {{0}};
    if (!tok && tokenizer_load(&tok, LLAVA_SOURCE_DIR "/tests/fixtures/tokenizer/legacy", &err) != 0)
        FATAL("%s", err.msg);
    cJSON *item = json_parse_text((const char *)data, size, "fuzz", &err);
    if (!item) return 0;
    DatasetSample s;
    DatasetProblem p;
    if (dataset_sample_from_json(item, 0, 1, &s, &p) == 0) {
        ConvTurn *turns = xcalloc((size_t)s.n_turns + 1, sizeof *turns);
        for (int i = 0; i < s.n_turns; i++)
            turns[i] = (ConvTurn){s.turns[i].role == ROLE_HUMAN ? CONV_HUMAN : CONV_GPT, s.turns[i].value,
                                  strlen(s.turns[i].value)};
        Conversation c = {turns, s.n_turns, s.image != NULL};
        for (int tmpl = 0; tmpl < 3; tmpl++)
            for (int lim = 0; lim < 2; lim++)
                for (int gen = 0; gen < 2; gen++) {
                    ConvOptions o = {(ConvTemplate)tmpl, 5, 4004, lim ? 24 : 0, gen};
                    ConvResult r;
                    memset(&r, 0, sizeof r);  // conv_build reuses the buffers of a zeroed or earlier result
                    conv_build(tok, &c, &o, &r);
                    conv_result_free(&r);
                }
        free(turns);
        dataset_sample_free(&s);
    }
    cJSON_Delete(item);
    return 0;
}
