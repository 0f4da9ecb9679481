// Continuous batching over the Generator's cache slots (scheduler.h).
// Locking: s->mu guards the queue, every job's progress fields and the
// flags; the Generator and slot_job belong to the scheduler thread alone, so
// prefill and steps run without the lock.
#include "serve/scheduler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "kernels/backend.h"

const char *serve_finish_name(ServeFinish f) {
    switch (f) {
        case FINISH_STOP: return "stop";
        case FINISH_LENGTH: return "length";
        case FINISH_CANCELLED: return "cancelled";
        case FINISH_ERROR: return "error";
        case FINISH_NONE: break;
    }
    return "none";
}

ServeJob *serve_job_new(int32_t *prompt, int n_prompt, float *pixels, int n_images) {
    ServeJob *j = xcalloc(1, sizeof *j);
    j->prompt = prompt;
    j->n_prompt = n_prompt;
    j->pixels = pixels;
    j->n_images = n_images;
    j->max_tokens = 1;
    j->stop_at = SIZE_MAX;
    j->refs = 1;
    return j;
}

static void job_free(ServeJob *j) {
    free(j->prompt);
    free(j->pixels);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->out);
    free(j);
}

// Under the lock.
static void job_unref(ServeJob *j) {
    if (--j->refs == 0) job_free(j);
}

static void job_finish(Scheduler *s, ServeJob *j, ServeFinish f) {
    j->state = JOB_DONE;
    j->finish = f;
    j->t_end = now_seconds();
    pthread_cond_broadcast(&s->progress);
}

// Earliest stop string in the decoded output: sets stop_at and returns 1.
static int hits_stop(const Scheduler *s, ServeJob *j) {
    if (!j->n_stops || !s->tok) return 0;
    size_t len;
    char *text = tokenizer_decode(s->tok, j->out, j->n_out, 1, &len);
    size_t best = SIZE_MAX;
    for (int i = 0; i < j->n_stops; i++) {
        const char *hit = strstr(text, j->stops[i]);
        if (hit && (size_t)(hit - text) < best) best = (size_t)(hit - text);
    }
    free(text);
    if (best == SIZE_MAX) return 0;
    j->stop_at = best;
    return 1;
}

// Samples slot b's next token from logits[V] and decides whether the job is
// done, in the order gen_generate's decode loop does (eos, max_tokens,
// context). Under the lock. Returns 1 when the job finished.
static int take_token(Scheduler *s, int b, const float *logits) {
    ServeJob *j = s->slot_job[b];
    const Generator *g = s->g;
    int tok = sample_token(logits, g->m->cfg.text.vocab, &j->sample, &j->rng, g->sample_scratch);
    if (j->n_out == j->cap_out) {
        j->cap_out = j->cap_out ? 2 * j->cap_out : 64;
        j->out = xrealloc(j->out, (size_t)j->cap_out * sizeof(int32_t));
    }
    j->out[j->n_out++] = tok;
    j->pending = tok;
    s->stats.tokens++;
    ServeFinish f = FINISH_NONE;
    if (tok == s->eos_id && !j->ignore_eos)
        f = FINISH_STOP;
    else if (hits_stop(s, j))
        f = FINISH_STOP;
    else if (j->n_out >= j->max_tokens || g->lens[b] >= g->T_cap)
        f = FINISH_LENGTH;
    else if (j->cancelled)
        f = FINISH_CANCELLED;
    if (f != FINISH_NONE) job_finish(s, j, f);
    return f != FINISH_NONE;
}

// Frees slot b (the job's reference included); the last slot's job moves in.
static void slot_leave(Scheduler *s, int b) {
    ServeJob *j = s->slot_job[b];
    int moved = gen_leave(s->g, b);
    if (moved >= 0) s->slot_job[b] = s->slot_job[moved];
    s->slot_job[s->g->B] = NULL;
    s->n_running = s->g->B;
    job_unref(j);
}

// Moves queued jobs into free slots, each prefilled alone. Called with the
// lock held; drops it around the prefill.
static void admit_jobs(Scheduler *s) {
    Generator *g = s->g;
    const int V = g->m->cfg.text.vocab;
    while (s->head && g->B < g->B_cap) {
        ServeJob *j = s->head;
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        s->n_queued--;
        if (j->cancelled) {
            job_finish(s, j, FINISH_CANCELLED);
            job_unref(j);
            continue;
        }
        j->state = JOB_RUNNING;
        j->t_start = now_seconds();
        Rng base;  // as gen_generate seeds sequence 0
        rng_seed(&base, j->seed);
        rng_seed(&j->rng, rng_next(&base));
        GenPrompt p = {.ids = j->prompt, .n = j->n_prompt, .n_images = j->n_images, .pixels = j->pixels};
        Error err = {{0}};
        s->admitting = 1;  // neither queued nor running while it prefills
        pthread_mutex_unlock(&s->mu);
        int slot = gen_join(g, &p, s->logits + (size_t)g->B * V, &err);
        pthread_mutex_lock(&s->mu);
        s->admitting = 0;
        if (slot < 0) {
            snprintf(j->error, sizeof j->error, "%.250s", err.msg);
            job_finish(s, j, FINISH_ERROR);
            job_unref(j);
            continue;
        }
        s->slot_job[slot] = j;
        s->n_running = g->B;
        s->stats.joined++;
        if (take_token(s, slot, s->logits + (size_t)slot * V)) slot_leave(s, slot);
    }
}

