/*
 * main.c: agg-client. Parses the command line, runs one session over a
 * link set to the servers, and serves the -D / -L fronts or the -W pipe
 * on it. A session the server dropped is replaced by a new one (-D, -L)
 * or ends the program (-W). Exit status: 0 success, 1 runtime failure,
 * 2 usage error, each failure with one line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "agg/conf.h"
#include "agg/dump.h"
#include "agg/key.h"
#include "agg/log.h"
#include "agg/session.h"
#include "agg/target.h"
#include "agg/url.h"
#include "client.h"
#include "front.h"
#include "httpproxy.h"
#include "linkset.h"
#include "monitor.h"
#include "socks.h"
#include "speedtest.h"
#include "stdpipe.h"
#include "tcp.h"
#include "tls.h"

#ifndef AGG_VERSION
#define AGG_VERSION "unknown"
#endif

#define PROGRAM "agg-client"
/* -W gives up if no link has come up within this. */
#define CLIENT_START_TIMEOUT_MS 15000u
/* How often the link situation is looked at. */
#define CLIENT_WATCH_MS 1000u
/* After -W ends cleanly, how long its last bytes may take to be acked. */
#define CLIENT_DRAIN_MS 3000u
#define CLIENT_DRAIN_POLL_MS 20u
/* A shutdown is over within this, whatever is still open. */
#define CLIENT_SHUTDOWN_MS 4500u
/* Pause before a new session replaces a closed one. */
#define CLIENT_RENEW_MS 250u

struct client {
	struct event_base *base;
	struct evdns_base *dns;
	struct agg_config cfg;
	struct agg_linkset_config lscfg;
	const char **ifaces;
	struct agg_url *servers;
	size_t nservers;
	uint8_t key[AGG_SECRET_MAX];
	size_t key_len;
	const char *key_file, *users_file;
	const char *ca_file, *cert_file, *cert_key_file;
	struct agg_tls *tls;       /* for tls:// and wss:// servers */
	struct agg_http_proxy http_proxy;
	struct socks_users *users;
	struct front_spec *specs;
	size_t nspecs;
	struct front **fronts;
	size_t nfronts;
	int have_pipe;
	struct agg_target pipe_target;
	struct stdpipe *pipe;
	int verbosity;
	const char *dump_path;
	struct agg_dump *dump;
	int speed_test, speed_json;
	unsigned speed_seconds;
	struct speedtest *speedtest;
	int show_config, default_front;
	int monitor_mode;          /* 1 --monitor, 2 by default, 0 none;
	                              -1 until the command line is read */
	struct monitor *monitor;

	struct agg_session *session;
	struct agg_linkset *linkset;
	struct event *sig_int, *sig_term, *sig_hup, *watch, *finish, *renew, *drain,
	    *deadline;
	uint64_t start_ms, drain_start_ms;
	int ever_up;
	char logged[512];          /* the link error logged last */

	int exiting;               /* client_exit() was called */
	int signalled;
	int session_closed;        /* the shutdown closed the session */
	int status;
	char reason[512];
};

