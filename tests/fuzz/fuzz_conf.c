/*
 * fuzz_conf.c: libFuzzer entry point for configuration files (conf.c).
 *
 * The first input byte picks one of a few command lines; the rest is the
 * file, handed to agg_conf_prepare() through a memfd. A file that loads
 * must merge, name the origin of every merged argument, and print as
 * `key = value` lines that load again and print the same text (the
 * --show-config round trip). Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agg/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The option table of agg-client, which has every kind of option: with
 * and without arguments, a no-X pair, a positional key, short options. */
static const struct option fuzz_options[] = {
	{ "socks", required_argument, NULL, 'D' },
	{ "forward", required_argument, NULL, 'L' },
	{ "secret", required_argument, NULL, 'k' },
	{ "ipv4", no_argument, NULL, '4' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "version", no_argument, NULL, 300 },
	{ "help", no_argument, NULL, 'h' },
	{ "monitor", no_argument, NULL, 301 },
	{ "no-monitor", no_argument, NULL, 302 },
	{ "time", required_argument, NULL, 303 },
	{ "dump", required_argument, NULL, 304 },
	{ "config", required_argument, NULL, 305 },
	{ "show-config", no_argument, NULL, 306 },
	{ NULL, 0, NULL, 0 },
};

static const char *const fuzz_not_in_file[] = {
	"config", "show-config", "help", "version", NULL,
};

static const struct agg_conf_syntax fuzz_syntax = {
	.options = fuzz_options,
	.shortopts = ":D:L:k:4vh",
	.positional = "server",
	.not_in_file = fuzz_not_in_file,
	.config = "config",
};

/* Aborts unless cond holds (kept under NDEBUG, unlike assert). */
static void check(int cond)
{
	if (!cond)
		abort();
}

/* A memfd holding len bytes of data, and its path in path. */
static int fuzz_file(const void *data, size_t len, char *path, size_t cap)
{
	int fd = memfd_create("agg-fuzz-conf", MFD_CLOEXEC);

	check(fd >= 0);
	check(write(fd, data, len) == (ssize_t)len);
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

/* Prints a merged vector into a malloc'ed string of *len bytes. */
static char *fuzz_print(int argc, char **argv, size_t *len)
{
	char *text = NULL;
	FILE *out = open_memstream(&text, len);

	check(out != NULL);
	agg_conf_print(out, &fuzz_syntax, argc, argv);
	check(fclose(out) == 0);
	return text;
}

/* Loads the file at path under the command line picked by which; returns
 * the printed configuration, or NULL when the file does not load. */
static char *fuzz_run(const char *path, unsigned which, size_t *len)
{
	static const char *const lines[4][6] = {
		{ "agg-client", "--config", "@", NULL },
		{ "agg-client", "-v", "--config", "@", "tcp://a:1", NULL },
		{ "agg-client", "--no-monitor", "--secret=/k", "--config", "@",
		    NULL },
		{ "agg-client", "--conf", "@", "-D", "127.0.0.1:9", NULL },
	};
	const char *const *line = lines[which % 4];
	char *argv[6], **out_argv, err[700];
	struct agg_conf *conf;
	char *text = NULL;
	int argc, out_argc, r, i;

	for (argc = 0; line[argc] != NULL; argc++)
		argv[argc] = (char *)(strcmp(line[argc], "@") == 0 ? path :
		    line[argc]);
	argv[argc] = NULL;
	err[0] = '\0';
	r = agg_conf_prepare(&fuzz_syntax, argc, argv, &conf, &out_argc,
	    &out_argv, err, sizeof(err));
	check(r >= 0 && r <= 2);
	if (r != 0) {
		check(conf == NULL && err[0] != '\0');
		check(strchr(err, '\n') == NULL);
		return NULL;
	}
	check(conf != NULL && out_argc >= argc && out_argv[out_argc] == NULL);
	for (i = 0; i < out_argc; i++)
		check(strlen(agg_conf_origin(conf, out_argv[i])) < 700);
	text = fuzz_print(out_argc, out_argv, len);
	agg_conf_free(conf);
	return text;
}

/* Loads the file, prints it, loads the print and prints it again. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], path2[64], *first, *second;
	size_t len, len2;
	int fd, fd2;

	if (size == 0)
		return 0;
	fd = fuzz_file(data + 1, size - 1, path, sizeof(path));
	first = fuzz_run(path, data[0], &len);
	close(fd);
	if (first == NULL)
		return 0;
	fd2 = fuzz_file(first, len, path2, sizeof(path2));
	second = fuzz_run(path2, 0, &len2);
	close(fd2);
	check(second != NULL && len2 == len && memcmp(first, second, len) == 0);
	free(first);
	free(second);
	return 0;
}
