/*
 * main.c: agg-server. Takes links from agg-client on its listeners, hands
 * them to a hub that reassembles each session's streams, and connects
 * every stream to its destination through the dialer.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "agg/conf.h"
#include "agg/dump.h"
#include "agg/hub.h"
#include "agg/key.h"
#include "agg/log.h"
#include "agg/session.h"
#include "agg/speedtest.h"
#include "agg/url.h"
#include "dialer.h"
#include "monitor.h"
#include "policy.h"
#include "speedsink.h"
#include "tcp.h"
#include "tls.h"
#include "ws.h"
#include "usbgadget.h"

#ifndef AGG_VERSION
#define AGG_VERSION "unknown"
#endif

#define SERVER_DEFAULT_URL "tcp://[::]:5800"
#define SERVER_MAX_LISTENERS 16
#define SERVER_MAX_SESSIONS 256
/* Streams of all sessions together; lowered to fit the open-file limit. */
#define SERVER_MAX_STREAMS 16384
/* Streams being connected (resolving or dialling) at once, by default. */
#define SERVER_MAX_CONNECTING 1024
/* MiB all sessions may hold for their clients (received, not yet sent on,
 * and sent, not yet acked) before new streams are refused, by default. */
#define SERVER_MAX_BUFFERED_MIB 1024
/* Upper bounds of the limit options. */
#define SERVER_LIMIT_COUNT_MAX 65536
#define SERVER_LIMIT_MIB_MAX 1048576
/* A clean shutdown gets this long before the loop is left anyway. */
#define SERVER_STOP_MS 3000
/* A TLS or WebSocket handshake must finish within this. */
#define SERVER_HANDSHAKE_MS 10000
/* Handshakes in progress at once; more connections wait in the kernel. */
#define SERVER_MAX_HANDSHAKES 512

enum {
	OPT_INSECURE = 256,
	OPT_ALLOW,
	OPT_DENY,
	OPT_TCP_CONGESTION,
	OPT_VERSION,
	OPT_DUMP,
	OPT_MONITOR,
	OPT_NO_MONITOR,
	OPT_CONFIG,
	OPT_SHOW_CONFIG,
	OPT_MAX_CONNECTING,
	OPT_MAX_BUFFERED,
	OPT_MAX_HANDSHAKING,
	OPT_CERT,
	OPT_CERT_KEY,
	OPT_CLIENT_CA,
	OPT_USB_ID,
};

static const struct option server_long_options[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "secret", required_argument, NULL, 'k' },
	{ "insecure-no-auth", no_argument, NULL, OPT_INSECURE },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "deny", required_argument, NULL, OPT_DENY },
	{ "tcp-congestion", required_argument, NULL, OPT_TCP_CONGESTION },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "usb-id", required_argument, NULL, OPT_USB_ID },
	{ "help", no_argument, NULL, 'h' },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_CERT_KEY },
	{ "client-ca", required_argument, NULL, OPT_CLIENT_CA },
	{ "monitor", no_argument, NULL, OPT_MONITOR },
	{ "no-monitor", no_argument, NULL, OPT_NO_MONITOR },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "show-config", no_argument, NULL, OPT_SHOW_CONFIG },
	{ "dump", required_argument, NULL, OPT_DUMP },
	{ "max-connecting", required_argument, NULL, OPT_MAX_CONNECTING },
	{ "max-buffered", required_argument, NULL, OPT_MAX_BUFFERED },
	{ "max-handshaking", required_argument, NULL, OPT_MAX_HANDSHAKING },
	{ NULL, 0, NULL, 0 },
};

#define SERVER_SHORT_OPTIONS ":l:k:vqh"

static const char *const server_not_in_file[] = {
	"config", "show-config", "help", "version", NULL,
};

/* --config files: keys are the long options. */
static const struct agg_conf_syntax server_syntax = {
	.options = server_long_options,
	.shortopts = SERVER_SHORT_OPTIONS,
	.not_in_file = server_not_in_file,
	.config = "config",
};

/* The configuration file, and the argument being parsed (usage errors
 * about an argument from the file name its line). */
static struct agg_conf *server_conf;
static const char *server_arg;

