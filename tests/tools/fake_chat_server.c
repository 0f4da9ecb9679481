// The fake chat-completions server as a program, for the shell tests:
//   fake_chat_server RULES.json PORT_FILE LOG.jsonl [KEY]
// Writes its port to PORT_FILE once it listens, logs every request as one
// JSON line, and serves until SIGTERM/SIGINT.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../fake_server.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: fake_chat_server RULES.json PORT_FILE LOG.jsonl [KEY]\n");
        return 2;
    }
    FakeRule *rules;
    int n;
    void *keep;
    if (fake_rules_load(argv[1], &rules, &n, &keep) != 0) return 2;
    FILE *log = fopen(argv[3], "a");
    if (!log) {
        perror(argv[3]);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);  // the server's threads inherit the mask
    FakeServer *s = fake_server_start(rules, n, argc > 4 ? argv[4] : NULL, log);
    if (!s) return 1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *pf = fopen(tmp, "w");
    if (!pf || fprintf(pf, "%d\n", fake_server_port(s)) < 0 || fclose(pf) != 0 || rename(tmp, argv[2]) != 0) {
        perror(argv[2]);
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    fake_server_stop(s);
    fclose(log);
    free(rules);
    cJSON_Delete(keep);
    return 0;
}