static void *sched_main(void *arg) {
    Scheduler *s = arg;
    Generator *g = s->g;
    const int V = g->m->cfg.text.vocab;
    int32_t *feed = xmalloc((size_t)g->B_cap * sizeof(int32_t));
    backend_set_threads(s->threads);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && !s->head && g->B == 0) pthread_cond_wait(&s->work, &s->mu);
        if (s->stopping && !s->head && g->B == 0) break;
        for (int b = g->B - 1; b >= 0; b--)  // a client that went away frees its slot
            if (s->slot_job[b]->cancelled) {
                job_finish(s, s->slot_job[b], FINISH_CANCELLED);
                slot_leave(s, b);
            }
        admit_jobs(s);
        pthread_cond_broadcast(&s->progress);
        if (g->B == 0) continue;
        if (g->B > s->stats.max_batch_seen) s->stats.max_batch_seen = g->B;
        for (int b = 0; b < g->B; b++) feed[b] = s->slot_job[b]->pending;
        Error err = {{0}};
        pthread_mutex_unlock(&s->mu);
        int rc = gen_step(g, feed, 1, s->logits, &err);
        if (s->step_delay_ms > 0) {
            struct timespec d = {s->step_delay_ms / 1000, (long)(s->step_delay_ms % 1000) * 1000000L};
            nanosleep(&d, NULL);
        }
        pthread_mutex_lock(&s->mu);
        s->stats.steps++;
        for (int b = g->B - 1; b >= 0; b--) {
            if (rc != 0) {  // cannot happen for admitted jobs; fail them all rather than spin
                snprintf(s->slot_job[b]->error, sizeof s->slot_job[b]->error, "%.250s", err.msg);
                job_finish(s, s->slot_job[b], FINISH_ERROR);
                slot_leave(s, b);
            } else if (take_token(s, b, s->logits + (size_t)b * V)) {
                slot_leave(s, b);
            }
        }
        pthread_cond_broadcast(&s->progress);
    }
    s->running = 0;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->mu);
    free(feed);
    return NULL;
}

int sched_start(Scheduler *s, Generator *g, const SchedConfig *cfg, Error *err) {
    memset(s, 0, sizeof *s);
    s->g = g;
    s->tok = cfg->tok;
    s->eos_id = cfg->eos_id;
    s->max_queue = cfg->max_queue;
    s->step_delay_ms = cfg->step_delay_ms;
    s->threads = cfg->threads;
    s->slot_job = xcalloc((size_t)g->B_cap, sizeof(ServeJob *));
    s->logits = xmalloc((size_t)g->B_cap * g->m->cfg.text.vocab * sizeof(float));
    if (pthread_mutex_init(&s->mu, NULL) != 0 || pthread_cond_init(&s->work, NULL) != 0 ||
        pthread_cond_init(&s->progress, NULL) != 0)
        return err_set(err, "cannot create the scheduler's lock");
    s->running = 1;
    int rc = pthread_create(&s->thread, NULL, sched_main, s);
    if (rc != 0) {
        s->running = 0;
        return err_set(err, "cannot start the scheduler thread: %s", strerror(rc));
    }
    return 0;
}

void sched_begin_drain(Scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    pthread_mutex_unlock(&s->mu);
}

void sched_wait_idle(Scheduler *s) {
    pthread_mutex_lock(&s->mu);
    while (s->n_queued > 0 || s->n_running > 0 || s->admitting) pthread_cond_wait(&s->progress, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void sched_drain_and_stop(Scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    s->stopping = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->progress);
    free(s->slot_job);
    free(s->logits);
}

int sched_submit(Scheduler *s, ServeJob *j) {
    pthread_mutex_lock(&s->mu);
    int rc = SCHED_OK;
    if (s->draining)
        rc = SCHED_DRAINING;
    else if (s->n_queued >= s->max_queue + (s->g->B_cap - s->n_running - s->admitting))
        rc = SCHED_FULL;  // free slots take jobs at the next step; max_queue more may wait
    if (rc == SCHED_OK) {
        j->refs++;
        j->state = JOB_QUEUED;
        j->t_submit = now_seconds();
        j->next = NULL;
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->n_queued++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void view_copy(const ServeJob *j, JobView *v) {
    if (j->n_out > v->cap) {
        v->cap = j->cap_out;
        v->ids = xrealloc(v->ids, (size_t)v->cap * sizeof(int32_t));
    }
    if (j->n_out) memcpy(v->ids, j->out, (size_t)j->n_out * sizeof(int32_t));
    v->n = j->n_out;
    v->done = j->state == JOB_DONE;
    v->finish = j->finish;
    v->stop_at = j->stop_at;
    memcpy(v->error, j->error, sizeof v->error);
}

int sched_wait(Scheduler *s, ServeJob *j, int seen, int timeout_ms, JobView *v) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (j->n_out <= seen && j->state != JOB_DONE)
        if (pthread_cond_timedwait(&s->progress, &s->mu, &until) == ETIMEDOUT) break;
    int changed = j->n_out > seen || j->state == JOB_DONE;
    if (changed) view_copy(j, v);
    pthread_mutex_unlock(&s->mu);
    return changed;
}

void job_view_free(JobView *v) {
    free(v->ids);
    memset(v, 0, sizeof *v);
}

void sched_cancel(Scheduler *s, ServeJob *j) {
    pthread_mutex_lock(&s->mu);
    j->cancelled = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_release(Scheduler *s, ServeJob *j) {
    pthread_mutex_lock(&s->mu);
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

void sched_counts(Scheduler *s, int *queued, int *running, SchedStats *stats) {
    pthread_mutex_lock(&s->mu);
    if (queued) *queued = s->n_queued;
    if (running) *running = s->n_running;
    if (stats) *stats = s->stats;
    pthread_mutex_unlock(&s->mu);
}
