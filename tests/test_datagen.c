// llava datagen's parts without a server: COCO loading and the context text
// (coordinates as Python prints round(v, 3)), the JSONL input and its bad
// lines, prompt-folder assembly against a message list written out by hand,
// response parsing in the paper's formats and broken ones, and the
// deterministic question / <image> placement choices.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/datagen.h"
#include "testlib.h"

static const char *src_dir = ".";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        EXPECT(0, "cannot write %s", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static void test_coords(void) {
    struct {
        double v;
        const char *want;  // Python: repr(round(v, 3))
    } t[] = {{0.5, "0.5"}, {0.0, "0.0"}, {1.0, "1.0"}, {0.123, "0.123"}, {0.1204, "0.12"}, {0.93828125, "0.938"},
             {0.0004, "0.0"}, {0.0006, "0.001"}, {0.6665, "0.666"}, {0.2 + 0.1, "0.3"}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char out[32];
        datagen_format_coord(t[i].v, out, sizeof out);
        EXPECT(strcmp(out, t[i].want) == 0, "coord %.17g: %s, want %s", t[i].v, out, t[i].want);
    }
}

static void test_coco(void) {
    char caps[4096], inst[4096];
    snprintf(caps, sizeof caps, "%s/tests/fixtures/datagen/captions_tiny.json", src_dir);
    snprintf(inst, sizeof inst, "%s/tests/fixtures/datagen/instances_tiny.json", src_dir);
    DatagenImages imgs;
    Error err = {{0}};
    EXPECT(datagen_load_coco(&imgs, caps, inst, &err) == 0, "coco: %s", err.msg);
    EXPECT(imgs.n == 4, "%d images", imgs.n);
    if (imgs.n != 4) return;
    EXPECT(strcmp(imgs.items[0].id, "000000033471") == 0 && strcmp(imgs.items[0].image, "000000033471.jpg") == 0,
           "id %s image %s", imgs.items[0].id, imgs.items[0].image);
    // Expected text by hand (coordinates from Python's round(v, 3)).
    char *c0 = datagen_context(&imgs.items[0], 1);
    EXPECT(strcmp(c0, "A bus parked at the curb next to a stop sign.\nA white city bus on a quiet street.\n\n"
                      "bus: [0.1, 0.2, 0.6, 0.7]\nstop sign: [0.938, 0.021, 1.0, 0.146]") == 0,
           "context 0:\n%s", c0);
    free(c0);
    char *c1 = datagen_context(&imgs.items[1], 0);
    EXPECT(strcmp(c1, "A cat sleeping on a red sofa.\nA grey cat curled up asleep on a couch.") == 0, "captions only:\n%s",
           c1);
    free(c1);
    char *c2 = datagen_context(&imgs.items[2], 1);
    EXPECT(strcmp(c2, "Two dogs run across a sandy beach.\n\ndog: [0.1, 0.1, 0.4, 0.3]\ndog: [0.555, 0.5, 0.888, "
                      "0.667]") == 0,
           "context 2:\n%s", c2);
    free(c2);
    EXPECT(!imgs.items[0].problem && imgs.items[3].problem && strstr(imgs.items[3].problem, "no caption"),
           "image without caption: %s", imgs.items[3].problem ? imgs.items[3].problem : "(none)");
    datagen_images_free(&imgs);
    // A captions file that is not COCO's.
    char bad[] = "/tmp/llava_datagen_bad_XXXXXX";
    int fd = mkstemp(bad);
    EXPECT(fd >= 0, "mkstemp");
    write_text(bad, "{\"images\": [{\"id\": 1}], \"annotations\": []}");
    err.msg[0] = 0;
    EXPECT(datagen_load_coco(&imgs, bad, NULL, &err) != 0 && strstr(err.msg, "images[0]"), "bad coco: %s", err.msg);
    remove(bad);
}

static void test_jsonl(void) {
    char path[] = "/tmp/llava_datagen_jsonl_XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "mkstemp");
    write_text(path,
               "{\"id\": \"x1\", \"image\": \"a/b.png\", \"captions\": [\"One.\", \"Two.\"], \"boxes\": [{\"label\": "
               "\"cup\", \"bbox\": [0.1, 0.2, 0.3, 0.4]}]}\n"
               "\n"
               "{\"image\": \"c.jpg\", \"captions\": [\"Three.\"]}\n"
               "{\"image\": \"d.jpg\", \"captions\": [\"Four.\"], \"boxes\": [{\"label\": \"x\", \"bbox\": [0.5, 0.2, "
               "0.3, 0.4]}]}\n"
               "{\"image\": \"e.jpg\", \"captions\": [\"Five.\"\n");
    DatagenImages imgs;
    Error err = {{0}};
    EXPECT(datagen_load_jsonl(&imgs, path, &err) == 0, "jsonl: %s", err.msg);
    EXPECT(imgs.n == 4, "%d items", imgs.n);
    if (imgs.n == 4) {
        char *c = datagen_context(&imgs.items[0], 1);
        EXPECT(strcmp(c, "One.\nTwo.\n\ncup: [0.1, 0.2, 0.3, 0.4]") == 0, "jsonl context: %s", c);
        free(c);
        EXPECT(strcmp(imgs.items[1].id, "c") == 0 && !imgs.items[1].problem, "id from the image stem: %s",
               imgs.items[1].id);
        EXPECT(imgs.items[2].problem && strstr(imgs.items[2].problem, ":4: boxes[0]"), "x1 > x2: %s",
               imgs.items[2].problem ? imgs.items[2].problem : "(accepted)");
        EXPECT(imgs.items[3].problem && strstr(imgs.items[3].problem, ":5:"), "broken line: %s",
               imgs.items[3].problem ? imgs.items[3].problem : "(accepted)");
    }
    datagen_images_free(&imgs);
    remove(path);
}

static void test_prompt_folder(void) {
    char dir[] = "/tmp/llava_datagen_prompts_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    char p[4096];
    const char *files[][2] = {{"system_message.txt", "Be a photo chat.\n\n"},
                              {"010_caps.txt", "caps ten"},
                              {"010_conv.txt", "conv ten\n"},
                              {"002_caps.txt", "caps two\n"},
                              {"002_conv.txt", "conv two"},
                              {"005_caps.txt", "orphan caps"},
                              {"notes.md", "ignored"}};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i][0]);
        write_text(p, files[i][1]);
    }
    PromptFolder pf;
    Error err = {{0}};
    EXPECT(prompt_folder_load(&pf, dir, &err) == 0, "prompts: %s", err.msg);
    int n = 0;
    ChatMessage *m = prompt_folder_messages(&pf, "the image's context", &n);
    // By hand: system, the pairs in number order (005 has no conv: unused), the context.
    const ChatMessage want[] = {{"system", "Be a photo chat."}, {"user", "caps two"},   {"assistant", "conv two"},
                                {"user", "caps ten"},           {"assistant", "conv ten"}, {"user", "the image's context"}};
    EXPECT(n == 6, "%d messages", n);
    for (int i = 0; i < n && i < 6; i++)
        EXPECT(strcmp(m[i].role, want[i].role) == 0 && strcmp(m[i].content, want[i].content) == 0,
               "message %d: %s '%s', want %s '%s'", i, m[i].role, m[i].content, want[i].role, want[i].content);
    free(m);
    prompt_folder_free(&pf);
    // Without system_message.txt: an error naming it.
    snprintf(p, sizeof p, "%s/system_message.txt", dir);
    remove(p);
    err.msg[0] = 0;
    EXPECT(prompt_folder_load(&pf, dir, &err) != 0 && strstr(err.msg, "system_message.txt"), "no system: %s",
           err.msg);
    for (size_t i = 1; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i][0]);
        remove(p);
    }
    rmdir(dir);
    // Our shipped folders load and have examples.
    for (int t = 0; t < DATAGEN_N_TYPES; t++) {
        snprintf(p, sizeof p, "%s/configs/datagen/%s", src_dir, datagen_type_folder((DatagenType)t));
        err.msg[0] = 0;
        EXPECT(prompt_folder_load(&pf, p, &err) == 0 && pf.n_shots >= 1, "%s: %s", p, err.msg);
        // Our own examples parse with our own parser.
        for (int k = 0; k < pf.n_shots; k++) {
            DatagenTurns turns;
            char why[256];
            EXPECT(datagen_build_turns((DatagenType)t, pf.conv[k], "Describe.", 1, &turns, why, sizeof why) == 0,
                   "%s example %d: %s", p, k, why);
            datagen_turns_free(&turns);
        }
        prompt_folder_free(&pf);
    }
}

