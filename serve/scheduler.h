// The batching scheduler of `llava serve`: one thread owns the Generator and
// runs continuous batching over its per-sequence cache rows. Requests wait in
// a bounded queue; at each step boundary the waiting ones join free slots
// (each prefilled alone, exactly as `llava generate` prefills), then one
// gen_step advances every running sequence by a token, and sequences that
// finished (eos, max_tokens, a stop string, the context, a cancel) leave.
// Connection threads submit jobs and wait on their progress.
//
// A sequence's tokens never depend on the others in the batch: its prefill
// runs alone, its rows of a batched step see only its own cache rows, and it
// samples from its own random stream, seeded as `llava generate` seeds it.
#ifndef LLAVA_SERVE_SCHEDULER_H
#define LLAVA_SERVE_SCHEDULER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "eval/generate.h"

typedef enum { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE } ServeJobState;
typedef enum { FINISH_NONE = 0, FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED, FINISH_ERROR } ServeFinish;

#define SERVE_MAX_STOPS 4

// One request's generation. The submitter fills the inputs; the scheduler
// owns the progress fields (read them only through sched_wait).
typedef struct ServeJob {
    // inputs (owned by the job, freed with it)
    int32_t *prompt;  // [n_prompt] ids, each image expanded to image_seq_length image tokens
    int n_prompt;
    float *pixels;  // [n_images, 3, S, S] or NULL
    int n_images;
    SampleParams sample;
    int max_tokens;  // >= 1
    uint64_t seed;
    int ignore_eos;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    // progress (under the scheduler's lock)
    int32_t *out;  // [n_out] generated ids (the eos included when it stopped there)
    int n_out, cap_out;
    ServeJobState state;
    ServeFinish finish;
    size_t stop_at;  // FINISH_STOP on a stop string: bytes of decoded text before it; else SIZE_MAX
    char error[256];
    int cancelled;
    double t_submit, t_start, t_end;  // now_seconds()
    // scheduler private
    Rng rng;
    int32_t pending;  // the last sampled token, fed at the next step
    int refs;
    struct ServeJob *next;
} ServeJob;

typedef struct {
    long steps, tokens, joined, max_batch_seen;  // totals since start
} SchedStats;

typedef struct {
    Generator *g;
    const Tokenizer *tok;  // for stop strings; may be NULL
    int eos_id;
    int max_queue;
    int step_delay_ms;  // sleep after each step (to watch batching; tests and demos), 0: none
    int threads;
    pthread_mutex_t mu;
    pthread_cond_t work;      // the scheduler waits here for jobs
    pthread_cond_t progress;  // submitters wait here for tokens
    ServeJob *head, *tail;    // the queue
    int n_queued, n_running;  // waiting jobs; sequences in the batch (g->B, as of the last change)
    ServeJob **slot_job;  // [B_cap] the job in each generator slot
    int draining, stopping, running, admitting;
    pthread_t thread;
    float *logits;  // [B_cap, V]
    SchedStats stats;
} Scheduler;

typedef struct {
    const Tokenizer *tok;  // decodes answers for stop strings; may be NULL
    int eos_id;
    int max_queue;
    int step_delay_ms;
    int threads;  // CPU threads for the model (OpenMP's count is per thread: set again in the scheduler's); 0: default
} SchedConfig;

// Starts the scheduler thread over g (already gen_init'ed with B_cap slots).
int sched_start(Scheduler *s, Generator *g, const SchedConfig *cfg, Error *err);
// Finishes every queued and running job, then stops the thread and frees.
void sched_drain_and_stop(Scheduler *s);
// Waits until no job is queued or running.
void sched_wait_idle(Scheduler *s);
// Refuses new jobs from now on (sched_submit answers SCHED_DRAINING).
void sched_begin_drain(Scheduler *s);

// A new job with its inputs taken over (prompt, pixels); stops copied.
ServeJob *serve_job_new(int32_t *prompt, int n_prompt, float *pixels, int n_images);
enum { SCHED_OK = 0, SCHED_FULL = 1, SCHED_DRAINING = 2 };
// Queues the job (the scheduler takes a reference). SCHED_FULL when
// max_queue jobs already wait beyond the free slots.
int sched_submit(Scheduler *s, ServeJob *j);

// What a waiter sees of its job: the ids so far (copied) and the state.
typedef struct {
    int32_t *ids;
    int n, cap;
    int done;
    ServeFinish finish;
    size_t stop_at;
    char error[256];
} JobView;
// Waits until the job has more than `seen` ids or is done, or timeout_ms
// passes; then copies its progress into v. Returns 1 when v changed.
int sched_wait(Scheduler *s, ServeJob *j, int seen, int timeout_ms, JobView *v);
void job_view_free(JobView *v);
// Asks the scheduler to stop the job (its slot is freed at the next step).
void sched_cancel(Scheduler *s, ServeJob *j);
// Drops the submitter's reference.
void sched_release(Scheduler *s, ServeJob *j);
// Queue length and running sequences now, and totals.
void sched_counts(Scheduler *s, int *queued, int *running, SchedStats *stats);

const char *serve_finish_name(ServeFinish f);  // "stop", "length", ...

#endif
