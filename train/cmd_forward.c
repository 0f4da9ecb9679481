// `llava forward`: one batch through the model, writing logits, loss and the
// gradients of the stage's trainable tensors. The inspection command that
// makes parity with transformers checkable by anyone.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/safetensors.h"
#include "kernels/backend.h"
#include "model/batch_file.h"
#include "common/commands.h"
#include "model/model_source.h"

static int write_outputs(LlavaModel *m, const LlavaBatch *b, float loss, int with_grads, const char *out_path,
                         Error *err) {
    const int V = m->cfg.text.vocab;
    const size_t MV = (size_t)b->B * b->T * V;
    StWriter w;
    st_writer_init(&w);
    // Labeled-only: the K rows the head ran on, and their indices in [B*T].
    const int K = m->acts.K;
    size_t n_logits = m->head_labeled_only ? (size_t)K * V : MV;
    float *logits = xmalloc(n_logits * sizeof(float) + 1);
    m->ops->download_act(logits, model_logits(m), n_logits);
    if (m->head_labeled_only) {
        int64_t *rows = xmalloc((size_t)K * sizeof(int64_t) + 1);
        int32_t *rows32 = xmalloc((size_t)K * sizeof(int32_t) + 1);
        m->ops->download(rows32, m->acts.head_rows, (size_t)K * sizeof(int32_t));
        for (int k = 0; k < K; k++) rows[k] = rows32[k];
        st_writer_add(&w, "labeled_logits", ST_F32, 2, (const int64_t[]){K, V}, logits);
        st_writer_add_copy(&w, "labeled_rows", ST_I64, 1, (const int64_t[]){K}, rows);
        free(rows);
        free(rows32);
    } else {
        st_writer_add(&w, "logits", ST_F32, 3, (const int64_t[]){b->B, b->T, V}, logits);
    }
    st_writer_add_copy(&w, "loss", ST_F32, 0, NULL, &loss);
    int64_t counted = m->n_counted;
    st_writer_add_copy(&w, "num_tokens", ST_I64, 0, NULL, &counted);
    for (int i = 0; with_grads && i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        const float *g = model_grad(m, p);
        if (!g) continue;
        float *host = xmalloc(p->numel * sizeof(float));
        m->ops->download(host, g, p->numel * sizeof(float));
        char name[256];
        snprintf(name, sizeof name, "grad.%s", p->file_name);
        st_writer_add_copy(&w, name, ST_F32, p->ndim, p->shape, host);
        free(host);
    }
    int rc = st_writer_save(&w, out_path, NULL, err);
    st_writer_free(&w);
    free(logits);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    ModelSource src;
    model_source_default(&src);
    src.keep_adapter = 1;  // gradients of the adapters themselves, as PEFT computes them
    const char *batch_path = NULL, *out_path = NULL, *device = "cpu", *attention = "flash";
    int stage = 2, recompute = 0, threads = 0, labeled_only = 0;
    ArgSpec specs[18];
    int n = model_source_args(&src, specs, 0);
    specs[n++] = (ArgSpec){"batch", ARG_STRING, &batch_path, "input batch (safetensors, see docs/formats.md)", 1};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &out_path, "output safetensors: logits, loss, grad.<name>", 1};
    specs[n++] = (ArgSpec){"stage", ARG_INT, &stage,
                           "0 = no gradients, 1 = projector, 2 = projector + LLM (default 2)", 0, 0, 2};
    specs[n++] = (ArgSpec){"recompute", ARG_INT, &recompute,
                           "gradient checkpointing per LLM layer: 0 off, 1 full, 2 selective (default 0)", 0, 0, 2};
    specs[n++] = (ArgSpec){"labeled-only", ARG_INT, &labeled_only,
                           "1: the LM head and loss only on labeled rows, as training runs them; writes labeled_logits "
                           "[K,V] and labeled_rows [K] instead of logits (default 0)", 0, 0, 1};
    specs[n++] = (ArgSpec){"device", ARG_STRING, &device, "cpu | cuda (default cpu)", 0};
    specs[n++] = (ArgSpec){"attention", ARG_STRING, &attention,
                           "device cuda: flash | cudnn (cuDNN's fused attention) (default flash)", 0};
    specs[n++] = (ArgSpec){"threads", ARG_INT, &threads, "CPU threads (default: all cores)", 0, 0, 1024};
    int rc = args_parse(argc, argv, specs, n,
                        "llava forward --model DIR --batch IN.safetensors --out OUT.safetensors [options]",
                        "Runs one batch forward and, for stage 1 or 2, backward; writes logits [B,T,V], loss\n"
                        "(mean over counted labels), num_tokens and grad.<tensor name> for every trainable tensor.\n"
                        "With --adapter, stage 2 trains the projector and the adapters (the LLM is frozen).",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (stage < 0 || stage > 2 || recompute < 0 || recompute > 2) {
        fprintf(stderr, "llava forward: --stage must be 0, 1 or 2 and --recompute 0, 1 or 2\n");
        return EXIT_BAD_INPUT;
    }
    backend_set_threads(threads);
    Error err = {{0}};
    const Ops *ops = backend_select(device, &err);
    if (ops) ops = backend_attention(ops, attention, &err);
    if (!ops) {
        fprintf(stderr, "llava forward: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    LlavaModel m;
    if (model_source_load(&src, &m, ops, &err) != 0) {
        fprintf(stderr, "llava forward: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    model_set_stage(&m, stage);
    model_set_recompute(&m, recompute);
    model_set_head_labeled_only(&m, labeled_only);
    BatchFile bf;
    if (batch_file_read(&bf, batch_path, &m.cfg, &err) != 0) {
        fprintf(stderr, "llava forward: %s\n", err.msg);
        model_free(&m);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_OK;
    if (model_forward(&m, &bf.batch, &err) != 0) {
        fprintf(stderr, "llava forward: %s: %s\n", batch_path, err.msg);
        status = EXIT_BAD_INPUT;
        goto done;
    }
    float loss = m.n_counted ? (float)(m.loss_sum / m.n_counted) : NAN;
    if (!m.n_counted)
        fprintf(stderr, "llava forward: warning: no label is counted (all -100): loss is NaN, gradients are zero\n");
    if (stage > 0 && m.n_counted) {
        // Backward turns the logits into dlogits in place: keep a copy to write.
        const size_t MV = (size_t)(labeled_only ? m.acts.K : bf.batch.B * bf.batch.T) * m.cfg.text.vocab;
        void *saved = ops->alloc(MV * ops->act_size);
        ops->copy(saved, model_logits(&m), MV * ops->act_size);
        model_backward(&m, 1.0f / (float)m.n_counted);
        ops->copy(m.acts.logits, saved, MV * ops->act_size);
        ops->free(saved);
    }
    if (write_outputs(&m, &bf.batch, loss, stage > 0, out_path, &err) != 0) {
        fprintf(stderr, "llava forward: %s\n", err.msg);
        status = EXIT_ERROR;
        goto done;
    }
    printf("loss %.6f over %d tokens; wrote %s\n", loss, m.n_counted, out_path);
done:
    batch_file_free(&bf);
    model_free(&m);
    return status;
}
