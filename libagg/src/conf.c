/*
 * conf.c: configuration files as `key = value` lines of long option names,
 * merged in front of the command line, and --show-config. A small strict
 * parser rather than an INI library: no sections, no inline comments
 * (values may hold `#` and `;`), no continuation lines, every error named
 * with its line, lines bounded.
 */
#include "agg/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Longest line read, without its newline. */
#define CONF_LINE_MAX 4096
/* Lines with a key read from one file, at most. */
#define CONF_ENTRIES_MAX 1024
/* Times a flag may be given by one line (verbose = 3). */
#define CONF_COUNT_MAX 9

struct conf_entry {
	char *key;
	char *value;
	unsigned line;
	int count;         /* flags: how many times (0: false) */
};

/* One string of the merged vector that came from the file. */
struct conf_token {
	char *text;
	unsigned line;
};

struct agg_conf {
	char *path;
	struct conf_entry *entries;
	size_t nentries;
	struct conf_token *tokens;
	size_t ntokens;
	char **argv;
	char origin[600];
};

/* The getopt_long entry of a long option name, or NULL. */
static const struct option *conf_find(const struct agg_conf_syntax *syn,
    const char *name)
{
	const struct option *o;

	for (o = syn->options; o->name != NULL; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

/* Whether name is a key files may not set. */
static int conf_forbidden(const struct agg_conf_syntax *syn, const char *name)
{
	const char *const *k;

	for (k = syn->not_in_file; k != NULL && *k != NULL; k++)
		if (strcmp(*k, name) == 0)
			return 1;
	return 0;
}

/* The key an option counts as: "monitor" for "no-monitor" when both
 * exist, so that one on the command line overrides the other in a file. */
static const char *conf_family(const struct agg_conf_syntax *syn,
    const char *name)
{
	if (strncmp(name, "no-", 3) == 0 && conf_find(syn, name + 3) != NULL)
		return name + 3;
	return name;
}

/* Reads a flag's value: true/false, yes/no, on/off or a count. */
static int conf_flag_value(const char *v)
{
	char *end;
	long n;

	if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
	    strcmp(v, "on") == 0)
		return 1;
	if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
	    strcmp(v, "off") == 0)
		return 0;
	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n > CONF_COUNT_MAX)
		return -1;
	return (int)n;
}

/* Removes blanks at both ends, in place. */
static char *conf_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
	    end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

/* Checks one `key = value` line and stores it; -1 with the reason. */
static int conf_parse_line(struct agg_conf *conf,
    const struct agg_conf_syntax *syn, char *line, unsigned lineno,
    char *why, size_t whylen)
{
	const struct option *o = NULL;
	struct conf_entry *e;
	char *eq, *key, *value;
	int count = 1;
	size_t i;

	if ((eq = strchr(line, '=')) == NULL) {
		snprintf(why, whylen, "expected key = value");
		return -1;
	}
	*eq = '\0';
	key = conf_trim(line);
	value = conf_trim(eq + 1);
	if (key[0] == '\0') {
		snprintf(why, whylen, "missing key before '='");
		return -1;
	}
	for (i = 0; key[i] != '\0'; i++)
		if (!islower((unsigned char)key[i]) &&
		    !isdigit((unsigned char)key[i]) && key[i] != '-') {
			snprintf(why, whylen, "bad key '%.100s': keys are "
			    "long option names (lowercase, digits, '-')", key);
			return -1;
		}
	if (syn->positional == NULL || strcmp(key, syn->positional) != 0) {
		if ((o = conf_find(syn, key)) == NULL) {
			snprintf(why, whylen, "unknown option '%.100s'", key);
			return -1;
		}
		if (conf_forbidden(syn, key)) {
			snprintf(why, whylen, "'%.100s' cannot be set in a "
			    "configuration file", key);
			return -1;
		}
	}
	if (o != NULL && o->has_arg == no_argument) {
		if ((count = conf_flag_value(value)) < 0) {
			snprintf(why, whylen, "'%.100s' takes true or false, "
			    "not '%.100s'", key, value);
			return -1;
		}
	} else if (value[0] == '\0') {
		snprintf(why, whylen, "'%.100s' needs a value", key);
		return -1;
	}
	if (conf->nentries == CONF_ENTRIES_MAX) {
		snprintf(why, whylen, "too many lines (at most %d options)",
		    CONF_ENTRIES_MAX);
		return -1;
	}
	e = &conf->entries[conf->nentries];
	if ((e->key = strdup(key)) == NULL ||
	    (e->value = strdup(value)) == NULL) {
		free(e->key);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	e->line = lineno;
	e->count = count;
	conf->nentries++;
	return 0;
}

/* Reads one line of f into buf (CONF_LINE_MAX + 2 bytes), without its
 * newline, reading no further than one byte past the longest line: a
 * file without newlines (/dev/zero) is refused, not held in memory.
 * Returns its length, CONF_LINE_MAX + 1 when longer, -1 at the end. */
static long conf_getline(FILE *f, char *buf)
{
	size_t len = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		buf[len++] = (char)ch;
		if (len > CONF_LINE_MAX)
			break;
	}
	buf[len] = '\0';
	if (ch == EOF && len == 0)
		return -1;
	return (long)len;
}

