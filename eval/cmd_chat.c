// `llava chat`: an interactive conversation about one image, as LLaVA's
// serve/cli.py runs it: "USER: " prompts for a question, an empty line (or
// end of input) ends the session, the image goes with the first question, and
// every turn is generated from the whole conversation in the template. The
// KV cache keeps the conversation so far: each turn runs only its new tokens.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/gen_cli.h"
#include "eval/image_input.h"
#include "eval/text_prompt.h"
#include "common/commands.h"

// Streams the answer: decodes everything generated so far and prints what is
// new, holding back a trailing incomplete UTF-8 character (shown as U+FFFD).
typedef struct {
    const TextPrompt *tp;
    int32_t *ids;
    int n, cap;
    size_t printed;  // bytes of the decoded text already written
    FILE *out;
} Streamer;

static void stream_flush(Streamer *s, int final) {
    char *text = tokenizer_decode(s->tp->tok, s->ids, s->n, 1, NULL);
    size_t len = strlen(text);
    if (!final && len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0) len -= 3;
    if (len > s->printed) {
        fwrite(text + s->printed, 1, len - s->printed, s->out);
        fflush(s->out);
        s->printed = len;
    }
    free(text);
}

static void on_token(void *ctx, int seq, int token) {
    (void)seq;
    Streamer *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->ids = xrealloc(s->ids, (size_t)s->cap * sizeof(int32_t));
    }
    s->ids[s->n++] = token;
    stream_flush(s, 0);
}

// Reads one line without its newline; NULL at end of input.
static char *read_line(FILE *in) {
    size_t cap = 256, n = 0;
    char *line = xmalloc(cap);
    int c;
    while ((c = fgetc(in)) != EOF && c != '\n') {
        if (n + 1 >= cap) line = xrealloc(line, cap *= 2);
        line[n++] = (char)c;
    }
    if (c == EOF && n == 0) {
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\r') n--;
    line[n] = '\0';
    return line;
}

int cmd_chat(int argc, char **argv) {
    GenCli cli;
    gen_cli_default(&cli, 0.2f, 512);
    const char *image_path = NULL;
    ArgSpec specs[32];
    int n = 0;
    specs[n++] = (ArgSpec){"image", ARG_STRING, &image_path, "the image to talk about (JPEG, PNG, GIF)", 1};
    n = gen_cli_args(&cli, specs, n);
    int rc = args_parse(argc, argv, specs, n, "llava chat --model DIR --image FILE [options]",
                        "Interactive conversation about an image in the conversation template, as LLaVA's CLI.\n"
                        "Type a question after \"USER: \"; an empty line or end of input ends the session.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (gen_cli_check(&cli, "chat") != 0) return EXIT_BAD_INPUT;
    Error err = {{0}};
    LlavaModel m;
    if (gen_cli_load(&cli, &m, &err) != 0) {
        fprintf(stderr, "llava chat: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_BAD_INPUT;
    TextPrompt tp = {0};
    ImageInput img = {0};
    Generator g = {0};
    float *pixels = NULL;
    char **turns = NULL;
    int n_turns = 0;
    if (text_prompt_init(&tp, gen_cli_tokenizer_dir(&cli), cli.template_name, &m.cfg, &err) != 0 ||
        image_input_init(&img, gen_cli_processor_dir(&cli), &m.cfg, cli.aspect, &err) != 0)
        goto fail;
    pixels = xmalloc((size_t)3 * img.S * img.S * sizeof(float));
    if (image_input_load(&img, image_path, pixels, &err) != 0 ||
        gen_init(&g, &m, 1, m.cfg.text.max_positions, &err) != 0)
        goto fail;
    status = EXIT_OK;
    for (;;) {
        printf("USER: ");
        fflush(stdout);
        char *line = read_line(stdin);
        if (!line || !*line) {
            printf("%sexit...\n", line ? "" : "\n");
            free(line);
            break;
        }
        // The image goes with the first question.
        turns = xrealloc(turns, (size_t)(n_turns + 2) * sizeof(char *));
        if (n_turns == 0) {
            turns[0] = xmalloc(strlen(line) + 9);
            sprintf(turns[0], "<image>\n%s", line);
            free(line);
        } else {
            turns[n_turns] = line;
        }
        n_turns++;
        const int32_t *ids;
        int n_ids;
        if (text_prompt_build(&tp, (const char *const *)turns, n_turns, 1, &ids, &n_ids, &err) != 0) goto fail;
        if (n_ids >= g.T_cap) {
            fprintf(stderr, "llava chat: the conversation has reached the model's %d positions\n", g.T_cap);
            break;
        }
        printf("ASSISTANT: ");
        fflush(stdout);
        Streamer st = {.tp = &tp, .out = stdout};
        GenOptions opt = gen_cli_options(&cli, tp.eos_id);
        if (opt.max_new_tokens > g.T_cap - n_ids) opt.max_new_tokens = g.T_cap - n_ids;
        opt.on_token = on_token;
        opt.ctx = &st;
        GenPrompt prompt = {.ids = ids, .n = n_ids, .n_images = 1, .pixels = pixels};
        GenOutput out;
        if (gen_continue(&g, &prompt, &opt, &out, &err) != 0) {
            free(st.ids);
            goto fail;
        }
        stream_flush(&st, 1);
        printf("\n");
        // The answer joins the conversation as its text (LLaVA's cli.py keeps
        // a trailing "</s>" in it; the template adds its own).
        char *answer = text_prompt_answer(&tp, out.ids, out.n);
        if (*answer) {
            turns[n_turns++] = answer;
        } else {  // the template cannot hold an empty answer: forget the question
            fprintf(stderr, "(empty answer: the question is dropped from the conversation)\n");
            free(answer);
            free(turns[--n_turns]);
            if (n_turns == 0) {  // keep the image with the next first question
                gen_free(&g);
                if (gen_init(&g, &m, 1, m.cfg.text.max_positions, &err) != 0) goto fail;
            }
        }
        gen_output_free(&out);
        free(st.ids);
    }
    goto done;
fail:
    fprintf(stderr, "llava chat: %s\n", err.msg);
    status = status == EXIT_OK ? EXIT_ERROR : EXIT_BAD_INPUT;
done:
    for (int i = 0; i < n_turns; i++) free(turns[i]);
    free(turns);
    free(pixels);
    gen_free(&g);
    image_input_free(&img);
    text_prompt_free(&tp);
    model_free(&m);
    return status;
}
