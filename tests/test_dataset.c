// LLaVA JSON / JSONL reading: every item becomes a sample or a problem with
// the right reason, index, line and id; broken file structure stops with a
// line:column; tell/seek resumes exactly; a large JSONL streams.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "tests/testlib.h"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

typedef struct {
    int kind;  // DATASET_SAMPLE or DATASET_BAD_ITEM
    int64_t index, line;
    char id[256];
    int reason;
    char detail[768];
    int n_turns;
    int has_image;
} Got;

// Reads the whole file; returns the number of items, -1 on a structural error.
static int read_all(const char *path, Got *got, int cap, Error *err) {
    DatasetReader *r = dataset_open(path, err);
    if (!r) return -1;
    int n = 0;
    for (;;) {
        DatasetSample s;
        DatasetProblem p;
        int rc = dataset_next(r, &s, &p, err);
        if (rc == DATASET_END) break;
        if (rc == DATASET_ERROR) {
            dataset_close(r);
            return -1;
        }
        if (n >= cap) break;
        Got *g = &got[n++];
        memset(g, 0, sizeof *g);
        g->kind = rc;
        if (rc == DATASET_SAMPLE) {
            g->index = s.index;
            g->line = s.line;
            snprintf(g->id, sizeof g->id, "%s", s.id);
            g->n_turns = s.n_turns;
            g->has_image = s.image != NULL;
            dataset_sample_free(&s);
        } else {
            g->index = p.index;
            g->line = p.line;
            snprintf(g->id, sizeof g->id, "%s", p.id);
            g->reason = p.reason;
            snprintf(g->detail, sizeof g->detail, "%s", p.detail);
        }
    }
    dataset_close(r);
    return n;
}

static const char *LIST =
    "[\n"
    "  {\"id\": \"a\", \"image\": \"x/a.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nQ \\\"]},{\"}, {\"from\": \"gpt\", \"value\": \"A ] }\"}]},\n"  // line 2
    "  {\"id\": 17, \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]},\n"  // 3
    "  {\"id\": \"bad-json\", \"conversations\": [],},\n"                                        // 4: trailing comma
    "  {\"id\": \"no-conv\"},\n"                                                                   // 5
    "  {\"id\": \"conv-str\", \"conversations\": \"hello\"},\n"                                    // 6
    "  {\"id\": \"no-gpt\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]},\n"      // 7
    "  {\"id\": \"role\", \"conversations\": [{\"from\": \"system\", \"value\": \"q\"}]},\n"        // 8
    "  42,\n"                                                                                       // 9
    "  {\"id\": \"imgs\", \"image\": [\"a.jpg\", \"b.jpg\"], \"conversations\": []},\n"             // 10
    "  {\"id\": \"lead-gpt\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}, {\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]},\n"  // 11
    "  {\"id\": \"alternate\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]},\n"  // 12
    "  {\"id\": \"value-num\", \"conversations\": [{\"from\": \"human\", \"value\": 3}, {\"from\": \"gpt\", \"value\": \"a\"}]},\n"  // 13
    "  {\"id\": \"only-lead-gpt\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}]},\n"  // 14
    "  {\"id\": \"multi\",\n"                                                                       // 15
    "   \"conversations\": [{\"from\": \"human\", \"value\": \"q\"},\n"
    "                     {\"from\": \"gpt\" \"value\": \"a\"}]}\n"                                 // 17: missing ':'... ','
    "]\n";

