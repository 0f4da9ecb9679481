// `llava train --config FILE [--set key=value ...]`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/commands.h"
#include "train/trainer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: llava train --config FILE [--set key=value ...] [--print-config]\n"
            "       mpirun -np N llava train --config FILE ...   (data parallel)\n\n"
            "Trains per a JSON run config (configs/*.json; every key in docs/configs.md). --set overrides a key\n"
            "(repeatable; values are JSON: numbers, true/false, or plain strings). Resumes from the newest\n"
            "complete checkpoint in output_dir unless resume is \"none\". SIGINT/SIGTERM save a checkpoint.\n"
            "--print-config validates and prints the effective config without running.\n\n"
            "keys:\n");
    run_config_print_keys(out);
}

int cmd_train(int argc, char **argv) {
    RunConfig cfg;
    run_config_default(&cfg);
    Error err = {{0}};
    const char *config_path = NULL;
    int print_only = 0;
    // The config file first, then the overrides in order.
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            print_only = 1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            i++;
        } else {
            fprintf(stderr, "llava train: unexpected argument '%s' (see --help)\n", argv[i]);
            return EXIT_BAD_INPUT;
        }
    }
    if (config_path && run_config_load_file(&cfg, config_path, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && run_config_set(&cfg, argv[++i], &err) != 0) {
            fprintf(stderr, "llava train: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        } else if (strcmp(argv[i], "--config") == 0) {
            i++;
        }
    }
    if (run_config_validate(&cfg, &err) != 0) {
        fprintf(stderr, "llava train: %s%s\n", config_path ? "" : "(no --config given) ", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (print_only) {
        char *json = run_config_to_json(&cfg);
        printf("%s\n", json);
        free(json);
        return EXIT_OK;
    }
    Comm comm;
    if (comm_init(&comm, &argc, &argv, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_ERROR;
    }
    Trainer t;
    int rc = trainer_setup(&t, &cfg, &comm);
    if (rc == 0) rc = trainer_run(&t);
    // A rank that failed alone would leave the others waiting in a collective:
    // with several processes an error ends the whole job.
    if (rc != 0 && comm.world > 1) comm_abort(&comm, rc);
    trainer_free(&t);
    comm_finalize(&comm);
    return rc;
}