static const char usage_text[] =
"usage: agg-client [-D [ADDR:]PORT]... [-L [ADDR:]PORT:HOST:HOSTPORT]...\n"
"                  [-W HOST:PORT] [-k SECRET_FILE] [--socks-auth FILE]\n"
"                  [-i IFACE]... [--link-filter FILTER] [-4|-6] [--dump FILE]\n"
"                  [--speed-test [--time S] [--json]]\n"
"                  [--monitor|--no-monitor] [--config FILE]\n"
"                  [--show-config] [--tcp-congestion CC] [-v|-q]\n"
"                  [--version] [--help] SERVER_URL...\n"
"\n"
"Carries local TCP connections to agg-server as streams of one session\n"
"spread over several links, one per local interface and server address.\n"
"\n"
"  -D [ADDR:]PORT     SOCKS5 (RFC 1928, names resolved by the server) and\n"
"                     HTTP CONNECT proxy; ADDR defaults to 127.0.0.1, [v6]\n"
"                     in brackets, * for every address\n"
"  -L [ADDR:]PORT:HOST:HOSTPORT\n"
"                     forward connections to ADDR:PORT to HOST:HOSTPORT, as\n"
"                     the server resolves and reaches it\n"
"  -W HOST:PORT       join stdin and stdout to HOST:PORT and exit when that\n"
"                     connection ends (for ssh's ProxyCommand)\n"
"                     Without -D, -L and -W: -D 127.0.0.1:1080.\n"
"  -k SECRET_FILE     the secret shared with the server, one line; without\n"
"                     it, an empty secret (server in --insecure-no-auth)\n"
"  --socks-auth FILE  -D asks for a user:password line of FILE (SOCKS5\n"
"                     username/password, HTTP Proxy-Authorization: Basic)\n"
"  -i IFACE           dial links only from this interface (repeatable)\n"
"  --link-filter FILTER\n"
"                     any: every interface x every server address;\n"
"                     interface-ip (default): every interface x the server\n"
"                     addresses of its family; interface-interface: one\n"
"                     link per interface\n"
"  -4, -6             use only IPv4 / IPv6 server addresses\n"
"  --speed-test       measure the links together: upload, then download\n"
"                     the server's built-in test stream (checked byte by\n"
"                     byte), a line per second with each link's share\n"
"  --time S           seconds of each direction (default 10)\n"
"  --json             print only one JSON object with the result\n"
"  --monitor          full-screen view of the links (default when stdout\n"
"                     is a terminal, without -W and --speed-test); keys:\n"
"                     q quit, a show/hide links not connected\n"
"  --no-monitor       no full-screen view: log lines on stderr\n"
"  --config FILE      read options from FILE: key = value lines, keys the\n"
"                     long option names (socks, forward, stdio, secret,\n"
"                     interface, ipv4, ipv6, verbose, quiet, ...), server\n"
"                     for SERVER_URL; command-line options override it\n"
"  --show-config      print the configuration in effect in that format\n"
"  --dump FILE        write the session's and links' statistics to FILE\n"
"                     every 100 ms, one JSON object per line (agg-plot\n"
"                     draws them)\n"
"  --tcp-congestion CC\n"
"                     TCP congestion control of the links (cubic, bbr,\n"
"                     ...); default: the system's\n"
"  -v, -q             more / less logging on stderr (repeatable)\n"
"  --version          print the version\n"
"  --help             print this help\n"
"  SERVER_URL         tcp://HOST[:PORT], tls://HOST[:PORT],\n"
"                     ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH of an\n"
"                     agg-server (default port 5800); several may be\n"
"                     given, of any schemes, for one session\n"
"                     usb://[VID:PID][?serial=S] is a USB link to an\n"
"                     agg-server acting as a USB gadget (default 1209:0001)\n"
"\n"
"  --ca FILE          tls:// and wss://: trust the server certificates this\n"
"                     CA file signed (default: the system store); the\n"
"                     certificate must name the URL's host\n"
"  --cert F --key F   tls:// and wss://: a client certificate (mutual TLS)\n"
"                     Without --ca and --cert, -k also gives TLS 1.3 an\n"
"                     external PSK, so no certificates are needed.\n"
"\n"
"  --http-proxy http://HOST:PORT\n"
"                     reach the server through this HTTP proxy (CONNECT);\n"
"                     every link goes through it, of any scheme\n"
"\n"
"Long names: --socks (-D), --forward (-L), --stdio (-W), --secret (-k),\n"
"--interface (-i), --ipv4 (-4), --ipv6 (-6), --verbose (-v), --quiet (-q).\n";

enum {
	OPT_SOCKS_AUTH = 256,
	OPT_LINK_FILTER,
	OPT_TCP_CONGESTION,
	OPT_VERSION,
	OPT_DUMP,
	OPT_SPEED_TEST,
	OPT_TIME,
	OPT_JSON,
	OPT_MONITOR,
	OPT_NO_MONITOR,
	OPT_CONFIG,
	OPT_SHOW_CONFIG,
	OPT_CA,
	OPT_CERT,
	OPT_CERT_KEY,
	OPT_HTTP_PROXY,
};

static const struct option client_options[] = {
	{ "socks", required_argument, NULL, 'D' },
	{ "forward", required_argument, NULL, 'L' },
	{ "stdio", required_argument, NULL, 'W' },
	{ "secret", required_argument, NULL, 'k' },
	{ "interface", required_argument, NULL, 'i' },
	{ "ipv4", no_argument, NULL, '4' },
	{ "ipv6", no_argument, NULL, '6' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "socks-auth", required_argument, NULL, OPT_SOCKS_AUTH },
	{ "link-filter", required_argument, NULL, OPT_LINK_FILTER },
	{ "tcp-congestion", required_argument, NULL, OPT_TCP_CONGESTION },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, 'h' },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_CERT_KEY },
	{ "http-proxy", required_argument, NULL, OPT_HTTP_PROXY },
	{ "monitor", no_argument, NULL, OPT_MONITOR },
	{ "no-monitor", no_argument, NULL, OPT_NO_MONITOR },
	{ "speed-test", no_argument, NULL, OPT_SPEED_TEST },
	{ "time", required_argument, NULL, OPT_TIME },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "dump", required_argument, NULL, OPT_DUMP },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "show-config", no_argument, NULL, OPT_SHOW_CONFIG },
	{ NULL, 0, NULL, 0 },
};

#define CLIENT_SHORT_OPTIONS ":D:L:W:k:i:46vqh"

