// `llava serve`: flags, the model, the scheduler and the HTTP server, then
// wait for SIGTERM / SIGINT and drain (finish what was accepted, refuse the
// rest). docs/serve.md is the user's reference.
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/gen_cli.h"
#include "common/commands.h"

#ifdef LLAVA_HAVE_MHD
#include "serve/http.h"

// The name /v1/models reports: the model folder's last component, or the
// last two when the last says only which checkpoint ("stage2/final"). With
// --adapter it is the adapter's folder: base + adapter is the fine-tune, and
// clients that list several servers tell them apart by it.
static void model_name_of(const char *dir, char *name, size_t cap) {
    if (!dir) {
        snprintf(name, cap, "llava");
        return;
    }
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *p = dir + n;
    while (p > dir && p[-1] != '/') p--;
    if ((strncmp(p, "final", 5) == 0 || strncmp(p, "checkpoint", 10) == 0 || strncmp(p, "step", 4) == 0) &&
        p - dir >= 2)
        for (p--; p > dir && p[-1] != '/';) p--;
    snprintf(name, cap, "%.*s", (int)(dir + n - p), p);
}

int cmd_serve(int argc, char **argv) {
    GenCli cli;
    gen_cli_default(&cli, 1.0f, 512);
    const char *host = "127.0.0.1", *image_root = NULL, *api_key_env = NULL, *model_name = NULL, *port_file = NULL;
    int port = 8080, max_batch = 8, max_queue = 64, context = 0;
    int max_body_mb = 32, max_image_mpix = 40, step_delay_ms = 0;
    ArgSpec specs[40];
    int n = model_source_args(&cli.src, specs, 0);
    specs[n++] = (ArgSpec){"host", ARG_STRING, &host, "address to listen on (default 127.0.0.1: this machine only)", 0};
    specs[n++] = (ArgSpec){"port", ARG_INT, &port, "TCP port, 0 = any free one (default 8080)", 0};
    specs[n++] = (ArgSpec){"port-file", ARG_STRING, &port_file, "write the port listened on to this file", 0};
    specs[n++] = (ArgSpec){"max-batch", ARG_INT, &max_batch, "sequences generated together (default 8)", 0};
    specs[n++] = (ArgSpec){"context", ARG_INT, &context,
                           "positions per sequence, prompt + answer (default: the model's max_position_embeddings)", 0};
    specs[n++] = (ArgSpec){"max-queue", ARG_INT, &max_queue,
                           "requests that may wait when every slot is busy; more get 503 (default 64)", 0};
    specs[n++] = (ArgSpec){"image-root", ARG_STRING, &image_root,
                           "folder that file:// and path image URLs may read from (default: none, data: URLs only)",
                           0};
    specs[n++] = (ArgSpec){"api-key-env", ARG_STRING, &api_key_env,
                           "environment variable holding the API key clients must send as a Bearer token", 0};
    specs[n++] = (ArgSpec){"model-name", ARG_STRING, &model_name, "name in /v1/models (default: the folder's)", 0};
    specs[n++] = (ArgSpec){"max-body-mb", ARG_INT, &max_body_mb, "largest request body in MiB (default 32)", 0};
    specs[n++] = (ArgSpec){"max-image-mpix", ARG_INT, &max_image_mpix,
                           "largest decoded image in megapixels (default 40)", 0};
    specs[n++] = (ArgSpec){"template", ARG_STRING, &cli.template_name,
                           "conversation template: vicuna_v1 (= v1) | llava_v1 | plain (default vicuna_v1)", 0};
    specs[n++] = (ArgSpec){"aspect", ARG_STRING, &cli.aspect, "pad | square image preprocessing (default pad)", 0};
    specs[n++] = (ArgSpec){"device", ARG_STRING, &cli.device, "cpu | cuda (default cpu)", 0};
    specs[n++] = (ArgSpec){"threads", ARG_INT, &cli.threads, "CPU threads (default: all cores)", 0};
    specs[n++] = (ArgSpec){"step-delay-ms", ARG_INT, &step_delay_ms,
                           "sleep after each decode step, to watch batching and streaming (default 0)", 0};
    int rc = args_parse(argc, argv, specs, n, "llava serve --model DIR [--adapter DIR] [--host H] [--port P] [options]",
                        "An OpenAI-compatible chat-completions server (POST /v1/chat/completions, GET /v1/models,\n"
                        "GET /health) with a chat page at /, batching concurrent requests. SIGTERM or Ctrl-C\n"
                        "finishes the requests already accepted, then exits. --adapter DIR serves a PEFT LoRA adapter\n"
                        "merged onto the model at load (an adapter of another base is refused). See docs/serve.md.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (max_batch < 1 || max_queue < 0 || context < 0 || port < 0 || port > 65535 || max_body_mb < 1 ||
        max_image_mpix < 1 || step_delay_ms < 0) {
        fprintf(stderr, "llava serve: need --max-batch >= 1, --max-queue >= 0, --context >= 0, 0 <= --port <= 65535, "
                        "--max-body-mb >= 1, --max-image-mpix >= 1, --step-delay-ms >= 0\n");
        return EXIT_BAD_INPUT;
    }
    const char *api_key = NULL;
    if (api_key_env) {
        api_key = getenv(api_key_env);
        if (!api_key || !*api_key) {
            fprintf(stderr, "llava serve: --api-key-env %s: that environment variable is empty or unset\n",
                    api_key_env);
            return EXIT_BAD_INPUT;
        }
    }
    char root_real[PATH_MAX];
    if (image_root && !realpath(image_root, root_real)) {
        fprintf(stderr, "llava serve: --image-root %s: no such folder\n", image_root);
        return EXIT_BAD_INPUT;
    }
    // Signals go to sigwait below, not to whichever thread they hit; the
    // server's threads inherit the mask. A peer closing a socket is an error
    // return, not SIGPIPE.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    Error err = {{0}};
    LlavaModel m;
    if (gen_cli_load(&cli, &m, &err) != 0) {
        fprintf(stderr, "llava serve: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_BAD_INPUT;
    TextPrompt tp = {0};
    Generator g = {0};
    Scheduler sched;
    HttpServer h;
    memset(&h, 0, sizeof h);
    int sched_up = 0;
    if (text_prompt_init(&tp, gen_cli_tokenizer_dir(&cli), cli.template_name, &m.cfg, &err) != 0 ||
        gen_init(&g, &m, max_batch, context ? context : m.cfg.text.max_positions, &err) != 0)
        goto fail;
    {  // the image path is checked now rather than at the first request
        ImageInput probe;
        if (image_input_init(&probe, gen_cli_processor_dir(&cli), &m.cfg, cli.aspect, &err) != 0) goto fail;
        image_input_free(&probe);
    }
    status = EXIT_ERROR;
    SchedConfig sc = {.tok = tp.tok, .eos_id = tp.eos_id, .max_queue = max_queue, .step_delay_ms = step_delay_ms,
                      .threads = cli.threads};
    if (sched_start(&sched, &g, &sc, &err) != 0) goto fail;
    sched_up = 1;
    char default_name[128];
    model_name_of(cli.src.adapter_dir ? cli.src.adapter_dir : cli.src.model_dir, default_name, sizeof default_name);
    h.model = (ServeModel){.m = &m, .tp = &tp, .model_name = model_name ? model_name : default_name,
                           .T_cap = g.T_cap,
                           .images = {.processor_dir = gen_cli_processor_dir(&cli), .aspect = cli.aspect,
                                      .image_root = image_root ? root_real : NULL,
                                      .max_pixels = (int64_t)max_image_mpix * 1000000,
                                      .max_bytes = (size_t)max_body_mb << 20}};
    h.sched = &sched;
    h.api_key = api_key;
    h.max_body = (size_t)max_body_mb << 20;
    if (http_server_start(&h, host, port, &err) != 0) {
        status = EXIT_BAD_INPUT;
        goto fail;
    }
    const double cache_mib = 2.0 * g.L * g.B_cap * g.T_cap * g.KV * (double)m.ops->act_size / (1 << 20);
    fprintf(stderr, "llava serve: listening on http://%s:%d (model %s%s%s, %d slots of %d positions, KV cache %.0f "
                    "MiB, queue %d%s)\n", host, http_server_port(&h), h.model.model_name,
            cli.src.adapter_dir ? ", adapter " : "", cli.src.adapter_dir ? cli.src.adapter_dir : "", max_batch,
            g.T_cap, cache_mib, max_queue, api_key ? ", API key required" : "");
    if (port_file) {
        char text[16];
        int len = snprintf(text, sizeof text, "%d\n", http_server_port(&h));
        if (write_file_atomic(port_file, text, (size_t)len, &err) != 0) {
            http_server_stop(&h);
            goto fail;
        }
    }
    int sig = 0;
    while (sig != SIGINT && sig != SIGTERM) sigwait(&sigs, &sig);
    int queued, running;
    sched_counts(&sched, &queued, &running, NULL);
    fprintf(stderr, "llava serve: %s: finishing %d running and %d queued requests; new ones are refused\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", running, queued);
    http_server_quiesce(&h);
    sched_begin_drain(&sched);
    sched_wait_idle(&sched);                     // every accepted job finishes
    int left = http_server_wait_idle(&h, 30.0);  // and its answer reaches the client
    if (left) fprintf(stderr, "llava serve: %d responses were still being sent after 30 s\n", left);
    http_server_stop(&h);
    sched_drain_and_stop(&sched);
    sched_up = 0;
    fprintf(stderr, "llava serve: stopped (%ld requests, %ld tokens generated in %ld batched steps, largest "
                    "batch %ld)\n", h.next_id, sched.stats.tokens, sched.stats.steps, sched.stats.max_batch_seen);
    status = EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "llava serve: %s\n", err.msg);
    if (sched_up) sched_drain_and_stop(&sched);
done:
    gen_free(&g);
    text_prompt_free(&tp);
    model_free(&m);
    return status;
}

#else

int cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llava serve: this build has no HTTP server: install libmicrohttpd (libmicrohttpd-dev, "
                    "scripts/install_deps.sh) and rebuild\n");
    return EXIT_ERROR;
}

#endif