/* Reads every line of f into conf; -1 with "PATH:LINE: why" in err. */
static int conf_read(struct agg_conf *conf, FILE *f,
    const struct agg_conf_syntax *syn, char *err, size_t errlen)
{
	char why[300], *buf, *line;
	unsigned lineno = 0;
	size_t len;
	long got;
	int r = -1;

	if ((buf = malloc(CONF_LINE_MAX + 2)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	errno = 0;
	while ((got = conf_getline(f, buf)) >= 0) {
		lineno++;
		len = (size_t)got;
		if (len > CONF_LINE_MAX) {
			snprintf(err, errlen, "%.300s:%u: line longer than %d "
			    "bytes", conf->path, lineno, CONF_LINE_MAX);
			goto out;
		}
		if (memchr(buf, '\0', len) != NULL) {
			snprintf(err, errlen, "%.300s:%u: NUL byte in line",
			    conf->path, lineno);
			goto out;
		}
		line = buf;
		if (lineno == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
			line += 3;
		line = conf_trim(line);
		if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
			continue;
		if (line[0] == '[') {
			snprintf(err, errlen, "%.300s:%u: sections are not used: "
			    "write key = value lines", conf->path, lineno);
			goto out;
		}
		if (conf_parse_line(conf, syn, line, lineno, why,
		    sizeof(why)) != 0) {
			snprintf(err, errlen, "%.300s:%u: %s", conf->path,
			    lineno, why);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read %.300s: %s", conf->path,
		    strerror(errno));
		goto out;
	}
	r = 0;
out:
	free(buf);
	return r;
}

/* Reads and checks a configuration file. */
struct agg_conf *agg_conf_load(const char *path,
    const struct agg_conf_syntax *syn, int *unreadable, char *err,
    size_t errlen)
{
	struct agg_conf *conf;
	FILE *f;

	*unreadable = 1;
	if ((conf = calloc(1, sizeof(*conf))) == NULL ||
	    (conf->path = strdup(path)) == NULL ||
	    (conf->entries = calloc(CONF_ENTRIES_MAX,
	    sizeof(*conf->entries))) == NULL) {
		snprintf(err, errlen, "out of memory");
		agg_conf_free(conf);
		return NULL;
	}
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot read %.300s: %s", path,
		    strerror(errno));
		agg_conf_free(conf);
		return NULL;
	}
	if (conf_read(conf, f, syn, err, errlen) != 0) {
		*unreadable = ferror(f) != 0;
		fclose(f);
		agg_conf_free(conf);
		return NULL;
	}
	fclose(f);
	*unreadable = 0;
	return conf;
}

/* Frees the file and its vector. */
void agg_conf_free(struct agg_conf *conf)
{
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; conf->entries != NULL && i < conf->nentries; i++) {
		free(conf->entries[i].key);
		free(conf->entries[i].value);
	}
	for (i = 0; i < conf->ntokens; i++)
		free(conf->tokens[i].text);
	free(conf->entries);
	free(conf->tokens);
	free(conf->argv);
	free(conf->path);
	free(conf);
}