static void test_list(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/list.json", dir);
    write_text(path, LIST);
    Got got[32];
    Error err = {{0}};
    int n = read_all(path, got, 32, &err);
    EXPECT(n == 14, "list: %d items (%s)", n, err.msg);
    if (n != 14) return;
    for (int i = 0; i < n; i++) EXPECT(got[i].index == i, "item %d index %lld", i, (long long)got[i].index);
    // line of each item = 2 + index, except the last (starts at line 15)
    for (int i = 0; i < 13; i++) EXPECT(got[i].line == 2 + i, "item %d line %lld", i, (long long)got[i].line);
    EXPECT(got[13].line == 15, "multi-line item starts at line %lld", (long long)got[13].line);

    EXPECT(got[0].kind == DATASET_SAMPLE && strcmp(got[0].id, "a") == 0 && got[0].has_image && got[0].n_turns == 2,
           "item 0 (brackets and quotes inside strings) read as a sample");
    EXPECT(got[1].kind == DATASET_SAMPLE && strcmp(got[1].id, "17") == 0 && !got[1].has_image,
           "numeric id becomes \"17\" (got '%s')", got[1].id);
    EXPECT(got[2].kind == DATASET_BAD_ITEM && got[2].reason == PROBLEM_MALFORMED_JSON, "trailing comma: malformed JSON");
    // The first bad byte is the '}' right after the trailing comma: line 4,
    // column 42, byte 278 of the file (positions computed with Python).
    EXPECT(strstr(got[2].detail, "line 4, column 42 (byte offset 278)") != NULL, "malformed JSON position: %s", got[2].detail);
    EXPECT(got[3].reason == PROBLEM_MALFORMED_CONVERSATION && strstr(got[3].detail, "no \"conversations\"") &&
               strcmp(got[3].id, "no-conv") == 0,
           "missing conversations: %s (id '%s')", got[3].detail, got[3].id);
    EXPECT(got[4].reason == PROBLEM_MALFORMED_CONVERSATION && strstr(got[4].detail, "not a list"), "conv string: %s",
           got[4].detail);
    // Role order is the template's to check (test_conversation): plain takes
    // two turns whatever their roles, vicuna_v1 needs human, gpt, ...
    EXPECT(got[5].kind == DATASET_SAMPLE && got[5].n_turns == 1, "no gpt turn: read, left to the template");
    EXPECT(got[6].reason == PROBLEM_MALFORMED_CONVERSATION && strstr(got[6].detail, "\"system\""), "role: %s",
           got[6].detail);
    EXPECT(got[7].reason == PROBLEM_MALFORMED_SAMPLE && strstr(got[7].detail, "a number"), "scalar item: %s",
           got[7].detail);
    EXPECT(got[8].reason == PROBLEM_MALFORMED_SAMPLE && strstr(got[8].detail, "one image"), "image list: %s",
           got[8].detail);
    EXPECT(got[9].kind == DATASET_SAMPLE && got[9].n_turns == 3, "leading gpt turn kept, sample valid");
    EXPECT(got[10].kind == DATASET_SAMPLE && got[10].n_turns == 3, "two human turns: read, left to the template");
    EXPECT(got[11].reason == PROBLEM_MALFORMED_CONVERSATION && strstr(got[11].detail, "\"value\" is a number"),
           "value type: %s", got[11].detail);
    EXPECT(got[12].kind == DATASET_SAMPLE && got[12].n_turns == 1, "only a gpt turn: read, left to the template");
    // Line 17 is `                     {"from": "gpt" "value": "a"}]}`: the
    // error is at the '"' of "value", column 37.
    EXPECT(got[13].reason == PROBLEM_MALFORMED_JSON && strstr(got[13].detail, "line 17, column 37"),
           "multi-line malformed item: %s", got[13].detail);
}

static void test_jsonl(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/data.jsonl", dir);
    write_text(path,
               "{\"id\": \"1\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\r\n"
               "\n"
               "   \n"
               "{\"id\": \"2\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]} x\n"
               "{\"id\": \"3\", \"conversations\": [{\"from\": \"human\" \"value\": \"q\"}]}\n"
               "{\"id\": \"4\", \"image\": \"i.png\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}");
    Got got[8];
    Error err = {{0}};
    int n = read_all(path, got, 8, &err);
    EXPECT(n == 4, "jsonl: %d items (%s)", n, err.msg);
    if (n != 4) return;
    EXPECT(got[0].kind == DATASET_SAMPLE && got[0].line == 1, "jsonl item 0 (CRLF)");
    EXPECT(got[1].reason == PROBLEM_MALFORMED_JSON && got[1].line == 4 && strstr(got[1].detail, "line 4, column 96") &&
               strstr(got[1].detail, "after the end"),
           "text after the object: line %lld: %s", (long long)got[1].line, got[1].detail);
    EXPECT(got[2].reason == PROBLEM_MALFORMED_JSON && strstr(got[2].detail, "line 5, column 48"), "jsonl bad line: %s",
           got[2].detail);
    EXPECT(got[3].kind == DATASET_SAMPLE && got[3].has_image && got[3].index == 3 && got[3].line == 6,
           "last line without newline");
}

static void expect_structure_error(const char *dir, const char *name, const char *text, const char *want) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_text(path, text);
    Got got[8];
    Error err = {{0}};
    int n = read_all(path, got, 8, &err);
    EXPECT(n == -1 && strstr(err.msg, want) != NULL, "%s: expected error with '%s', got %d items: %s", name, want, n,
           err.msg);
}