static const char *const client_not_in_file[] = {
	"config", "show-config", "help", "version", NULL,
};

/* --config files: keys are the long options; SERVER_URLs are "server". */
static const struct agg_conf_syntax client_syntax = {
	.options = client_options,
	.shortopts = CLIENT_SHORT_OPTIONS,
	.positional = "server",
	.not_in_file = client_not_in_file,
	.config = "config",
};

/* The configuration file, and the argument being parsed (usage errors
 * about an argument from the file name its line). */
static struct agg_conf *client_conf;
static const char *client_arg;

static void client_close_session(struct client *c);
static int client_session_start(struct client *c, char *err, size_t errlen);

/* Monotonic clock in milliseconds. */
static uint64_t client_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Arms a timer for ms milliseconds. */
static void client_timer(struct event *ev, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000u),
	    (suseconds_t)(ms % 1000u) * 1000 };

	evtimer_add(ev, &tv);
}

/* Prints a usage error line; returns the exit status 2. */
static int client_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Prints a usage error line; returns the exit status 2. */
static int client_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROGRAM ": %s", agg_conf_origin(client_conf,
	    client_arg));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return 2;
}

/* The event loop. */
struct event_base *client_base(const struct client *c)
{
	return c->base;
}

/* Opens a stream on the current session. */
struct agg_stream *client_open_stream(struct client *c,
    const struct agg_target *target, const struct agg_stream_callbacks *cbs,
    void *arg, char *err, size_t errlen)
{
	struct agg_stream *st;

	if (c->exiting) {
		snprintf(err, errlen, "client shutting down");
		return NULL;
	}
	if (c->session == NULL || agg_session_is_closed(c->session)) {
		snprintf(err, errlen, "no session with the server (starting "
		    "a new one)");
		return NULL;
	}
	if ((st = agg_session_open_stream(c->session, target, cbs, arg)) ==
	    NULL)
		snprintf(err, errlen, "too many streams");
	return st;
}

/* Why no link is up. */
const char *client_link_error(const struct client *c)
{
	const char *e = c->linkset != NULL ?
	    agg_linkset_last_error(c->linkset) : "";

	return e[0] != '\0' ? e : "no link has come up yet";
}

/* Number of links up. */
size_t client_links_up(const struct client *c)
{
	return c->session != NULL ? agg_session_links_up(c->session) : 0;
}

/* Number of links the link set dials or holds. */
size_t client_links_wanted(const struct client *c)
{
	return c->linkset != NULL ? agg_linkset_wanted(c->linkset) : 0;
}

/* The current session. */
struct agg_session *client_session(const struct client *c)
{
	return c->session;
}

/* Asks for the end of the program; the first call wins. */
void client_exit(struct client *c, int status, const char *fmt, ...)
{
	va_list ap;

	if (c->exiting)
		return;
	c->exiting = 1;
	c->status = status;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	event_active(c->finish, EV_TIMEOUT, 0);
}

/* Leaves the loop once a shutdown has nothing left to wait for. */
static void client_check_done(struct client *c)
{
	size_t i, open = 0;

	if (!c->exiting || !c->session_closed)
		return;
	for (i = 0; i < c->nfronts; i++)
		open += front_conns(c->fronts[i]);
	if (open == 0)
		event_base_loopbreak(c->base);
}

/* A front connection is gone. */
void client_conn_closed(struct client *c)
{
	client_check_done(c);
}

/* The server opened a stream: a client accepts none. */
static void client_stream_opened_cb(struct agg_session *session,
    struct agg_stream *stream, const struct agg_target *target, void *arg)
{
	(void)session;
	(void)target;
	(void)arg;
	agg_stream_refuse(stream, AGG_ERR_UNSUPPORTED,
	    "agg-client accepts no streams");
}

/* A link changed state: the link set hears of it; a refused secret is
 * fatal while no link works. */
static void client_link_state_cb(struct agg_session *session,
    struct agg_link *link, enum agg_link_state state, const char *reason,
    void *arg)
{
	struct client *c = arg;

	if (session != c->session)
		return;
	if (c->monitor != NULL)
		monitor_link_state(c->monitor, session, link, state, reason);
	if (c->linkset != NULL)
		agg_linkset_link_state(c->linkset, link, state, reason);
	if (state == AGG_LINK_CLOSED && reason != NULL &&
	    strncmp(reason, "authentication refused", 22) == 0) {
		if (agg_session_links_up(session) == 0)
			client_exit(c, 1, "%s", reason);
		else
			agg_log_warn("link %s: %s", agg_link_name(link),
			    reason);
	}
}