/* The long name of what getopt_long returned, or NULL. */
static const char *conf_option_name(const struct agg_conf_syntax *syn,
    int ch, int index)
{
	const struct option *o;

	if (index >= 0)
		return syn->options[index].name;
	for (o = syn->options; o->name != NULL; o++)
		if (o->flag == NULL && o->val == ch)
			return o->name;
	return NULL;
}

/* Walks the options of a copy of argv with getopt_long, calling fn for
 * each (name NULL for a short option without a long name); returns the
 * index of the first positional argument of the copy in *first and the
 * copy itself, which the caller frees. */
static char **conf_walk(const struct agg_conf_syntax *syn, int argc,
    char **argv, void (*fn)(const char *name, const char *arg, void *ctx),
    void *ctx, int *first)
{
	char **copy = calloc((size_t)argc + 1, sizeof(*copy));
	int ch, index, saved_opterr = opterr;

	if (copy == NULL)
		return NULL;
	memcpy(copy, argv, (size_t)argc * sizeof(*copy));
	opterr = 0;
	optind = 0;
	while ((index = -1, ch = getopt_long(argc, copy, syn->shortopts,
	    syn->options, &index)) != -1) {
		if (ch == '?' || ch == ':')
			continue;
		fn(conf_option_name(syn, ch, index), optarg, ctx);
	}
	*first = optind;
	optind = 0;
	opterr = saved_opterr;
	return copy;
}

/* What the command line gives. */
struct conf_given {
	const struct agg_conf_syntax *syn;
	const char *families[256];
	size_t n;
	const char *config;
};

/* Notes one option of the command line. */
static void conf_given_cb(const char *name, const char *arg, void *ctx)
{
	struct conf_given *g = ctx;

	if (name == NULL)
		return;
	if (g->syn->config != NULL && strcmp(name, g->syn->config) == 0)
		g->config = arg;
	if (g->n < 256)
		g->families[g->n++] = conf_family(g->syn, name);
}

/* Whether the command line gives an option of key's family. */
static int conf_is_given(const struct conf_given *g, const char *key)
{
	const char *family = conf_family(g->syn, key);
	size_t i;

	for (i = 0; i < g->n; i++)
		if (strcmp(g->families[i], family) == 0)
			return 1;
	return 0;
}

/* Adds a string made from the file at line to the vector. */
static int conf_add_token(struct agg_conf *conf, int *argc, char *text,
    unsigned line)
{
	if (text == NULL)
		return -1;
	conf->tokens[conf->ntokens].text = text;
	conf->tokens[conf->ntokens++].line = line;
	conf->argv[(*argc)++] = text;
	return 0;
}

/* Makes "--key=value" or "--key". */
static char *conf_option_text(const char *key, const char *value)
{
	size_t len = strlen(key) + (value != NULL ? strlen(value) + 1 : 0) + 3;
	char *t = malloc(len);

	if (t != NULL)
		snprintf(t, len, "--%s%s%s", key, value != NULL ? "=" : "",
		    value != NULL ? value : "");
	return t;
}

/* Ends the options of a merged vector before the file's positional
 * values. */
static char conf_end_of_options[] = "--";

