/*
 * test_conf.c: configuration files: syntax checks with line numbers, the
 * merge in front of the command line (the command line wins, per key and
 * for no-X / X pairs), origins of merged arguments, and printing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg/conf.h"

static const struct option test_options[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "secret", required_argument, NULL, 'k' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "monitor", no_argument, NULL, 300 },
	{ "no-monitor", no_argument, NULL, 301 },
	{ "config", required_argument, NULL, 302 },
	{ NULL, 0, NULL, 0 },
};

static const char *const test_not_in_file[] = { "config", NULL };

static const struct agg_conf_syntax test_syntax = {
	.options = test_options,
	.shortopts = ":l:k:v",
	.positional = "server",
	.not_in_file = test_not_in_file,
	.config = "config",
};

static char conf_path[64];

/* Writes text into a fresh temporary file named in conf_path. */
static void write_conf(const char *text, size_t len)
{
	int fd;

	snprintf(conf_path, sizeof(conf_path), "/tmp/agg-test-conf.XXXXXX");
	fd = mkstemp(conf_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* Prepares argv with --config conf_path; returns the status. */
static int prepare(char **argv, int argc, struct agg_conf **conf,
    int *nargc, char ***nargv, char *err, size_t errlen)
{
	return agg_conf_prepare(&test_syntax, argc, argv, conf, nargc, nargv,
	    err, errlen);
}

START_TEST(test_merge_and_override)
{
	static const char text[] =
	    "# comment\n"
	    "listen = tcp://a:1\n"
	    "  listen=tcp://b:2  \n"
	    "secret = /etc/s # not a comment\n"
	    "verbose = 2\n"
	    "monitor = false\n"
	    "server = tcp://srv:1\n";
	char *argv[] = { "prog", "--config", conf_path, "-l", "tcp://c:3",
	    "--monitor", NULL };
	struct agg_conf *conf;
	char err[512], **v;
	int n;

	write_conf(text, sizeof(text) - 1);
	ck_assert_int_eq(prepare(argv, 6, &conf, &n, &v, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(conf);
	/* The file's listen and monitor lines give way to the command
	 * line's; the rest comes first, the positional last. */
	ck_assert_int_eq(n, 11);
	ck_assert_str_eq(v[0], "prog");
	ck_assert_str_eq(v[1], "--secret=/etc/s # not a comment");
	ck_assert_str_eq(v[2], "--verbose");
	ck_assert_str_eq(v[3], "--verbose");
	ck_assert_str_eq(v[4], "--config");
	ck_assert_str_eq(v[6], "-l");
	ck_assert_str_eq(v[8], "--monitor");
	ck_assert_str_eq(v[9], "--");
	ck_assert_str_eq(v[10], "tcp://srv:1");
	ck_assert_ptr_null(v[11]);
	{
		char want[128];

		snprintf(want, sizeof(want), "%s:4: ", conf_path);
		ck_assert_str_eq(agg_conf_origin(conf, v[1] + 9), want);
		snprintf(want, sizeof(want), "%s:7: ", conf_path);
		ck_assert_str_eq(agg_conf_origin(conf, v[10]), want);
	}
	ck_assert_str_eq(agg_conf_origin(conf, v[7]), "");
	agg_conf_free(conf);
	unlink(conf_path);
}
END_TEST

START_TEST(test_no_config)
{
	char *argv[] = { "prog", "-v", "x", NULL };
	struct agg_conf *conf = (struct agg_conf *)1;
	char err[128], **v;
	int n;

	ck_assert_int_eq(prepare(argv, 3, &conf, &n, &v, err, sizeof(err)), 0);
	ck_assert_ptr_null(conf);
	ck_assert_ptr_eq(v, argv);
	ck_assert_int_eq(n, 3);
	ck_assert_str_eq(agg_conf_origin(NULL, argv[1]), "");
}
END_TEST

START_TEST(test_errors_name_line)
{
	static const struct {
		const char *text;
		size_t len;
		const char *want;
	} bad[] = {
		{ "listen = x\nnope = 1\n", 20, ":2: unknown option 'nope'" },
		{ "\n\nverbose = sure\n", 17, ":3: 'verbose' takes true or "
		    "false, not 'sure'" },
		{ "verbose = 10\n", 13, ":1: 'verbose' takes true or false, "
		    "not '10'" },
		{ "secret =   \n", 12, ":1: 'secret' needs a value" },
		{ "= x\n", 4, ":1: missing key before '='" },
		{ "listen\n", 7, ":1: expected key = value" },
		{ "config = y\n", 11, ":1: 'config' cannot be set in a "
		    "configuration file" },
		{ "[s]\n", 4, ":1: sections are not used: write key = value "
		    "lines" },
		{ "secret = a\0b\n", 13, ":1: NUL byte in line" },
		{ "LISTEN = a\n", 11, ":1: bad key 'LISTEN': keys are long "
		    "option names (lowercase, digits, '-')" },
	};
	char *argv[] = { "prog", "--config", conf_path, NULL };
	struct agg_conf *conf;
	char err[512], want[600], **v;
	size_t i;
	int n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_conf(bad[i].text, bad[i].len);
		ck_assert_int_eq(prepare(argv, 3, &conf, &n, &v, err,
		    sizeof(err)), 2);
		ck_assert_ptr_null(conf);
		snprintf(want, sizeof(want), "%s%s", conf_path, bad[i].want);
		ck_assert_str_eq(err, want);
		unlink(conf_path);
	}
}
END_TEST

START_TEST(test_long_line_and_missing_file)
{
	char *argv[] = { "prog", "--config", conf_path, NULL };
	struct agg_conf *conf;
	char err[512], want[600], **v, *text;
	int n;

	text = malloc(5000);
	ck_assert_ptr_nonnull(text);
	memcpy(text, "secret = ", 9);
	memset(text + 9, 'x', 4990);
	text[4999] = '\n';
	write_conf(text, 5000);
	free(text);
	ck_assert_int_eq(prepare(argv, 3, &conf, &n, &v, err, sizeof(err)), 2);
	snprintf(want, sizeof(want), "%s:1: line longer than 4096 bytes",
	    conf_path);
	ck_assert_str_eq(err, want);
	unlink(conf_path);
	ck_assert_int_eq(prepare(argv, 3, &conf, &n, &v, err, sizeof(err)), 1);
	snprintf(want, sizeof(want), "cannot read %s: No such file or "
	    "directory", conf_path);
	ck_assert_str_eq(err, want);
}
END_TEST

/* The file's positional values stay values when they start with '-':
 * `server = -v` is a server named -v (refused later as a URL), not
 * --verbose, and `server = --help` cannot pass a key files may not set. */
START_TEST(test_positional_not_option)
{
	static const char text[] =
	    "server = -v\n"
	    "server = --config=/other\n";
	char *argv[] = { "prog", "--config", conf_path, NULL };
	struct agg_conf *conf;
	char err[512], **v, *buf = NULL;
	size_t len = 0;
	FILE *f;
	int n;

	write_conf(text, sizeof(text) - 1);
	ck_assert_int_eq(prepare(argv, 3, &conf, &n, &v, err, sizeof(err)), 0);
	f = open_memstream(&buf, &len);
	ck_assert_ptr_nonnull(f);
	agg_conf_print(f, &test_syntax, n, v);
	fclose(f);
	ck_assert_str_eq(buf, "server = -v\nserver = --config=/other\n");
	free(buf);
	agg_conf_free(conf);
	unlink(conf_path);
}
END_TEST

/* A line without its end (here a pipe that stays open after 8 KiB and
 * no newline, as /dev/zero would be) is refused after 4097 bytes rather
 * than read into memory until the end that never comes. */
START_TEST(test_endless_line_refused)
{
	char path[64], err[512], want[600], **v;
	char *argv[] = { "prog", "--config", path, NULL };
	struct agg_conf *conf;
	char block[8192];
	int fds[2], n;

	ck_assert_int_eq(pipe(fds), 0);
	memset(block, 'x', sizeof(block));
	ck_assert_int_eq(write(fds[1], block, sizeof(block)),
	    (ssize_t)sizeof(block));
	snprintf(path, sizeof(path), "/dev/fd/%d", fds[0]);
	ck_assert_int_eq(prepare(argv, 3, &conf, &n, &v, err, sizeof(err)), 2);
	snprintf(want, sizeof(want), "%s:1: line longer than 4096 bytes",
	    path);
	ck_assert_str_eq(err, want);
	ck_assert_ptr_null(conf);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_print)
{
	char *argv[] = { "prog", "--config=/etc/c", "-l", "tcp://a:1",
	    "--no-monitor", "-vv", "--secret", "/s", "tcp://srv:1", NULL };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	agg_conf_print(f, &test_syntax, 9, argv);
	fclose(f);
	ck_assert_str_eq(buf, "listen = tcp://a:1\nmonitor = false\n"
	    "verbose = true\nverbose = true\nsecret = /s\n"
	    "server = tcp://srv:1\n");
	/* The vector itself is left as it was. */
	ck_assert_str_eq(argv[8], "tcp://srv:1");
	free(buf);
}
END_TEST

/* The suite. */
static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_merge_and_override);
	tcase_add_test(tc, test_no_config);
	tcase_add_test(tc, test_errors_name_line);
	tcase_add_test(tc, test_long_line_and_missing_file);
	tcase_add_test(tc, test_endless_line_refused);
	tcase_add_test(tc, test_positional_not_option);
	tcase_add_test(tc, test_print);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite. */
int main(void)
{
	SRunner *sr = srunner_create(conf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