static const char server_usage[] =
"usage: agg-server [-l URL]... [-k SECRET_FILE] [--insecure-no-auth]\n"
"                  [--cert F --key F [--client-ca F]]\n"
"                  [--allow RULE]... [--deny RULE]... [--dump FILE]\n"
"                  [--monitor|--no-monitor] [--config FILE]\n"
"                  [--max-connecting N] [--max-buffered MIB]\n"
"                  [--max-handshaking N] [--show-config]\n"
"                  [--tcp-congestion CC] [--usb-id VID:PID] [-v|-q]\n"
"                  [--version] [--help]\n"
"\n"
"Takes links from agg-client, puts each client's streams back together and\n"
"connects them to their destinations.\n"
"\n"
"  -l, --listen URL       take links on URL; may be repeated, schemes\n"
"                         mixed: tcp://[ADDR]:PORT, tls://[ADDR]:PORT,\n"
"                         ws://[ADDR]:PORT/PATH, wss://[ADDR]:PORT/PATH,\n"
"                         or usb-gadget://[UDC] to be a USB device on\n"
"                         that UDC (/sys/class/udc; the first one by\n"
"                         default). Default tcp://[::]:5800 (every\n"
"                         address, IPv6 and IPv4)\n"
"      --cert F --key F   tls:// and wss://: the server certificate (chain)\n"
"                         and its key; without them TLS 1.3 uses a PSK\n"
"                         derived from the -k secret\n"
"      --client-ca F      require client certificates signed by this CA;\n"
"                         with only tls:// and wss:// listeners, -k may\n"
"                         then be left out\n"
"      --usb-id VID:PID   USB IDs of usb-gadget:// (hex; default 1209:0001)\n"
"  -k, --secret FILE      the shared secret: the first line of FILE\n"
"      --insecure-no-auth run without a secret: anyone who reaches the\n"
"                         server may use it. Loopback, private, link-local,\n"
"                         unspecified, broadcast, multicast and the other\n"
"                         non-public destinations (RFC 6890) are then\n"
"                         denied unless an --allow rule matches\n"
"      --allow RULE       connect to destinations matching RULE\n"
"      --deny RULE        refuse destinations matching RULE\n"
"      --monitor          full-screen view of the sessions and their links\n"
"                         (default when stdout is a terminal); keys: q\n"
"                         quit, a show/hide links not connected\n"
"      --no-monitor       no full-screen view: log lines on stderr\n"
"      --config FILE      read options from FILE: key = value lines whose\n"
"                         keys are the long option names (listen, secret,\n"
"                         allow, ...); command-line options override it\n"
"      --show-config      print the configuration in effect in that format\n"
"      --dump FILE        write every session's and link's statistics to\n"
"                         FILE every 100 ms, one JSON object per session\n"
"                         and line (agg-plot draws them)\n"
"      --max-connecting N refuse new streams while N are being connected\n"
"                         (default 1024)\n"
"      --max-buffered MIB refuse new streams while the sessions hold more\n"
"                         than MIB MiB for their clients (default 1024)\n"
"      --max-handshaking N\n"
"                         at most N links handshaking at once; beyond\n"
"                         it the oldest is closed (default 1024)\n"
"      --tcp-congestion CC\n"
"                         TCP congestion control of the links (cubic, bbr,\n"
"                         ...); default: the system's\n"
"  -v, --verbose          log every stream and link; -vv: debug\n"
"  -q, --quiet            log errors only\n"
"      --version          print the version\n"
"  -h, --help             print this help\n"
"\n"
"Rules (--allow and --deny, in the order given): the first rule matching\n"
"a destination decides; when none matches it is allowed. RULE is TARGET\n"
"or TARGET:PORTS, PORTS a port (443) or a range (8000-8999), TARGET one of\n"
"  192.0.2.7  192.0.2.0/24        an IPv4 address or network\n"
"  [2001:db8::7]  [2001:db8::]/32 an IPv6 address or network (without\n"
"                                 :PORTS the brackets may be left out)\n"
"  example.com                    that name, in any case\n"
"  *.example.com                  any name under example.com, not\n"
"                                 example.com itself\n"
"  *                              every destination\n"
"Name rules match the name the client asked for; address rules match\n"
"the address (for a name, every address it resolves to: a denied one is\n"
"never dialled). Example: --allow '*.example.com:443' --deny '*'\n"
"\n"
"Exit status: 0 done, 1 runtime failure, 2 usage error.\n";

/* What the command line asked for. */
struct server_args {
	struct agg_url urls[SERVER_MAX_LISTENERS];
	size_t nurls;
	const char *secret_file;
	const char *cert_file, *key_file, *client_ca_file;
	bool insecure;
	int verbose;
	bool quiet;
	struct policy *policy;
	const char *dump_path;
	int monitor;          /* 1 --monitor, 2 by default (a terminal), 0
	                         none; -1 until the command line is read */
	bool show_config, default_listen;
	unsigned long max_connecting, max_buffered_mib, max_handshaking;
	unsigned usb_vid, usb_pid;
};

struct server;

/* One -l listener and the layers its scheme puts on a connection. */
struct server_listener {
	struct server *srv;
	struct agg_url url;
	struct agg_tcp_listener *tcp;
};

/* A connection whose TLS (or WebSocket) handshake is under way. */
struct server_handshake {
	TAILQ_ENTRY(server_handshake) entry;
	struct server_listener *l;
	struct agg_tls_handshake *tls;
	struct agg_ws_handshake *ws;
	char peer[64];
};

