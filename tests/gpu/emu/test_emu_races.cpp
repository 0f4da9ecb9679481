// Negative controls of the emulator's shared-memory race checks
// (emu_runtime.cpp, "The hardware's ordering rules"): a kernel with the
// barriers flash attention uses runs clean, and each barrier or wait left out
// makes the emulator fail with its message, as the GPU would race there.
// Each run is a child process (the emulator aborts on a failure).
//   test_emu_races
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { THREADS = 64, ELEMS = THREADS * 8 };  // one 16-byte chunk per thread

enum Mode { CORRECT, NO_BARRIER_AFTER_WAIT, NO_BARRIER_BEFORE_REFILL, READ_BEFORE_WAIT };

// Each thread copies its chunk into smem; each warp then reads the other
// warp's 32 chunks by ldmatrix (so the data crosses warps), and the tile is
// refilled, as flash attention's K/V buffers are.
__global__ void race_kernel(const bf16 *src, int mode, float *sink) {
    LLAVA_DYNAMIC_SMEM(unsigned char, raw);
    bf16 *tile = reinterpret_cast<bf16 *>(raw);
    const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
    cp_async16(tile + t * 8, src + t * 8, true);
    cp_async_commit();
    if (mode != READ_BEFORE_WAIT) cp_async_wait<0>();
    if (mode != NO_BARRIER_AFTER_WAIT) __syncthreads();
    uint32_t r[4];
    ldsm_x4(r, tile + ((1 - warp) * 32 + lane) * 8);
    if (mode == READ_BEFORE_WAIT) cp_async_wait<0>();
    if (mode != NO_BARRIER_BEFORE_REFILL) __syncthreads();
    cp_async16(tile + t * 8, src + t * 8, true);  // the refill: chunks the other warp has read
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    sink[t] = __uint_as_float(r[0] | 1u);
}

// Runs the kernel in a child; returns its exit status (0 = clean) and its
// stderr in msg.
static int run_child(int mode, char *msg, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return perror("pipe"), -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return perror("fork"), -1;
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        bf16 *src = (bf16 *)aligned_alloc(16, ELEMS * sizeof(bf16));
        float *sink = (float *)calloc(THREADS, sizeof(float));
        for (int i = 0; i < ELEMS; i++) src[i] = __float2bfloat16_rn((float)(i % 17));
        emu::Launch(dim3(1), dim3(THREADS), ELEMS * sizeof(bf16)) | [](auto... a) { race_kernel(a...); } |
            std::make_tuple((const bf16 *)src, mode, sink);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t got;
    while (used + 1 < cap && (got = read(fds[0], msg + used, cap - 1 - used)) > 0) used += (size_t)got;
    msg[used] = 0;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void) {
    static const struct {
        int mode;
        const char *name, *expect;  // expect NULL: must run clean
    } cases[] = {
        {CORRECT, "every wait and barrier", NULL},
        {NO_BARRIER_AFTER_WAIT, "no __syncthreads after the wait", "race on the GPU"},
        {NO_BARRIER_BEFORE_REFILL, "no __syncthreads before the refill", "race on the GPU"},
        {READ_BEFORE_WAIT, "ldmatrix before the wait_group", "has not been waited for"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char msg[2048];
        const int rc = run_child(cases[i].mode, msg, sizeof msg);
        const int ok = cases[i].expect ? rc != 0 && strstr(msg, cases[i].expect) != NULL : rc == 0 && !msg[0];
        printf("%-38s %s: exit %d%s%s", cases[i].name, ok ? "ok" : "FAIL", rc, msg[0] ? ", " : "\n", msg);
        failures += !ok;
    }
    printf("test_emu_races: %zu cases, %d failures\n", sizeof cases / sizeof *cases, failures);
    return failures ? 1 : 0;
}
