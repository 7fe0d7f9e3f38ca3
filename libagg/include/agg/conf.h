/*
 * agg/conf.h: configuration files (--config FILE) and --show-config.
 *
 * A file holds `key = value` lines whose keys are the program's long option
 * names: `secret = /etc/agg/secret`, `listen = tcp://[::]:5800`. A key may
 * repeat where the option may (listen, allow, socks, ...). Options without
 * an argument take true or false (or a count, e.g. `verbose = 2`); the
 * command line's positional arguments are lines of the key the program
 * names (agg-client: `server = tcp://srv:5800`). Blank lines and lines
 * whose first non-blank character is `#` or `;` are ignored; there are no
 * sections, quotes or continuation lines, so a value is the rest of the
 * line, blanks around it removed.
 *
 * agg_conf_merge() turns the file into options placed before the command
 * line's, leaving out every key the command line gives itself, so the
 * program's own getopt_long() loop reads both and the command line wins.
 * agg_conf_print() writes the options in effect back in the same format.
 */
#ifndef AGG_CONF_H
#define AGG_CONF_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

struct agg_conf;

/* What a program's command line looks like. */
struct agg_conf_syntax {
	const struct option *options;  /* its getopt_long table */
	const char *shortopts;         /* its getopt_long short options */
	const char *positional;        /* key of positional arguments, or
	                                  NULL when it takes none */
	const char *const *not_in_file;  /* keys a file may not set, e.g.
	                                    "config", "help"; NULL-ended */
	const char *config;            /* the option naming the file */
};

/* Reads and checks the file's syntax and keys; NULL with
 * "PATH:LINE: what is wrong" in err and *unreadable 0, or
 * "cannot read PATH: why" and *unreadable 1. */
struct agg_conf *agg_conf_load(const char *path,
    const struct agg_conf_syntax *syn, int *unreadable, char *err,
    size_t errlen);
/* Frees the file and the argument vector made from it (NULL is fine). */
void agg_conf_free(struct agg_conf *conf);

/* Finds the config option on the command line; with one, loads the file
 * into *confp and makes the argument vector to parse: argv[0], the file's
 * options the command line does not give, the command line's arguments,
 * and the file's positional arguments if the command line has none.
 * Without one, *confp is NULL and the vector is argv. 0, or 1 (file
 * unreadable, out of memory) or 2 (file invalid) with a reason in err. */
int agg_conf_prepare(const struct agg_conf_syntax *syn, int argc,
    char **argv, struct agg_conf **confp, int *out_argc, char ***out_argv,
    char *err, size_t errlen);
/* "PATH:LINE: " when arg is a string agg_conf_merge() made from the file,
 * else "". For error messages about the argument being parsed. */
const char *agg_conf_origin(const struct agg_conf *conf, const char *arg);

/* Writes the options of a merged argument vector as `key = value` lines
 * (options in not_in_file are left out). The vector is not changed. */
void agg_conf_print(FILE *out, const struct agg_conf_syntax *syn, int argc,
    char **argv);
/* Writes one `key = value` line. */
void agg_conf_print_line(FILE *out, const char *key, const char *value);

#endif