struct server {
	struct event_base *base;
	struct evdns_base *dns;
	struct agg_config cfg;
	struct agg_hub *hub;
	struct dialer *dialer;
	struct server_listener listeners[SERVER_MAX_LISTENERS];
	size_t nlisteners;
	struct agg_tls *tls;           /* tls:// and wss:// listeners */
	TAILQ_HEAD(, server_handshake) handshakes;
	size_t nhandshakes;
	struct agg_usbgadget *gadgets[SERVER_MAX_LISTENERS];
	size_t ngadgets;
	struct agg_session *dead[SERVER_MAX_SESSIONS]; /* closed, to remove */
	size_t ndead;
	struct event *reap;
	struct event *sigint, *sigterm;
	struct event *stop_timer;
	struct agg_dump *dump;
	struct monitor *monitor;
	struct server_args *args;
	size_t max_streams;
	size_t max_connecting;
	uint64_t max_buffered;     /* bytes */
	bool stopping;
};

/* Prints a one-line usage error and exits with status 2. */
static void __attribute__((format(printf, 1, 2), noreturn))
server_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "agg-server: %s", agg_conf_origin(server_conf,
	    server_arg));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* Adds one -l URL, checking that this version can listen on it. */
static void server_args_add_url(struct server_args *a, const char *text)
{
	char err[700];
	struct agg_url *u;

	if (a->nurls == SERVER_MAX_LISTENERS)
		server_usage_error("too many -l listeners (at most %d)",
		    SERVER_MAX_LISTENERS);
	u = &a->urls[a->nurls];
	if (agg_url_parse(text, u, err, sizeof(err)) != 0)
		server_usage_error("%s", err);
	if (u->scheme == AGG_URL_USB)
		server_usage_error("usb:// names a device for agg-client; "
		    "agg-server takes usb-gadget://[UDC]");
	a->nurls++;
}

/* Adds one --allow or --deny rule. */
static void server_args_add_rule(struct server_args *a,
    enum policy_action action, const char *rule)
{
	char err[512];

	if (policy_add(a->policy, action, rule, err, sizeof(err)) != 0)
		server_usage_error("bad %s rule '%s': %s", action ==
		    POLICY_ALLOW ? "--allow" : "--deny", rule, err);
}

/* Parses a limit option's value: a whole number from 1 to max. */
static unsigned long server_parse_limit(const char *option, const char *text,
    unsigned long max)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 ||
	    v < 1 || v > max)
		server_usage_error("bad --%s '%s': expected a whole number "
		    "from 1 to %lu", option, text, max);
	return v;
}

/* Names the option getopt_long stopped at and exits with status 2. */
static void __attribute__((noreturn)) server_bad_option(int c,
    char *const argv[])
{
	const char *tok = argv[optind - 1];
	bool is_long = strncmp(tok, "--", 2) == 0;

	if (c == ':' && is_long)
		server_usage_error("option '%s' needs an argument", tok);
	if (c == ':')
		server_usage_error("option '-%c' needs an argument", optopt);
	if (is_long && optopt != 0)
		server_usage_error("option '%.*s' takes no argument",
		    (int)strcspn(tok, "="), tok);
	if (is_long)
		server_usage_error("unknown or ambiguous option '%s' (see "
		    "--help)", tok);
	if (isprint(optopt))
		server_usage_error("unknown option '-%c' (see --help)", optopt);
	server_usage_error("bad option (see --help)");
}

/* Refuses an abbreviated long option: getopt_long takes any unique
 * prefix, but "--insecure" should not quietly mean --insecure-no-auth. */
static void server_check_spelling(int index, char *const argv[])
{
	const char *name = server_long_options[index].name;
	const char *tok = argv[optind - 1];
	size_t len;

	if (optarg != NULL && optarg == argv[optind - 1] && optind >= 2)
		tok = argv[optind - 2];
	len = strcspn(tok + 2, "=");
	if (len != strlen(name) || strncmp(tok + 2, name, len) != 0)
		server_usage_error("unknown option '%.*s' (did you mean "
		    "--%s?)", (int)(len + 2), tok, name);
}

/* Whether a listener asks for TLS. */
static bool server_args_need_tls(const struct server_args *a)
{
	size_t i;

	for (i = 0; i < a->nurls; i++)
		if (a->urls[i].scheme == AGG_URL_TLS ||
		    a->urls[i].scheme == AGG_URL_WSS)
			return true;
	return false;
}

/* Whether every link must show a client certificate: --client-ca, and
 * each -l is tls:// or wss:// (such a server may run without -k). */
static bool server_args_all_mutual_tls(const struct server_args *a)
{
	size_t i;

	if (a->client_ca_file == NULL || a->nurls == 0)
		return false;
	for (i = 0; i < a->nurls; i++)
		if (a->urls[i].scheme != AGG_URL_TLS &&
		    a->urls[i].scheme != AGG_URL_WSS)
			return false;
	return true;
}