/* The session is over: -W ends, the fronts get a new session. */
static void client_session_closed_cb(struct agg_session *session,
    const char *reason, void *arg)
{
	struct client *c = arg;

	if (c->exiting || session != c->session)
		return;
	if (c->have_pipe) {
		client_exit(c, 1, "session lost: %s", reason);
		return;
	}
	agg_log_warn("session closed: %s; starting a new session", reason);
	client_timer(c->renew, CLIENT_RENEW_MS);
}

static const struct agg_session_callbacks client_session_cbs = {
	.stream_opened = client_stream_opened_cb,
	.link_state = client_link_state_cb,
	.closed = client_session_closed_cb,
};

/* Creates the session and its link set with every server. */
static int client_session_start(struct client *c, char *err, size_t errlen)
{
	char why[256];
	size_t i;

	c->session = agg_session_new_client(c->base, &c->cfg, c->key,
	    c->key_len, &client_session_cbs, c);
	if (c->session == NULL) {
		snprintf(err, errlen, "cannot create a session");
		return -1;
	}
	c->linkset = agg_linkset_new(c->base, c->dns, c->session, &c->lscfg);
	if (c->linkset == NULL) {
		snprintf(err, errlen, "cannot create the link set");
		return -1;
	}
	for (i = 0; i < c->nservers; i++)
		if (agg_linkset_add_server(c->linkset, &c->servers[i], why,
		    sizeof(why)) != 0) {
			snprintf(err, errlen, "bad URL '%.300s': %.190s",
			    c->servers[i].text, why);
			return -1;
		}
	c->ever_up = 0;
	agg_log_info("session %s started", agg_session_id_hex(c->session));
	return 0;
}

/* Replaces a closed session with a new one. */
static void client_renew_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char err[512];

	(void)fd;
	(void)what;
	if (c->exiting)
		return;
	if (c->linkset != NULL)
		agg_linkset_free(c->linkset);
	c->linkset = NULL;
	agg_session_free(c->session);
	c->session = NULL;
	if (client_session_start(c, err, sizeof(err)) != 0)
		client_exit(c, 1, "%s", err);
}

/* Looks at the links: logs a changed failure, gives up on -W. */
static void client_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	const char *e;
	size_t up;

	(void)fd;
	(void)what;
	if (c->exiting || c->session == NULL)
		return;
	if ((up = agg_session_links_up(c->session)) > 0) {
		if (!c->ever_up || c->logged[0] != '\0')
			agg_log_info("connected: %zu link%s up", up,
			    up == 1 ? "" : "s");
		c->ever_up = 1;
		c->logged[0] = '\0';
		return;
	}
	e = c->linkset != NULL ? agg_linkset_last_error(c->linkset) : "";
	if (e[0] != '\0' && strcmp(e, c->logged) != 0) {
		agg_log_warn("%s", e);
		snprintf(c->logged, sizeof(c->logged), "%s", e);
	}
	if (c->have_pipe && !c->ever_up &&
	    client_now_ms() - c->start_ms >= CLIENT_START_TIMEOUT_MS)
		client_exit(c, 1, "%s", e[0] != '\0' ? e : "no link to the "
		    "server came up within 15 s");
}

/* Closes the session (failing what is still open) and stops dialling. */
static void client_close_session(struct client *c)
{
	if (c->session_closed)
		return;
	c->session_closed = 1;
	event_del(c->drain);
	if (c->session != NULL)
		agg_session_close(c->session, c->status != 0 ? c->reason :
		    "client shutting down");
	if (c->linkset != NULL)
		agg_linkset_free(c->linkset);
	c->linkset = NULL;
	client_check_done(c);
}

/* After a clean -W end: waits until the last bytes are acked. */
static void client_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct agg_session_stats st;

	(void)fd;
	(void)what;
	agg_session_get_stats(c->session, &st);
	if ((st.streams == 0 && st.unacked_bytes == 0) || st.links_up == 0 ||
	    client_now_ms() - c->drain_start_ms >= CLIENT_DRAIN_MS) {
		client_close_session(c);
		return;
	}
	client_timer(c->drain, CLIENT_DRAIN_POLL_MS);
}

/* The shutdown: stop accepting, then close the session (at once, or once
 * a finished -W stream is acked), then leave when the connections are. */
static void client_finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	size_t i;

	(void)fd;
	(void)what;
	monitor_free(c->monitor);
	c->monitor = NULL;
	if (c->status != 0)
		agg_log_error("%s", c->reason);
	else if (c->reason[0] != '\0')
		agg_log_info("%s", c->reason);
	for (i = 0; i < c->nfronts; i++)
		front_stop(c->fronts[i]);
	event_del(c->watch);
	event_del(c->renew);
	client_timer(c->deadline, CLIENT_SHUTDOWN_MS);
	if (c->status == 0 && c->have_pipe && !c->signalled &&
	    c->session != NULL) {
		c->drain_start_ms = client_now_ms();
		client_drain_cb(-1, 0, c);
		return;
	}
	client_close_session(c);
}

