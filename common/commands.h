// The `llava` subcommands. Each returns the process exit code (0 ok, 1 error,
// 2 bad input) and handles its own --help.
#ifndef LLAVA_COMMANDS_H
#define LLAVA_COMMANDS_H

int cmd_forward(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_datagen(int argc, char **argv);
int cmd_judge(int argc, char **argv);
int cmd_serve(int argc, char **argv);  // serve/cmd_serve.c

#endif
