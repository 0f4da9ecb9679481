// A main for a fuzz target without libFuzzer: runs every file given (or
// every file in a folder given) through LLVMFuzzerTestOneInput once. ctest
// replays the seed corpora and the regression inputs this way, under
// AddressSanitizer when the build has it.
#include <dirent.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_util.h"

static int run_file(const char *path) {
    Error err = {{0}};
    size_t len = 0;
    char *data = read_file(path, &len, &err);
    if (!data) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    free(data);
    return 0;
}

int main(int argc, char **argv) {
    long n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue;  // a glob that matched nothing
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) != 0) return 1;
            n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) return 1;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(path) != 0) return 1;
                n++;
            }
        }
        closedir(d);
    }
    printf("replayed %ld inputs\n", n);
    return n > 0 ? 0 : 1;
}