/* The shutdown took too long: leave anyway. */
static void client_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)what;
	agg_log_info("shutdown deadline reached");
	event_base_loopbreak(c->base);
}

/* SIGINT / SIGTERM / SIGHUP (ssh ends its ProxyCommand so): shut down;
 * a second one leaves at once. */
static void client_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct client *c = arg;

	(void)what;
	if (c->exiting) {
		event_base_loopbreak(c->base);
		return;
	}
	c->signalled = 1;
	client_exit(c, 0, "%s: shutting down", sig == SIGINT ?
	    "interrupted" : sig == SIGHUP ? "hung up" : "terminated");
}

/* Parses the command line into c; -1 to go on, else the exit status. */
static int client_parse(struct client *c, int argc, char **argv)
{
	char err[512];
	size_t nifaces = 0;
	int ch, quiet = 0, verbose = 0, have_front = 0;

	c->servers = calloc((size_t)argc + 1, sizeof(*c->servers));
	c->specs = calloc((size_t)argc + 1, sizeof(*c->specs));
	c->ifaces = calloc((size_t)argc + 1, sizeof(*c->ifaces));
	if (c->servers == NULL || c->specs == NULL || c->ifaces == NULL) {
		fprintf(stderr, PROGRAM ": out of memory\n");
		return 1;
	}
	opterr = 0;
	while ((ch = getopt_long(argc, argv, CLIENT_SHORT_OPTIONS,
	    client_options, NULL)) != -1) {
		client_arg = argv[optind - 1];
		switch (ch) {
		case 'D':
			if (front_spec_socks(optarg, &c->specs[c->nspecs], err,
			    sizeof(err)) != 0)
				return client_usage_error("%s", err);
			c->nspecs++;
			have_front = 1;
			break;
		case 'L':
			if (front_spec_forward(optarg, &c->specs[c->nspecs],
			    err, sizeof(err)) != 0)
				return client_usage_error("%s", err);
			c->nspecs++;
			have_front = 1;
			break;
		case 'W':
			if (c->have_pipe)
				return client_usage_error("-W given twice");
			if (agg_target_parse(optarg, &c->pipe_target) != 0)
				return client_usage_error("bad -W target '%s': "
				    "expected HOST:PORT", optarg);
			c->have_pipe = 1;
			break;
		case 'k':
			c->key_file = optarg;
			break;
		case 'i':
			if (optarg[0] == '\0')
				return client_usage_error("bad -i '': expected "
				    "an interface name");
			c->ifaces[nifaces++] = optarg;
			break;
		case '4':
			c->lscfg.family = AF_INET;
			break;
		case '6':
			c->lscfg.family = AF_INET6;
			break;
		case 'v':
			verbose++;
			break;
		case 'q':
			quiet++;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case OPT_VERSION:
			printf(PROGRAM " %s\n", AGG_VERSION);
			return 0;
		case OPT_SOCKS_AUTH:
			c->users_file = optarg;
			break;
		case OPT_LINK_FILTER:
			if (strcmp(optarg, "any") == 0)
				c->lscfg.filter = AGG_FILTER_ANY;
			else if (strcmp(optarg, "interface-ip") == 0)
				c->lscfg.filter = AGG_FILTER_INTERFACE_IP;
			else if (strcmp(optarg, "interface-interface") == 0)
				c->lscfg.filter =
				    AGG_FILTER_INTERFACE_INTERFACE;
			else
				return client_usage_error("bad --link-filter "
				    "'%s': expected any, interface-ip or "
				    "interface-interface", optarg);
			break;
		case OPT_DUMP:
			c->dump_path = optarg;
			break;
		case OPT_SPEED_TEST:
			c->speed_test = 1;
			break;
		case OPT_TIME: {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' ||
			    v < 1 || v > 3600)
				return client_usage_error("bad --time '%s': "
				    "expected whole seconds from 1 to 3600",
				    optarg);
			c->speed_seconds = (unsigned)v;
			break;
		}
		case OPT_JSON:
			c->speed_json = 1;
			break;
		case OPT_MONITOR:
			c->monitor_mode = 1;
			break;
		case OPT_NO_MONITOR:
			c->monitor_mode = 0;
			break;
		case OPT_CONFIG:
			/* Read before this loop (agg_conf_prepare). */
			break;
		case OPT_SHOW_CONFIG:
			c->show_config = 1;
			break;
		case OPT_TCP_CONGESTION:
			if (agg_tcp_set_congestion(optarg, err, sizeof(err))
			    != 0)
				return client_usage_error("bad --tcp-congestion "
				    "'%s': %s", optarg, err);
			break;
		case OPT_CA:
			c->ca_file = optarg;
			break;
		case OPT_CERT:
			c->cert_file = optarg;
			break;
		case OPT_CERT_KEY:
			c->cert_key_file = optarg;
			break;
		case OPT_HTTP_PROXY:
			if (agg_http_proxy_parse(optarg, &c->http_proxy, err,
			    sizeof(err)) != 0)
				return client_usage_error("%s", err);
			c->lscfg.http_proxy = &c->http_proxy;
			break;
		case ':':
			if (optopt > 0 && optopt < 256)
				return client_usage_error("option '-%c' needs "
				    "an argument", optopt);
			return client_usage_error("option '%s' needs an "
			    "argument", argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 256)
				return client_usage_error("unknown option "
				    "'-%c' (see --help)", optopt);
			return client_usage_error("unknown option '%s' (see "
			    "--help)", argv[optind - 1]);
		}
	}
	for (; optind < argc; optind++) {
		client_arg = argv[optind];
		if (agg_url_parse(argv[optind], &c->servers[c->nservers], err,
		    sizeof(err)) != 0)
			return client_usage_error("%s", err);
		c->nservers++;
	}
	client_arg = NULL;
	if (c->nservers == 0)
		return client_usage_error("missing SERVER_URL, e.g. "
		    "tcp://server:5800 (see --help)");
	if ((c->cert_file == NULL) != (c->cert_key_file == NULL))
		return client_usage_error("--cert and --key go together");
	if (c->have_pipe && have_front)
		return client_usage_error("-W cannot be combined with -D or "
		    "-L");
	if (c->speed_test && (c->have_pipe || have_front))
		return client_usage_error("--speed-test cannot be combined "
		    "with -D, -L or -W");
	if (!c->speed_test && (c->speed_seconds != 0 || c->speed_json))
		return client_usage_error("%s needs --speed-test",
		    c->speed_json ? "--json" : "--time");
	if (c->speed_seconds == 0)
		c->speed_seconds = 10;
	if (c->monitor_mode == 1 && (c->have_pipe || c->speed_test))
		return client_usage_error("--monitor cannot be combined with "
		    "-W or --speed-test");
	if (c->monitor_mode == -1)
		c->monitor_mode = !c->have_pipe && !c->speed_test &&
		    monitor_default() ? 2 : 0;
	if (!c->have_pipe && !have_front && !c->speed_test) {
		c->default_front = 1;
		front_spec_socks("127.0.0.1:1080", &c->specs[0], err,
		    sizeof(err));
		c->nspecs = 1;
	}
	c->lscfg.ifaces = nifaces > 0 ? c->ifaces : NULL;
	c->lscfg.nifaces = nifaces;
	c->verbosity = (c->have_pipe ? AGG_LOG_ERROR : AGG_LOG_WARN) +
	    verbose - quiet;
	return -1;
}