/* Parses the command line; exits on --help, --version and errors. */
static void server_parse_args(int argc, char *argv[], struct server_args *a)
{
	char err[384];
	int c, index;

	opterr = 0;
	while ((index = -1, c = getopt_long(argc, argv, SERVER_SHORT_OPTIONS,
	    server_long_options, &index)) != -1) {
		server_arg = argv[optind - 1];
		if (index >= 0)
			server_check_spelling(index, argv);
		switch (c) {
		case 'l':
			server_args_add_url(a, optarg);
			break;
		case 'k':
			a->secret_file = optarg;
			break;
		case OPT_INSECURE:
			a->insecure = true;
			break;
		case OPT_ALLOW:
			server_args_add_rule(a, POLICY_ALLOW, optarg);
			break;
		case OPT_DENY:
			server_args_add_rule(a, POLICY_DENY, optarg);
			break;
		case OPT_TCP_CONGESTION:
			if (agg_tcp_set_congestion(optarg, err, sizeof(err))
			    != 0)
				server_usage_error("bad --tcp-congestion "
				    "'%s': %s", optarg, err);
			break;
		case 'v':
			a->verbose++;
			break;
		case 'q':
			a->quiet = true;
			break;
		case OPT_USB_ID:
			if (agg_usb_ids_parse(optarg, &a->usb_vid,
			    &a->usb_pid) != 0)
				server_usage_error("bad --usb-id '%s': expected "
				    "VID:PID in hex, e.g. 1209:0001", optarg);
			break;
		case OPT_VERSION:
			printf("agg-server %s\n", AGG_VERSION);
			exit(0);
		case 'h':
			fputs(server_usage, stdout);
			exit(0);
		case OPT_DUMP:
			a->dump_path = optarg;
			break;
		case OPT_MONITOR:
			a->monitor = 1;
			break;
		case OPT_NO_MONITOR:
			a->monitor = 0;
			break;
		case OPT_CONFIG:
			/* Read before this loop (agg_conf_prepare). */
			break;
		case OPT_SHOW_CONFIG:
			a->show_config = true;
			break;
		case OPT_MAX_CONNECTING:
			a->max_connecting = server_parse_limit("max-connecting",
			    optarg, SERVER_LIMIT_COUNT_MAX);
			break;
		case OPT_MAX_BUFFERED:
			a->max_buffered_mib = server_parse_limit("max-buffered",
			    optarg, SERVER_LIMIT_MIB_MAX);
			break;
		case OPT_MAX_HANDSHAKING:
			a->max_handshaking = server_parse_limit(
			    "max-handshaking", optarg, SERVER_LIMIT_COUNT_MAX);
			break;
		case OPT_CERT:
			a->cert_file = optarg;
			break;
		case OPT_CERT_KEY:
			a->key_file = optarg;
			break;
		case OPT_CLIENT_CA:
			a->client_ca_file = optarg;
			break;
		default:
			server_bad_option(c, argv);
		}
	}
	server_arg = optind < argc ? argv[optind] : NULL;
	if (optind < argc)
		server_usage_error("unexpected argument '%s' (see --help)",
		    argv[optind]);
	server_arg = NULL;
	if (a->verbose > 0 && a->quiet)
		server_usage_error("-v and -q cannot be combined");
	if (a->secret_file != NULL && a->insecure)
		server_usage_error("-k and --insecure-no-auth cannot be "
		    "combined");
	if (a->secret_file == NULL && !a->insecure &&
	    !server_args_all_mutual_tls(a))
		server_usage_error("no secret: give -k SECRET_FILE, or "
		    "--insecure-no-auth");
	if ((a->cert_file == NULL) != (a->key_file == NULL))
		server_usage_error("--cert and --key go together");
	if (a->client_ca_file != NULL && a->cert_file == NULL)
		server_usage_error("--client-ca needs --cert and --key");
	if (a->nurls == 0) {
		server_args_add_url(a, SERVER_DEFAULT_URL);
		a->default_listen = true;
	}
	if (server_args_need_tls(a) && a->cert_file == NULL &&
	    a->secret_file == NULL)
		server_usage_error("tls:// and wss:// listeners need --cert and "
		    "--key, or -k for a PSK");
	if (a->monitor == -1)
		a->monitor = monitor_default() ? 2 : 0;
}

/* Prints the configuration in effect (--show-config). */
static void server_show_config(const struct server_args *a, int argc,
    char *argv[])
{
	printf("# agg-server configuration: agg-server --config FILE reads "
	    "it back\n");
	agg_conf_print(stdout, &server_syntax, argc, argv);
	if (a->default_listen)
		agg_conf_print_line(stdout, "listen", SERVER_DEFAULT_URL);
}