/* Builds the merged vector. */
static int conf_merge(struct agg_conf *conf, const struct agg_conf_syntax *syn,
    const struct conf_given *g, int positional, int argc, char **argv,
    int *out_argc, char ***out_argv)
{
	size_t i, cap = 2 + (size_t)argc;
	int n = 0, k, ended = 0;

	for (i = 0; i < conf->nentries; i++)
		cap += (size_t)conf->entries[i].count + 1;
	conf->argv = calloc(cap + 1, sizeof(*conf->argv));
	conf->tokens = calloc(cap + 1, sizeof(*conf->tokens));
	if (conf->argv == NULL || conf->tokens == NULL)
		return -1;
	conf->argv[n++] = argv[0];
	for (i = 0; i < conf->nentries; i++) {
		const struct conf_entry *e = &conf->entries[i];
		const struct option *o = conf_find(syn, e->key);
		char no[128];

		if (o == NULL || conf_is_given(g, e->key))
			continue;
		if (o->has_arg != no_argument) {
			if (conf_add_token(conf, &n, conf_option_text(e->key,
			    e->value), e->line) != 0)
				return -1;
			continue;
		}
		snprintf(no, sizeof(no), "no-%s", e->key);
		if (e->count == 0 && conf_find(syn, no) != NULL &&
		    conf_add_token(conf, &n, conf_option_text(no, NULL),
		    e->line) != 0)
			return -1;
		for (k = 0; k < e->count; k++)
			if (conf_add_token(conf, &n, conf_option_text(e->key,
			    NULL), e->line) != 0)
				return -1;
	}
	for (k = 1; k < argc; k++)
		conf->argv[n++] = argv[k];
	for (i = 0; !positional && syn->positional != NULL &&
	    i < conf->nentries; i++) {
		if (strcmp(conf->entries[i].key, syn->positional) != 0)
			continue;
		/* The file's positional values are values, not options, even
		 * when they start with '-'; a "--" the command line ends
		 * with already says so. */
		if (!ended && (argc < 2 || strcmp(argv[argc - 1], "--") != 0))
			conf->argv[n++] = conf_end_of_options;
		ended = 1;
		if (conf_add_token(conf, &n, strdup(conf->entries[i].value),
		    conf->entries[i].line) != 0)
			return -1;
	}
	conf->argv[n] = NULL;
	*out_argc = n;
	*out_argv = conf->argv;
	return 0;
}

/* Loads the file the command line names and makes the vector to parse. */
int agg_conf_prepare(const struct agg_conf_syntax *syn, int argc,
    char **argv, struct agg_conf **confp, int *out_argc, char ***out_argv,
    char *err, size_t errlen)
{
	struct conf_given g;
	char **copy;
	int first, unreadable;

	*confp = NULL;
	*out_argc = argc;
	*out_argv = argv;
	memset(&g, 0, sizeof(g));
	g.syn = syn;
	if ((copy = conf_walk(syn, argc, argv, conf_given_cb, &g, &first)) ==
	    NULL) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	free(copy);
	if (g.config == NULL)
		return 0;
	if ((*confp = agg_conf_load(g.config, syn, &unreadable, err,
	    errlen)) == NULL)
		return unreadable ? 1 : 2;
	if (conf_merge(*confp, syn, &g, first < argc, argc, argv, out_argc,
	    out_argv) != 0) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	return 0;
}

/* "PATH:LINE: " when arg came from the file. */
const char *agg_conf_origin(const struct agg_conf *conf, const char *arg)
{
	struct agg_conf *c = (struct agg_conf *)conf;
	size_t i;

	if (conf == NULL || arg == NULL)
		return "";
	for (i = 0; i < conf->ntokens; i++)
		if (arg >= conf->tokens[i].text && arg <=
		    conf->tokens[i].text + strlen(conf->tokens[i].text)) {
			snprintf(c->origin, sizeof(c->origin), "%.300s:%u: ",
			    conf->path, conf->tokens[i].line);
			return c->origin;
		}
	return "";
}

/* Writes one `key = value` line. */
void agg_conf_print_line(FILE *out, const char *key, const char *value)
{
	fprintf(out, "%s = %s\n", key, value);
}

/* What agg_conf_print() walks with. */
struct conf_printer {
	const struct agg_conf_syntax *syn;
	FILE *out;
};

/* Prints one option in effect. */
static void conf_print_cb(const char *name, const char *arg, void *ctx)
{
	struct conf_printer *p = ctx;

	if (name == NULL || conf_forbidden(p->syn, name))
		return;
	if (arg != NULL)
		agg_conf_print_line(p->out, name, arg);
	else if (conf_family(p->syn, name) != name)
		agg_conf_print_line(p->out, conf_family(p->syn, name),
		    "false");
	else
		agg_conf_print_line(p->out, name, "true");
}

/* Writes the options of a merged vector as `key = value` lines. */
void agg_conf_print(FILE *out, const struct agg_conf_syntax *syn, int argc,
    char **argv)
{
	struct conf_printer p = { syn, out };
	char **copy;
	int first, i;

	if ((copy = conf_walk(syn, argc, argv, conf_print_cb, &p,
	    &first)) == NULL)
		return;
	for (i = first; syn->positional != NULL && i < argc; i++)
		agg_conf_print_line(out, syn->positional, copy[i]);
	free(copy);
}
