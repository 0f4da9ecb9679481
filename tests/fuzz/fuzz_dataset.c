// LLaVA data files (data/dataset.c): the input as a JSON list and as JSONL,
// read item by item to the end, with a tell/seek round trip.
#include "data/dataset.h"
#include "tests/fuzz/fuzz_util.h"

static void read_all(const char *path) {
    Error err = {{0}};
    DatasetReader *r = dataset_open(path, &err);
    if (!r) return;
    for (int k = 0; k < 100000; k++) {
        DatasetSample s;
        DatasetProblem p;
        int rc = dataset_next(r, &s, &p, &err);
        if (rc == DATASET_SAMPLE) dataset_sample_free(&s);
        if (rc == DATASET_END || rc == DATASET_ERROR) break;
        if (k == 1) {  // resume from the position after the second item
            DatasetPos pos;
            dataset_tell(r, &pos);
            if (dataset_seek(r, &pos, &err) != 0) break;
        }
    }
    dataset_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    read_all(fuzz_write_file("data.json", data, size));
    read_all(fuzz_write_file("data.jsonl", data, size));
    return 0;
}
