#include "data/loader_source.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    LoaderOptions o;
    char dir[1024];
    Loader *L;
    LoaderBatch *micro;  // [grad_accum]
} LoaderSource;

static int source_next_step(BatchSource *s, LlavaBatch *out, int *n, Error *err) {
    LoaderSource *ls = s->impl;
    int got = 0;
    *n = 0;
    if (loader_next_step(ls->L, ls->micro, &got, err) != 0) return -1;
    // A rank with no sample in a short last step yields nothing.
    for (int i = 0; i < got; i++)
        if (ls->micro[i].batch.B > 0) out[(*n)++] = ls->micro[i].batch;
    return 0;
}

static DataPosition source_position(const BatchSource *s) {
    const LoaderSource *ls = s->impl;
    LoaderPos p;
    loader_state(ls->L, &p);
    return (DataPosition){.epoch = (long)p.epoch, .step = (long)p.step};
}

static int source_seek(BatchSource *s, DataPosition pos, Error *err) {
    LoaderSource *ls = s->impl;
    LoaderOptions o = ls->o;
    o.resume = (LoaderPos){.epoch = pos.epoch, .step = pos.step, .micro = 0};
    Loader *L = loader_open(&o, err);
    if (!L) return -1;
    loader_close(ls->L);
    ls->L = L;
    return 0;
}

static void source_close(BatchSource *s) {
    LoaderSource *ls = s->impl;
    if (!ls) return;
    loader_close(ls->L);
    free(ls->micro);
    free(ls);
    s->impl = NULL;
}

int loader_source_open(BatchSource *s, const LoaderOptions *o, Error *err) {
    memset(s, 0, sizeof *s);
    LoaderSource *ls = xcalloc(1, sizeof *ls);
    ls->o = *o;
    snprintf(ls->dir, sizeof ls->dir, "%s", o->dir ? o->dir : "");
    ls->o.dir = ls->dir;
    ls->L = loader_open(&ls->o, err);
    if (!ls->L) {
        free(ls);
        return -1;
    }
    ls->micro = xcalloc((size_t)o->grad_accum, sizeof *ls->micro);
    s->impl = ls;
    s->steps_per_epoch = (long)loader_num_steps_per_epoch(ls->L);
    s->max_micro = o->grad_accum;
    s->next_step = source_next_step;
    s->position = source_position;
    s->seek = source_seek;
    s->close = source_close;
    return 0;
}