/* Prints a one-line runtime failure and exits with status 1. */
static void __attribute__((format(printf, 1, 2), noreturn))
server_fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("agg-server: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Routes libevent's own messages (e.g. a failing name server) to our log. */
static void server_event_log_cb(int severity, const char *msg)
{
	switch (severity) {
	case EVENT_LOG_DEBUG:
		agg_log_debug("libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		agg_log_info("libevent: %s", msg);
		break;
	case EVENT_LOG_WARN:
		agg_log_warn("libevent: %s", msg);
		break;
	default:
		agg_log_error("libevent: %s", msg);
		break;
	}
}

/* Adds one session's buffered and unacked bytes to the total in arg. */
static void server_sum_buffered_cb(struct agg_session *s, void *arg)
{
	struct agg_session_stats st;
	uint64_t *total = arg;

	agg_session_get_stats(s, &st);
	*total += st.buffered_bytes + st.unacked_bytes;
}

/* Bytes all sessions hold for their clients. */
static uint64_t server_buffered(struct server *srv)
{
	uint64_t total = 0;

	agg_hub_foreach(srv->hub, server_sum_buffered_cb, &total);
	return total;
}

/* A client opened a stream: check the server's limits, then dial. */
static void server_stream_opened_cb(struct agg_session *s,
    struct agg_stream *st, const struct agg_target *t, void *arg)
{
	struct server *srv = arg;
	int speedtest = agg_speedtest_target_kind(t);
	size_t connecting = dialer_connecting(srv->dialer);
	size_t streams = connecting + dialer_spliced(srv->dialer) +
	    speedsink_active();
	char why[128];

	why[0] = '\0';
	if (srv->stopping)
		snprintf(why, sizeof(why), "server shutting down");
	else if (connecting >= srv->max_connecting)
		snprintf(why, sizeof(why), "server busy: %zu streams "
		    "connecting (limit %zu)", connecting,
		    srv->max_connecting);
	else if (streams >= srv->max_streams)
		snprintf(why, sizeof(why), "server busy: %zu streams (limit "
		    "%zu)", streams, srv->max_streams);
	else if (server_buffered(srv) >= srv->max_buffered)
		snprintf(why, sizeof(why), "server busy: more than %llu MiB "
		    "buffered", (unsigned long long)(srv->max_buffered >> 20));
	if (why[0] != '\0') {
		agg_log_warn("session %s: refusing stream %u: %s",
		    agg_session_id_hex(s), agg_stream_id(st), why);
		agg_stream_refuse(st, AGG_ERR_GENERAL, why);
		return;
	}
	if (speedtest != 0)
		speedsink_serve(st, speedtest);
	else
		dialer_open(srv->dialer, st, t);
}

/* A link changed state: the monitor shows it. */
static void server_link_state_cb(struct agg_session *s, struct agg_link *link,
    enum agg_link_state state, const char *reason, void *arg)
{
	struct server *srv = arg;

	if (srv->monitor != NULL)
		monitor_link_state(srv->monitor, s, link, state, reason);
}

/* A session ended: remove it on the next loop iteration. */
static void server_session_closed_cb(struct agg_session *s,
    const char *reason, void *arg)
{
	struct server *srv = arg;

	if (srv->monitor != NULL)
		monitor_event(srv->monitor, "%.8s: session closed: %s",
		    agg_session_id_hex(s), reason);
	if (srv->ndead == SERVER_MAX_SESSIONS) {
		agg_log_error("session %s: cannot queue for removal",
		    agg_session_id_hex(s));
		return;
	}
	srv->dead[srv->ndead++] = s;
	event_active(srv->reap, 0, 0);
}

static const struct agg_session_callbacks server_session_cbs = {
	.stream_opened = server_stream_opened_cb,
	.link_state = server_link_state_cb,
	.closed = server_session_closed_cb,
};

/* The hub created a session for a client. */
static void server_session_new_cb(struct agg_hub *hub, struct agg_session *s,
    void *arg)
{
	struct server *srv = arg;

	(void)hub;
	agg_session_set_callbacks(s, &server_session_cbs, srv);
	if (srv->monitor != NULL)
		monitor_event(srv->monitor, "%.8s: new session",
		    agg_session_id_hex(s));
	if (srv->stopping)
		event_active(srv->reap, 0, 0);
}

static const struct agg_hub_callbacks server_hub_cbs = {
	.session_new = server_session_new_cb,
};

/* Closes one session for the shutdown. */
static void server_close_session_cb(struct agg_session *s, void *arg)
{
	(void)arg;
	agg_session_close(s, "server shutting down");
}

/* Removes closed sessions; while stopping, closes the rest and leaves
 * the loop once none is left. */
static void server_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	if (srv->stopping)
		agg_hub_foreach(srv->hub, server_close_session_cb, srv);
	while (srv->ndead > 0)
		agg_hub_remove_session(srv->hub, srv->dead[--srv->ndead]);
	if (srv->stopping && agg_hub_sessions(srv->hub) == 0)
		event_base_loopexit(srv->base, NULL);
}

/* The one way a handshake record goes. */
static void server_handshake_free(struct server *srv,
    struct server_handshake *h)
{
	TAILQ_REMOVE(&srv->handshakes, h, entry);
	srv->nhandshakes--;
	agg_tls_cancel(h->tls);
	agg_ws_cancel(h->ws);
	free(h);
}

/* A connection ready to carry a link: the hub authenticates it. */
static void server_take_link(struct server *srv, struct bufferevent *bev,
    const char *peer)
{
	if (srv->stopping) {
		bufferevent_free(bev);
		return;
	}
	agg_log_debug("link from %s", peer);
	agg_hub_add_link(srv->hub, bev, peer);
}

/* The WebSocket upgrade of an accepted connection finished. */
static void server_ws_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct server_handshake *h = arg;
	struct server *srv = h->l->srv;
	char peer[64];

	h->ws = NULL;
	snprintf(peer, sizeof(peer), "%s", h->peer);
	if (bev == NULL)
		agg_log_info("WebSocket upgrade from %s on %s failed: %s",
		    peer, h->l->url.text, error);
	server_handshake_free(srv, h);
	if (bev != NULL)
		server_take_link(srv, bev, peer);
}