typedef struct {
    DatagenType type;
    const char *response;
    int ok;
    int n_turns;
    const char *first;  // first human value (with <image>) or the reason's fragment
    const char *last;   // last gpt value
} ParseCase;

static void test_parsing(void) {
    const ParseCase cases[] = {
        {DATAGEN_CONV, "Question:\nWhat is it?\n===\nAnswer:\nA bus.\n===\nQuestion:\nWhere?\n===\nAnswer:\nOn a street.",
         1, 4, "<image>\nWhat is it?", "On a street."},
        // The paper's format with \r\n and trailing separator.
        {DATAGEN_CONV, "Question:\r\nWhat color?\r\n===\r\nAnswer:\r\nRed.\r\n===\r\n", 1, 2, "<image>\nWhat color?",
         "Red."},
        // Labels on the same line; no separator between a question and its answer.
        {DATAGEN_CONV, "Question: How many?\nAnswer: Two.\n===\nQuestion: Why?\nAnswer: Because.", 1, 4,
         "<image>\nHow many?", "Because."},
        // LLaVA's JSON-lines prompt format, in a code fence.
        {DATAGEN_CONV, "```json\n{\"question\": \"What is this?\", \"answer\": \"A cat.\"}\n{\"question\": \"Is it "
                       "asleep?\", \"answer\": \"Yes.\"}\n```",
         1, 4, "<image>\nWhat is this?", "Yes."},
        {DATAGEN_CONV, "Sure! Here is a conversation.", 0, 0, "neither", NULL},
        {DATAGEN_CONV, "Question:\nWhat?\n===\nAnswer:\nThat.\n===\nQuestion:\nAnd?", 0, 0, "no answer", NULL},
        {DATAGEN_CONV, "Answer:\nFirst.", 0, 0, "before any question", NULL},
        {DATAGEN_CONV, "Question:\nA?\n===\nQuestion:\nB?", 0, 0, "question follows a question", NULL},
        {DATAGEN_CONV, "Question:\n\n===\nAnswer:\nX.", 0, 0, "empty question", NULL},
        {DATAGEN_CONV, "{\"question\": \"A?\", \"answer\": \"B.\"}\n{\"question\": \"C?\"}", 0, 0, "line 2", NULL},
        {DATAGEN_CONV, "", 0, 0, "no question/answer", NULL},
        {DATAGEN_CONV, "Question:\nWhat is in <image>?\n===\nAnswer:\nX.", 0, 0, "<image>", NULL},
        {DATAGEN_COMPLEX, "Question:\nWhy is the man wearing ties?\n===\nAnswer:\nFor a joke.", 1, 2,
         "<image>\nWhy is the man wearing ties?", "For a joke."},
        {DATAGEN_COMPLEX, "Question:\nA?\n===\nAnswer:\nB.\n===\nQuestion:\nC?\n===\nAnswer:\nD.", 0, 0,
         "found 2 pairs", NULL},
        {DATAGEN_DETAIL, "\n  The image shows a bus.\n\nIt is white.  \n", 1, 2, "<image>\nDescribe.",
         "The image shows a bus.\n\nIt is white."},
        {DATAGEN_DETAIL, "  \n ", 0, 0, "empty description", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const ParseCase *c = &cases[i];
        DatagenTurns t;
        char why[256] = "";
        int rc = datagen_build_turns(c->type, c->response, "Describe.", 1, &t, why, sizeof why);
        if (c->ok) {
            EXPECT(rc == 0 && t.n == c->n_turns, "case %zu: rc %d, %d turns (%s)", i, rc, t.n, why);
            if (rc == 0 && t.n == c->n_turns) {
                EXPECT(strcmp(t.value[0], c->first) == 0, "case %zu first: '%s'", i, t.value[0]);
                EXPECT(strcmp(t.value[t.n - 1], c->last) == 0, "case %zu last: '%s'", i, t.value[t.n - 1]);
            }
            datagen_turns_free(&t);
        } else {
            EXPECT(rc != 0 && strstr(why, c->first), "case %zu: rc %d, reason '%s' (want '%s')", i, rc, why, c->first);
        }
    }
    // <image> at the back.
    DatagenTurns t;
    char why[256];
    EXPECT(datagen_build_turns(DATAGEN_DETAIL, "Text.", "Describe.", 0, &t, why, sizeof why) == 0 &&
               strcmp(t.value[0], "Describe.\n<image>") == 0,
           "back placement: %s", t.n ? t.value[0] : why);
    datagen_turns_free(&t);
}

static void test_choices(void) {
    int hist[16] = {0}, front = 0;
    for (int i = 0; i < 1600; i++) {
        char id[32];
        snprintf(id, sizeof id, "%012d_detail", i);
        int q, f, q2, f2;
        datagen_choose(0, id, DATAGEN_N_DETAIL_QUESTIONS, &q, &f);
        datagen_choose(0, id, DATAGEN_N_DETAIL_QUESTIONS, &q2, &f2);
        EXPECT(q == q2 && f == f2, "choice of %s not deterministic", id);
        if (q >= 0 && q < 16) hist[q]++;
        front += f;
    }
    EXPECT(DATAGEN_N_DETAIL_QUESTIONS == 16, "%d questions", DATAGEN_N_DETAIL_QUESTIONS);
    for (int k = 0; k < 16; k++) EXPECT(hist[k] > 50 && hist[k] < 150, "question %d drawn %d / 1600 times", k, hist[k]);
    EXPECT(front > 650 && front < 950, "<image> in front %d / 1600 times", front);
    int q1, f1, q2, f2, differ = 0;
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof id, "img%d_detail", i);
        datagen_choose(1, id, 16, &q1, &f1);
        datagen_choose(2, id, 16, &q2, &f2);
        differ += q1 != q2;
    }
    EXPECT(differ > 10, "--seed changes the choices (%d / 20 differ)", differ);
    int mask;
    EXPECT(datagen_types_parse("detail,conv", &mask) == 0 && mask == 3, "types mask %d", mask);
    EXPECT(datagen_types_parse("conv,bogus", &mask) != 0, "bogus type accepted");
}

int main(int argc, char **argv) {
    if (argc > 1) src_dir = argv[1];
    test_coords();
    test_coco();
    test_jsonl();
    test_prompt_folder();
    test_parsing();
    test_choices();
    return test_summary("test_datagen");
}