/* Whether a server URL asks for TLS. */
static int client_needs_tls(const struct client *c)
{
	size_t i;

	for (i = 0; i < c->nservers; i++)
		if (c->servers[i].scheme == AGG_URL_TLS ||
		    c->servers[i].scheme == AGG_URL_WSS)
			return 1;
	return 0;
}

/* Reads the secret, the TLS files and the SOCKS users; -1 to go on, else
 * 1. */
static int client_load_files(struct client *c)
{
	char err[512];

	if (c->key_file != NULL && agg_key_load(c->key_file, c->key,
	    &c->key_len, err, sizeof(err)) != 0) {
		agg_log_error("%s", err);
		return 1;
	}
	if (client_needs_tls(c)) {
		struct agg_tls_options o = {
			.ca_file = c->ca_file,
			.cert_file = c->cert_file,
			.key_file = c->cert_key_file,
			.secret = c->key,
			.secret_len = c->key_len,
		};

		if ((c->tls = agg_tls_client_new(&o, err, sizeof(err))) ==
		    NULL) {
			agg_log_error("%s", err);
			return 1;
		}
		c->lscfg.tls = c->tls;
	}
	if (c->users_file != NULL && (c->users = socks_users_load(
	    c->users_file, err, sizeof(err))) == NULL) {
		agg_log_error("%s", err);
		return 1;
	}
	return -1;
}