/* Starts the upgrade on a ws:// or wss:// connection. */
static void server_ws_start(struct server_handshake *h,
    struct bufferevent *bev)
{
	struct server *srv = h->l->srv;

	h->ws = agg_ws_server_start(srv->base, bev, h->l->url.path,
	    SERVER_HANDSHAKE_MS, server_ws_done_cb, h);
	if (h->ws == NULL)
		server_handshake_free(srv, h);
}

/* The TLS handshake of an accepted connection finished. */
static void server_tls_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct server_handshake *h = arg;
	struct server *srv = h->l->srv;
	char peer[64];

	h->tls = NULL;
	if (bev != NULL && h->l->url.scheme == AGG_URL_WSS) {
		server_ws_start(h, bev);
		return;
	}
	snprintf(peer, sizeof(peer), "%s", h->peer);
	if (bev == NULL)
		agg_log_info("TLS handshake with %s on %s failed: %s", peer,
		    h->l->url.text, error);
	server_handshake_free(srv, h);
	if (bev != NULL)
		server_take_link(srv, bev, peer);
}

/* An accepted connection: a link for the hub to authenticate, after the
 * listener's TLS handshake. */
static void server_accept_cb(struct bufferevent *bev, const char *peer,
    void *arg)
{
	struct server_listener *l = arg;
	struct server *srv = l->srv;
	struct server_handshake *h;
	char err[256];

	if (srv->stopping || l->url.scheme == AGG_URL_TCP ||
	    l->url.scheme == AGG_URL_USB_GADGET) {
		server_take_link(srv, bev, peer);
		return;
	}
	if (srv->nhandshakes >= SERVER_MAX_HANDSHAKES ||
	    (h = calloc(1, sizeof(*h))) == NULL) {
		agg_log_info("link from %s refused: too many handshakes", peer);
		bufferevent_free(bev);
		return;
	}
	h->l = l;
	snprintf(h->peer, sizeof(h->peer), "%s", peer);
	TAILQ_INSERT_TAIL(&srv->handshakes, h, entry);
	srv->nhandshakes++;
	if (l->url.scheme == AGG_URL_WS) {
		server_ws_start(h, bev);
		return;
	}
	h->tls = agg_tls_start(srv->base, srv->tls, bev, NULL,
	    SERVER_HANDSHAKE_MS, server_tls_done_cb, h, err, sizeof(err));
	if (h->tls == NULL) {
		agg_log_info("link from %s: %s", peer, err);
		server_handshake_free(srv, h);
	}
}

/* The shutdown took too long: leave the loop anyway. */
static void server_stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	agg_log_warn("shutdown: %zu sessions did not close in time",
	    agg_hub_sessions(srv->hub));
	event_base_loopexit(srv->base, NULL);
}

/* Stops taking links and closes the sessions (SIGINT, SIGTERM, q in the
 * monitor). */
static void server_stop(struct server *srv, const char *why)
{
	struct timeval tv = { SERVER_STOP_MS / 1000,
	    SERVER_STOP_MS % 1000 * 1000 };
	size_t i;

	monitor_free(srv->monitor);
	srv->monitor = NULL;
	srv->stopping = true;
	agg_log_info("%s: shutting down", why);
	for (i = 0; i < srv->nlisteners; i++)
		agg_tcp_listener_free(srv->listeners[i].tcp);
	srv->nlisteners = 0;
	for (i = 0; i < srv->ngadgets; i++)
		agg_usbgadget_free(srv->gadgets[i]);
	srv->ngadgets = 0;
	while (!TAILQ_EMPTY(&srv->handshakes))
		server_handshake_free(srv, TAILQ_FIRST(&srv->handshakes));
	evtimer_add(srv->stop_timer, &tv);
	event_active(srv->reap, 0, 0);
}