static void test_structure_errors(const char *dir) {
    const char *ok = "{\"id\": \"1\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}";
    char buf[1024];
    snprintf(buf, sizeof buf, "[%s,\n %s", ok, ok);
    expect_structure_error(dir, "unclosed.json", buf, "not closed");
    snprintf(buf, sizeof buf, "[%s,\n {\"id\": \"x\", \"conversations\": \"unterminated]\n", ok);
    expect_structure_error(dir, "unterminated.json", buf, "unexpected end of file inside item 1");
    snprintf(buf, sizeof buf, "[%s]\n]", ok);
    expect_structure_error(dir, "after.json", buf, "2:1: unexpected text after the end");
    snprintf(buf, sizeof buf, "[%s,\n]", ok);
    expect_structure_error(dir, "trailing.json", buf, "2:1: ']' after ','");
    snprintf(buf, sizeof buf, "[%s,,%s]", ok, ok);
    expect_structure_error(dir, "empty.json", buf, "empty item");
    // An empty list and a BOM are fine.
    char path[512];
    snprintf(path, sizeof path, "%s/empty_list.json", dir);
    write_text(path, "\xEF\xBB\xBF  [ ]  \n");
    Got got[2];
    Error err = {{0}};
    EXPECT(read_all(path, got, 2, &err) == 0, "empty list: %s", err.msg);
}

// A JSONL of many lines streams; tell after k items and seek in a new reader
// gives the same remaining items, in both formats.
static void test_seek(const char *dir, int jsonl) {
    char path[512];
    snprintf(path, sizeof path, "%s/big.%s", dir, jsonl ? "jsonl" : "json");
    FILE *f = fopen(path, "wb");
    const int N = 5000;
    if (!jsonl) fputs("[\n", f);
    for (int i = 0; i < N; i++)
        fprintf(f, "{\"id\": \"s%d\", \"conversations\": [{\"from\": \"human\", \"value\": \"question %d\"}, {\"from\": \"gpt\", \"value\": \"answer %d\"}]}%s\n",
                i, i, i, jsonl ? "" : (i + 1 < N ? "," : ""));
    if (!jsonl) fputs("]\n", f);
    fclose(f);
    Error err = {{0}};
    DatasetReader *r = dataset_open(path, &err);
    EXPECT(r && dataset_is_jsonl(r) == jsonl, "open %s: %s", path, err.msg);
    if (!r) return;
    DatasetSample s;
    DatasetProblem p;
    DatasetPos pos;
    const int K = 1234;
    int count = 0, ok = 1;
    for (;;) {
        if (count == K) dataset_tell(r, &pos);
        int rc = dataset_next(r, &s, &p, &err);
        if (rc != DATASET_SAMPLE) {
            ok &= rc == DATASET_END;
            break;
        }
        char want[32];
        snprintf(want, sizeof want, "s%d", count);
        ok &= strcmp(s.id, want) == 0 && s.line == (jsonl ? count + 1 : count + 2);
        dataset_sample_free(&s);
        count++;
    }
    EXPECT(ok && count == N, "%s: read %d of %d in order (%s)", path, count, N, err.msg);
    dataset_close(r);
    r = dataset_open(path, &err);
    EXPECT(r && dataset_seek(r, &pos, &err) == 0, "seek: %s", err.msg);
    count = K;
    ok = 1;
    for (;;) {
        int rc = dataset_next(r, &s, &p, &err);
        if (rc != DATASET_SAMPLE) {
            ok &= rc == DATASET_END;
            break;
        }
        char want[32];
        snprintf(want, sizeof want, "s%d", count);
        ok &= strcmp(s.id, want) == 0 && s.index == count && s.line == (jsonl ? count + 1 : count + 2);
        dataset_sample_free(&s);
        count++;
    }
    EXPECT(ok && count == N, "%s: after seek read up to %d (%s)", path, count, err.msg);
    dataset_close(r);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/llava_test_dataset_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_list(dir);
    test_jsonl(dir);
    test_structure_errors(dir);
    test_seek(dir, 1);
    test_seek(dir, 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    EXPECT(problem_reason_parse("mask_mismatch") == PROBLEM_MASK_MISMATCH, "reason names round-trip");
    return test_summary("test_dataset");
}