/* Creates the loop, the resolver and the events; -1 to go on, else 1. */
static int client_setup_loop(struct client *c)
{
	struct event_config *ecfg;

	if ((ecfg = event_config_new()) == NULL) {
		agg_log_error("out of memory");
		return 1;
	}
	/* stdin and stdout may be files or terminals, which epoll refuses;
	 * one pipe does not need epoll's scale. */
	if (c->have_pipe)
		event_config_require_features(ecfg, EV_FEATURE_FDS);
	c->base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (c->base == NULL) {
		agg_log_error("cannot create the event loop");
		return 1;
	}
	c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (c->dns == NULL)
		c->dns = evdns_base_new(c->base, 0);
	c->sig_int = evsignal_new(c->base, SIGINT, client_signal_cb, c);
	c->sig_term = evsignal_new(c->base, SIGTERM, client_signal_cb, c);
	c->sig_hup = evsignal_new(c->base, SIGHUP, client_signal_cb, c);
	c->watch = event_new(c->base, -1, EV_PERSIST, client_watch_cb, c);
	c->finish = evtimer_new(c->base, client_finish_cb, c);
	c->renew = evtimer_new(c->base, client_renew_cb, c);
	c->drain = evtimer_new(c->base, client_drain_cb, c);
	c->deadline = evtimer_new(c->base, client_deadline_cb, c);
	if (c->dns == NULL || c->sig_int == NULL || c->sig_term == NULL ||
	    c->sig_hup == NULL ||
	    c->watch == NULL || c->finish == NULL || c->renew == NULL ||
	    c->drain == NULL || c->deadline == NULL) {
		agg_log_error("out of memory");
		return 1;
	}
	evsignal_add(c->sig_int, NULL);
	evsignal_add(c->sig_term, NULL);
	evsignal_add(c->sig_hup, NULL);
	client_timer(c->watch, CLIENT_WATCH_MS);
	return -1;
}

/* The dump's interval: one record for the current session. */
static void client_dump_collect_cb(struct agg_dump *dump, void *arg)
{
	struct client *c = arg;

	if (c->session != NULL)
		agg_dump_session(dump, c->session);
}

/* The monitor's sessions: the current one. */
static void client_monitor_foreach_cb(void (*fn)(struct agg_session *s,
    void *fnarg), void *fnarg, void *arg)
{
	struct client *c = arg;

	if (c->session != NULL)
		fn(c->session, fnarg);
}

/* q in the monitor: shut down as on SIGTERM. */
static void client_monitor_quit_cb(void *arg)
{
	struct client *c = arg;

	c->signalled = 1;
	client_exit(c, 0, "quit from the monitor");
}

/* The link set's slots for the monitor. */
static size_t client_monitor_slots_cb(struct monitor_slot *out, size_t cap,
    void *arg)
{
	struct client *c = arg;
	struct agg_linkset_slot_info info[64];
	size_t i, n;

	if (c->linkset == NULL)
		return 0;
	n = agg_linkset_slots(c->linkset, info, 64);
	for (i = 0; i < n && i < 64 && i < cap; i++) {
		snprintf(out[i].name, sizeof(out[i].name), "%.63s",
		    info[i].name);
		out[i].dialling = info[i].dialling;
		snprintf(out[i].why, sizeof(out[i].why), "%s", info[i].why);
		out[i].why_us = info[i].why_us;
	}
	return n;
}

/* The scheme of a link (IFACE[@SRC]->REMOTE): its link set slot's, else
 * the one all server URLs share. */
static const char *client_monitor_transport_cb(const char *name, void *arg)
{
	struct client *c = arg;
	struct agg_linkset_slot_info info[64];
	char cut[64];
	size_t i, n;

	n = c->linkset != NULL ? agg_linkset_slots(c->linkset, info, 64) : 0;
	for (i = 0; i < n && i < 64; i++) {
		snprintf(cut, sizeof(cut), "%.63s", info[i].name);
		if (strcmp(cut, name) == 0)
			return agg_url_scheme_name(info[i].scheme);
	}
	for (i = 1; i < c->nservers; i++)
		if (c->servers[i].scheme != c->servers[0].scheme)
			return "?";
	return agg_url_scheme_name(c->servers[0].scheme);
}

/* The monitor's status line: the last dial error while links are down. */
static const char *client_monitor_status_cb(void *arg)
{
	struct client *c = arg;

	if (c->linkset == NULL || client_links_up(c) >=
	    agg_linkset_wanted(c->linkset))
		return "";
	return agg_linkset_last_error(c->linkset);
}

static const struct monitor_callbacks client_monitor_cbs = {
	.foreach = client_monitor_foreach_cb,
	.quit = client_monitor_quit_cb,
	.transport = client_monitor_transport_cb,
	.status = client_monitor_status_cb,
	.slots = client_monitor_slots_cb,
};

/* Starts the session, the fronts or the pipe; -1 to go on, else the exit
 * status. */