/* SIGINT / SIGTERM: shut down; a second signal exits at once. */
static void server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	(void)what;
	if (srv->stopping) {
		agg_log_warn("%s again: exiting now", strsignal((int)sig));
		event_base_loopbreak(srv->base);
		return;
	}
	server_stop(srv, strsignal((int)sig));
}

/* The monitor's sessions: every session of the hub. */
static void server_monitor_foreach_cb(void (*fn)(struct agg_session *s,
    void *fnarg), void *fnarg, void *arg)
{
	struct server *srv = arg;

	agg_hub_foreach(srv->hub, fn, fnarg);
}

/* q in the monitor: shut down as on SIGTERM. */
static void server_monitor_quit_cb(void *arg)
{
	server_stop(arg, "quit from the monitor");
}

/* The transport of a link: the listeners' scheme when they share one. */
static const char *server_monitor_transport_cb(const char *name, void *arg)
{
	struct server *srv = arg;
	size_t i;

	(void)name;
	for (i = 1; i < srv->args->nurls; i++)
		if (srv->args->urls[i].scheme != srv->args->urls[0].scheme)
			return "?";
	return agg_url_scheme_name(srv->args->urls[0].scheme);
}

static const struct monitor_callbacks server_monitor_cbs = {
	.foreach = server_monitor_foreach_cb,
	.quit = server_monitor_quit_cb,
	.transport = server_monitor_transport_cb,
	.forget_down_s = 30,
};

/* Raises the open-file limit as far as allowed and sizes the stream
 * limit to it: every stream holds a socket, and links need some too. */
static size_t server_stream_limit(void)
{
	struct rlimit rl;
	rlim_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 256;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	n = rl.rlim_cur / 4 * 3;
	return n > SERVER_MAX_STREAMS ? SERVER_MAX_STREAMS : (size_t)n;
}

/* Writes one dump record for a session. */
static void server_dump_session_cb(struct agg_session *s, void *arg)
{
	agg_dump_session(arg, s);
}

/* The dump's interval: one record per session. */
static void server_dump_collect_cb(struct agg_dump *dump, void *arg)
{
	struct server *srv = arg;

	agg_hub_foreach(srv->hub, server_dump_session_cb, dump);
}

/* Creates everything the server needs, or exits with status 1. */
static void server_setup(struct server *srv, struct server_args *a,
    const uint8_t *key, size_t key_len)
{
	char err[700];
	size_t i;

	if ((srv->base = event_base_new()) == NULL)
		server_fatal("cannot create the event loop");
	srv->dns = evdns_base_new(srv->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (srv->dns == NULL)
		server_fatal("cannot set up the DNS resolver from "
		    "/etc/resolv.conf");
	if (evdns_base_count_nameservers(srv->dns) == 0)
		agg_log_warn("no DNS server configured: only addresses and "
		    "/etc/hosts names can be reached");
	agg_config_init(&srv->cfg);
	srv->hub = agg_hub_new(srv->base, &srv->cfg, key, key_len,
	    SERVER_MAX_SESSIONS, &server_hub_cbs, srv);
	agg_hub_set_max_handshaking(srv->hub, a->max_handshaking);
	srv->max_connecting = a->max_connecting;
	srv->max_buffered = (uint64_t)a->max_buffered_mib << 20;
	srv->dialer = dialer_new(srv->base, srv->dns, a->policy, NULL);
	srv->reap = event_new(srv->base, -1, 0, server_reap_cb, srv);
	srv->stop_timer = evtimer_new(srv->base, server_stop_timer_cb, srv);
	srv->sigint = evsignal_new(srv->base, SIGINT, server_signal_cb, srv);
	srv->sigterm = evsignal_new(srv->base, SIGTERM, server_signal_cb, srv);
	if (srv->hub == NULL || srv->dialer == NULL || srv->reap == NULL ||
	    srv->stop_timer == NULL || srv->sigint == NULL ||
	    srv->sigterm == NULL || evsignal_add(srv->sigint, NULL) != 0 ||
	    evsignal_add(srv->sigterm, NULL) != 0)
		server_fatal("out of memory");
	srv->max_streams = server_stream_limit();
	TAILQ_INIT(&srv->handshakes);
	if (server_args_need_tls(a)) {
		struct agg_tls_options o = {
			.ca_file = a->client_ca_file,
			.cert_file = a->cert_file,
			.key_file = a->key_file,
			.secret = key,
			.secret_len = key_len,
		};

		if ((srv->tls = agg_tls_server_new(&o, err, sizeof(err))) ==
		    NULL)
			server_fatal("%s", err);
	}
	for (i = 0; i < a->nurls; i++) {
		struct server_listener *l = &srv->listeners[i];

		l->srv = srv;
		l->url = a->urls[i];
		if (l->url.scheme == AGG_URL_USB_GADGET) {
			srv->gadgets[srv->ngadgets] = agg_usbgadget_new(
			    srv->base, &a->urls[i], a->usb_vid, a->usb_pid,
			    server_accept_cb, l, err, sizeof(err));
			if (srv->gadgets[srv->ngadgets] == NULL)
				server_fatal("%s", err);
			srv->ngadgets++;
			srv->nlisteners++;
			continue;
		}
		l->tcp = agg_tcp_listen(srv->base, &a->urls[i],
		    server_accept_cb, l, err, sizeof(err));
		if (l->tcp == NULL)
			server_fatal("%s", err);
		srv->nlisteners++;
	}
	if (a->dump_path != NULL && (srv->dump = agg_dump_open(srv->base,
	    a->dump_path, "agg-server", server_dump_collect_cb, srv, err,
	    sizeof(err))) == NULL)
		server_fatal("%s", err);
	srv->args = a;
	if (a->monitor != 0 && (srv->monitor = monitor_new(srv->base,
	    "agg-server", &server_monitor_cbs, srv, err, sizeof(err))) ==
	    NULL) {
		if (a->monitor == 1)
			server_fatal("%s", err);
		agg_log_warn("%s; going on without it", err);
	}
	if (a->insecure)
		agg_log_warn("no secret (--insecure-no-auth): anyone who "
		    "reaches this server may use it");
	agg_log_debug("limits: %d sessions, %u streams per session, %zu "
	    "streams in all, %zu connecting, %llu MiB buffered, %lu links "
	    "handshaking", SERVER_MAX_SESSIONS, srv->cfg.max_streams,
	    srv->max_streams, srv->max_connecting,
	    (unsigned long long)(srv->max_buffered >> 20),
	    a->max_handshaking);
}

/* Frees everything server_setup() made. */
static void server_teardown(struct server *srv)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++)
		agg_tcp_listener_free(srv->listeners[i].tcp);
	while (!TAILQ_EMPTY(&srv->handshakes))
		server_handshake_free(srv, TAILQ_FIRST(&srv->handshakes));
	/* Gone before the sessions close below, which tell it otherwise. */
	monitor_free(srv->monitor);
	srv->monitor = NULL;
	agg_dump_close(srv->dump);
	for (i = 0; i < srv->ngadgets; i++)
		agg_usbgadget_free(srv->gadgets[i]);
	dialer_free(srv->dialer);
	agg_hub_free(srv->hub);
	agg_tls_free(srv->tls);
	event_free(srv->sigint);
	event_free(srv->sigterm);
	event_free(srv->stop_timer);
	event_free(srv->reap);
	evdns_base_free(srv->dns, 0);
	/* Layered bufferevents (TLS) finish freeing in the loop; no other
	 * event is left to run. */
	event_base_loop(srv->base, EVLOOP_NONBLOCK);
	event_base_free(srv->base);
}

/* agg-server. */
int main(int argc, char *argv[])
{
	static struct server_args args;
	static struct server srv;
	static uint8_t key[AGG_SECRET_MAX];
	size_t key_len = 0;
	char err[700];
	char **cargv;
	int cargc, r;

	agg_log_set_program("agg-server");
	agg_tune_allocator();
	args.monitor = -1;
	args.max_connecting = SERVER_MAX_CONNECTING;
	args.max_buffered_mib = SERVER_MAX_BUFFERED_MIB;
	args.max_handshaking = AGG_HUB_MAX_HANDSHAKING;
	args.usb_vid = AGG_USB_DEFAULT_VID;
	args.usb_pid = AGG_USB_DEFAULT_PID;
	if ((args.policy = policy_new()) == NULL)
		server_fatal("out of memory");
	if ((r = agg_conf_prepare(&server_syntax, argc, argv, &server_conf,
	    &cargc, &cargv, err, sizeof(err))) != 0) {
		fprintf(stderr, "agg-server: %s\n", err);
		return r;
	}
	server_parse_args(cargc, cargv, &args);
	if (args.show_config) {
		server_show_config(&args, cargc, cargv);
		agg_conf_free(server_conf);
		policy_free(args.policy);
		return 0;
	}
	if (args.quiet)
		agg_log_set_level(AGG_LOG_ERROR);
	else if (args.verbose == 1)
		agg_log_set_level(AGG_LOG_INFO);
	else if (args.verbose > 1)
		agg_log_set_level(AGG_LOG_DEBUG);
	if (args.secret_file != NULL && agg_key_load(args.secret_file, key,
	    &key_len, err, sizeof(err)) != 0)
		server_fatal("%s", err);
	policy_set_insecure(args.policy, args.insecure);
	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(server_event_log_cb);
	server_setup(&srv, &args, key, key_len);
	event_base_dispatch(srv.base);
	server_teardown(&srv);
	policy_free(args.policy);
	agg_conf_free(server_conf);
	return 0;
}