static int client_start(struct client *c)
{
	char err[512];
	size_t i;

	if (client_session_start(c, err, sizeof(err)) != 0) {
		if (c->linkset == NULL) {
			agg_log_error("%s", err);
			return 1;
		}
		/* A server URL this version cannot dial. */
		return client_usage_error("%s", err);
	}
	if (c->dump_path != NULL && (c->dump = agg_dump_open(c->base,
	    c->dump_path, PROGRAM, client_dump_collect_cb, c, err,
	    sizeof(err))) == NULL) {
		agg_log_error("%s", err);
		return 1;
	}
	if ((c->fronts = calloc(c->nspecs + 1, sizeof(*c->fronts))) == NULL) {
		agg_log_error("out of memory");
		return 1;
	}
	for (i = 0; i < c->nspecs; i++) {
		c->fronts[i] = front_new(c, &c->specs[i], c->users, err,
		    sizeof(err));
		if (c->fronts[i] == NULL) {
			agg_log_error("%s", err);
			return 1;
		}
		c->nfronts++;
	}
	if (c->monitor_mode != 0 && (c->monitor = monitor_new(c->base,
	    PROGRAM, &client_monitor_cbs, c, err, sizeof(err))) == NULL) {
		if (c->monitor_mode == 1) {
			agg_log_error("%s", err);
			return 1;
		}
		agg_log_warn("%s; going on without it", err);
	}
	if (c->speed_test && (c->speedtest = speedtest_new(c,
	    c->speed_seconds, c->speed_json)) == NULL) {
		agg_log_error("out of memory");
		return 1;
	}
	if (c->have_pipe && (c->pipe = stdpipe_new(c, &c->pipe_target, err,
	    sizeof(err))) == NULL) {
		agg_log_error("%s", err);
		return 1;
	}
	return -1;
}

/* Frees everything; safe on a partly set up client. */
static void client_free(struct client *c)
{
	size_t i;

	for (i = 0; i < c->nfronts; i++)
		front_free(c->fronts[i]);
	/* Gone before the links close below, which tell it otherwise. */
	monitor_free(c->monitor);
	c->monitor = NULL;
	stdpipe_free(c->pipe);
	speedtest_free(c->speedtest);
	agg_dump_close(c->dump);
	if (c->linkset != NULL)
		agg_linkset_free(c->linkset);
	agg_session_free(c->session);
	agg_tls_free(c->tls);
	if (c->dns != NULL)
		evdns_base_free(c->dns, 0);
	if (c->sig_int != NULL)
		event_free(c->sig_int);
	if (c->sig_term != NULL)
		event_free(c->sig_term);
	if (c->sig_hup != NULL)
		event_free(c->sig_hup);
	if (c->watch != NULL)
		event_free(c->watch);
	if (c->finish != NULL)
		event_free(c->finish);
	if (c->renew != NULL)
		event_free(c->renew);
	if (c->drain != NULL)
		event_free(c->drain);
	if (c->deadline != NULL)
		event_free(c->deadline);
	/* Layered bufferevents (TLS) finish freeing in the loop; no other
	 * event is left to run. */
	if (c->base != NULL) {
		event_base_loop(c->base, EVLOOP_NONBLOCK);
		event_base_free(c->base);
	}
	socks_users_free(c->users);
	explicit_bzero(c->key, sizeof(c->key));
	free(c->fronts);
	free(c->servers);
	free(c->specs);
	free(c->ifaces);
}

/* Prints the configuration in effect (--show-config). */
static void client_show_config(const struct client *c, int argc, char **argv)
{
	printf("# agg-client configuration: agg-client --config FILE reads "
	    "it back\n");
	agg_conf_print(stdout, &client_syntax, argc, argv);
	if (c->default_front)
		agg_conf_print_line(stdout, "socks", "127.0.0.1:1080");
}

/* Runs agg-client. */
int main(int argc, char **argv)
{
	struct client c;
	char err[700];
	char **args;
	int nargs, r;

	memset(&c, 0, sizeof(c));
	c.monitor_mode = -1;
	agg_log_set_program(PROGRAM);
	agg_tune_allocator();
	agg_config_init(&c.cfg);
	agg_linkset_config_init(&c.lscfg);
	signal(SIGPIPE, SIG_IGN);
	if ((r = agg_conf_prepare(&client_syntax, argc, argv, &client_conf,
	    &nargs, &args, err, sizeof(err))) != 0) {
		fprintf(stderr, PROGRAM ": %s\n", err);
		client_free(&c);
		return r;
	}
	if ((r = client_parse(&c, nargs, args)) < 0 && c.show_config) {
		client_show_config(&c, nargs, args);
		r = 0;
	}
	if (r < 0) {
		agg_log_set_level(c.verbosity < AGG_LOG_ERROR ? AGG_LOG_ERROR :
		    c.verbosity > AGG_LOG_DEBUG ? AGG_LOG_DEBUG :
		    (enum agg_log_level)c.verbosity);
		c.start_ms = client_now_ms();
		if ((r = client_load_files(&c)) < 0 &&
		    (r = client_setup_loop(&c)) < 0 &&
		    (r = client_start(&c)) < 0) {
			event_base_dispatch(c.base);
			r = c.status;
		}
	}
	client_free(&c);
	agg_conf_free(client_conf);
	return r;
}
