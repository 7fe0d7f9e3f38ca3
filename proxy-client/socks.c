/*
 * socks.c: the SOCKS5 / HTTP CONNECT handshake of a -D connection, as a
 * state machine over an evbuffer. Every step peeks until its message is
 * complete and only then consumes it, so partial input never changes the
 * outcome; every length comes from the peer and is checked against what
 * the message may hold.
 */
#include "socks.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "agg/session.h"

#define SOCKS5_VERSION 0x05
#define SOCKS5_AUTH_VERSION 0x01
#define SOCKS5_METHOD_NONE 0x00
#define SOCKS5_METHOD_USERPASS 0x02
#define SOCKS5_METHOD_REFUSED 0xff
#define SOCKS5_CMD_CONNECT 0x01
#define SOCKS5_CMD_BIND 0x02
#define SOCKS5_CMD_UDP 0x03

/* Longest line of a --socks-auth file: user, ':', password, line end. */
#define USERS_LINE_MAX 520

enum {
	ST_START,
	ST_S5_GREETING,
	ST_S5_AUTH,
	ST_S5_REQUEST,
	ST_HTTP,
	ST_DONE,
};

struct socks_user {
	uint8_t name_len, pass_len;
	char name[255];
	char pass[255];
};

struct socks_users {
	size_t n, cap;
	struct socks_user *v;
};

/* Compares two byte strings in time that depends only on their lengths. */
static int socks_equal(const void *a, size_t alen, const void *b,
    size_t blen)
{
	const uint8_t *x = a, *y = b;
	uint8_t diff = 0;
	size_t i;

	if (alen != blen)
		return 0;
	for (i = 0; i < alen; i++)
		diff |= (uint8_t)(x[i] ^ y[i]);
	return diff == 0;
}

/* Adds one user; -1 on allocation failure. */
static int socks_users_add(struct socks_users *u, const char *name,
    size_t name_len, const char *pass, size_t pass_len)
{
	struct socks_user *v;
	size_t cap;

	if (u->n == u->cap) {
		cap = u->cap ? 2 * u->cap : 8;
		if ((v = reallocarray(u->v, cap, sizeof(*v))) == NULL)
			return -1;
		u->v = v;
		u->cap = cap;
	}
	v = &u->v[u->n++];
	memset(v, 0, sizeof(*v));
	memcpy(v->name, name, name_len);
	memcpy(v->pass, pass, pass_len);
	v->name_len = (uint8_t)name_len;
	v->pass_len = (uint8_t)pass_len;
	return 0;
}

/* Reads the user:password lines of a --socks-auth file. */
struct socks_users *socks_users_load(const char *path, char *err,
    size_t errlen)
{
	struct socks_users *u;
	char line[USERS_LINE_MAX + 2];
	const char *colon;
	size_t len, lineno = 0;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot read --socks-auth file %s: %s",
		    path, strerror(errno));
		return NULL;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		len = strcspn(line, "\r\n");
		if (line[len] == '\0' && !feof(f)) {
			snprintf(err, errlen, "--socks-auth file %s line %zu: "
			    "line too long", path, lineno);
			goto fail;
		}
		line[len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		colon = strchr(line, ':');
		if (colon == NULL || colon == line || colon[1] == '\0' ||
		    (size_t)(colon - line) > 255 || strlen(colon + 1) > 255) {
			snprintf(err, errlen, "--socks-auth file %s line %zu: "
			    "expected user:password (1 to 255 bytes each)",
			    path, lineno);
			goto fail;
		}
		if (socks_users_add(u, line, (size_t)(colon - line), colon + 1,
		    strlen(colon + 1)) != 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read --socks-auth file %s: %s",
		    path, strerror(errno));
		goto fail;
	}
	if (u->n == 0) {
		snprintf(err, errlen, "--socks-auth file %s has no "
		    "user:password line", path);
		goto fail;
	}
	fclose(f);
	return u;
fail:
	fclose(f);
	socks_users_free(u);
	return NULL;
}

/* Number of users. */
size_t socks_users_count(const struct socks_users *u)
{
	return u != NULL ? u->n : 0;
}

/* Frees the users, wiping the passwords. */
void socks_users_free(struct socks_users *u)
{
	if (u == NULL)
		return;
	if (u->v != NULL)
		explicit_bzero(u->v, u->cap * sizeof(*u->v));
	free(u->v);
	free(u);
}

/* Whether a name and password match one pair; looks at every pair. */
int socks_users_check(const struct socks_users *u, const void *name,
    size_t name_len, const void *pass, size_t pass_len)
{
	int ok = 0;
	size_t i;

	if (u == NULL)
		return 0;
	for (i = 0; i < u->n; i++)
		ok |= socks_equal(u->v[i].name, u->v[i].name_len, name,
		    name_len) & socks_equal(u->v[i].pass, u->v[i].pass_len,
		    pass, pass_len);
	return ok;
}

/* Starts a parser. */
void socks_init(struct socks *s, const struct socks_users *users)
{
	memset(s, 0, sizeof(*s));
	s->users = users;
	s->state = ST_START;
	s->done = SOCKS_MORE;
}

/* The destination of a CONNECT. */
const struct agg_target *socks_target(const struct socks *s)
{
	return &s->target;
}

/* Why the parser closed. */
const char *socks_error(const struct socks *s)
{
	return s->error;
}

/* Protocol name. */
const char *socks_proto_name(const struct socks *s)
{
	switch (s->proto) {
	case SOCKS_PROTO_SOCKS5: return "socks5";
	case SOCKS_PROTO_HTTP: return "http";
	default: return "unknown";
	}
}

/* Short text of a result code. */
const char *socks_result_text(int code)
{
	switch (code) {
	case AGG_OK: return "succeeded";
	case AGG_ERR_DENIED: return "connection not allowed by policy";
	case AGG_ERR_NET_UNREACHABLE: return "network unreachable";
	case AGG_ERR_HOST_UNREACHABLE: return "host unreachable";
	case AGG_ERR_REFUSED: return "connection refused";
	case AGG_ERR_TIMEOUT: return "timed out";
	case AGG_ERR_UNSUPPORTED: return "command not supported";
	case AGG_ERR_ADDRESS_TYPE: return "address type not supported";
	default: return "general failure";
	}
}

/* SOCKS5 REP byte of a result code: the codes are the same. */
uint8_t socks_reply_code(int code)
{
	if (code < AGG_OK || code > AGG_ERR_ADDRESS_TYPE)
		return AGG_ERR_GENERAL;
	return (uint8_t)code;
}

/* HTTP status of a result code. */
int socks_http_status(int code, const char **phrase)
{
	const char *p;
	int status;

	switch (code) {
	case AGG_OK:
		status = 200;
		p = "Connection established";
		break;
	case AGG_ERR_DENIED:
		status = 403;
		p = "Forbidden";
		break;
	case AGG_ERR_TIMEOUT:
		status = 504;
		p = "Gateway Timeout";
		break;
	default:
		status = 502;
		p = "Bad Gateway";
		break;
	}
	if (phrase != NULL)
		*phrase = p;
	return status;
}

/* Records why the parser gives up. */
static void socks_set_error(struct socks *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records why the parser gives up. */
static void socks_set_error(struct socks *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
}

/* Ends the parse with a decision. */
static enum socks_status socks_finish(struct socks *s,
    enum socks_status status)
{
	s->state = ST_DONE;
	s->done = status;
	return status;
}

/* Appends a complete SOCKS5 reply: VER REP RSV ATYP=1 0.0.0.0 port 0. */
static void socks5_reply(struct evbuffer *out, uint8_t rep)
{
	const uint8_t msg[10] = { SOCKS5_VERSION, rep, 0, AGG_ADDR_IPV4 };

	evbuffer_add(out, msg, sizeof(msg));
}

/* Fails the SOCKS5 request with a reply code. */
static enum socks_status socks5_fail(struct socks *s, struct evbuffer *out,
    uint8_t rep)
{
	socks5_reply(out, rep);
	return socks_finish(s, SOCKS_CLOSE);
}

/* Appends an HTTP error response with a one-line body. */
static void http_reply(struct evbuffer *out, int status, const char *phrase,
    const char *headers, const char *body)
{
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n%s"
	    "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s\n", status, phrase, headers,
	    strlen(body) + 1, body);
}

/* Fails the HTTP request with a status; the body is the error text. */
static enum socks_status http_fail(struct socks *s, struct evbuffer *out,
    int status, const char *phrase, const char *headers)
{
	http_reply(out, status, phrase, headers, s->error);
	return socks_finish(s, SOCKS_CLOSE);
}

/* SOCKS5 method negotiation: VER NMETHODS METHODS... */
static enum socks_status socks5_greeting(struct socks *s,
    struct evbuffer *in, struct evbuffer *out)
{
	uint8_t msg[2 + 255], want, reply[2];
	size_t n, i;

	if (evbuffer_copyout(in, msg, 2) < 2)
		return SOCKS_MORE;
	n = msg[1];
	if (evbuffer_get_length(in) < 2 + n)
		return SOCKS_MORE;
	evbuffer_remove(in, msg, 2 + n);
	want = s->users != NULL ? SOCKS5_METHOD_USERPASS : SOCKS5_METHOD_NONE;
	reply[0] = SOCKS5_VERSION;
	reply[1] = SOCKS5_METHOD_REFUSED;
	for (i = 0; i < n; i++)
		if (msg[2 + i] == want)
			reply[1] = want;
	evbuffer_add(out, reply, sizeof(reply));
	if (reply[1] == SOCKS5_METHOD_REFUSED) {
		socks_set_error(s, "SOCKS5 client offers no acceptable "
		    "authentication method (%s needed)", s->users != NULL ?
		    "username/password" : "no authentication");
		return socks_finish(s, SOCKS_CLOSE);
	}
	s->state = want == SOCKS5_METHOD_USERPASS ? ST_S5_AUTH :
	    ST_S5_REQUEST;
	return SOCKS_MORE;
}

/* RFC 1929: VER ULEN UNAME PLEN PASSWD, answered VER STATUS. */
static enum socks_status socks5_auth(struct socks *s, struct evbuffer *in,
    struct evbuffer *out)
{
	uint8_t msg[3 + 255 + 255], reply[2] = { SOCKS5_AUTH_VERSION, 0x01 };
	size_t ulen, plen, len = evbuffer_get_length(in);
	int ok;

	if (evbuffer_copyout(in, msg, 2) < 2)
		return SOCKS_MORE;
	if (msg[0] != SOCKS5_AUTH_VERSION) {
		evbuffer_add(out, reply, sizeof(reply));
		socks_set_error(s, "SOCKS5 username/password version %u, "
		    "expected 1", msg[0]);
		return socks_finish(s, SOCKS_CLOSE);
	}
	ulen = msg[1];
	if (len < 3 + ulen)
		return SOCKS_MORE;
	evbuffer_copyout(in, msg, 3 + ulen);
	plen = msg[2 + ulen];
	if (len < 3 + ulen + plen)
		return SOCKS_MORE;
	evbuffer_remove(in, msg, 3 + ulen + plen);
	ok = socks_users_check(s->users, msg + 2, ulen, msg + 3 + ulen, plen);
	explicit_bzero(msg, sizeof(msg));
	if (!ok) {
		evbuffer_add(out, reply, sizeof(reply));
		socks_set_error(s, "SOCKS5 authentication failed: wrong user "
		    "name or password");
		return socks_finish(s, SOCKS_CLOSE);
	}
	reply[1] = 0x00;
	evbuffer_add(out, reply, sizeof(reply));
	s->state = ST_S5_REQUEST;
	return SOCKS_MORE;
}

/* SOCKS5 request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
static enum socks_status socks5_request(struct socks *s, struct evbuffer *in,
    struct evbuffer *out)
{
	uint8_t msg[4 + 1 + 255 + 2];
	size_t alen, total;
	struct agg_target *t = &s->target;

	if (evbuffer_copyout(in, msg, 5) < 4)
		return SOCKS_MORE;
	if (msg[0] != SOCKS5_VERSION) {
		socks_set_error(s, "SOCKS5 request with version %u", msg[0]);
		return socks_finish(s, SOCKS_CLOSE);
	}
	switch (msg[3]) {
	case AGG_ADDR_IPV4:
		alen = 4;
		break;
	case AGG_ADDR_IPV6:
		alen = 16;
		break;
	case AGG_ADDR_NAME:
		if (evbuffer_get_length(in) < 5)
			return SOCKS_MORE;
		alen = 1 + (size_t)msg[4];
		break;
	default:
		socks_set_error(s, "SOCKS5 address type %u not supported",
		    msg[3]);
		return socks5_fail(s, out, AGG_ERR_ADDRESS_TYPE);
	}
	total = 4 + alen + 2;
	if (evbuffer_get_length(in) < total)
		return SOCKS_MORE;
	evbuffer_remove(in, msg, total);
	if (msg[1] != SOCKS5_CMD_CONNECT) {
		socks_set_error(s, "SOCKS5 %s not supported",
		    msg[1] == SOCKS5_CMD_BIND ? "BIND" : msg[1] ==
		    SOCKS5_CMD_UDP ? "UDP ASSOCIATE" : "unknown command");
		return socks5_fail(s, out, AGG_ERR_UNSUPPORTED);
	}
	memset(t, 0, sizeof(*t));
	t->type = msg[3];
	if (t->type == AGG_ADDR_NAME) {
		if (msg[4] == 0 || memchr(msg + 5, '\0', msg[4]) != NULL) {
			socks_set_error(s, "SOCKS5 host name empty or with a "
			    "NUL byte");
			return socks5_fail(s, out, AGG_ERR_GENERAL);
		}
		t->name_len = msg[4];
		memcpy(t->addr.name, msg + 5, msg[4]);
		t->addr.name[msg[4]] = '\0';
	} else {
		memcpy(t->type == AGG_ADDR_IPV4 ? t->addr.ipv4 : t->addr.ipv6,
		    msg + 4, alen);
	}
	t->port = (uint16_t)(msg[4 + alen] << 8 | msg[4 + alen + 1]);
	return socks_finish(s, SOCKS_CONNECT);
}

/* Value of one base64 character, or -1. */
static int base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes padded base64 into out; the decoded length, or -1. */
static long base64_decode(const char *in, size_t len, uint8_t *out,
    size_t cap)
{
	size_t i, n = 0, pad = 0;
	uint32_t acc;
	int v, j;

	if (len == 0 || len % 4 != 0)
		return -1;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	if (len / 4 * 3 - pad > cap)
		return -1;
	for (i = 0; i < len; i += 4) {
		acc = 0;
		for (j = 0; j < 4; j++) {
			if (i + (size_t)j >= len - pad) {
				v = 0;
			} else if ((v = base64_value(in[i + (size_t)j])) < 0) {
				return -1;
			}
			acc = acc << 6 | (uint32_t)v;
		}
		out[n++] = (uint8_t)(acc >> 16);
		if (i + 4 < len || pad < 2)
			out[n++] = (uint8_t)(acc >> 8);
		if (i + 4 < len || pad < 1)
			out[n++] = (uint8_t)acc;
	}
	return (long)n;
}

/* Whether a Proxy-Authorization value holds Basic credentials we know. */
static int http_check_basic(const struct socks *s, const char *v,
    size_t len)
{
	uint8_t buf[USERS_LINE_MAX];
	const uint8_t *colon;
	long n;
	int ok;

	if (len < 6 || strncasecmp(v, "Basic", 5) != 0 ||
	    (v[5] != ' ' && v[5] != '\t'))
		return 0;
	v += 6;
	len -= 6;
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	if ((n = base64_decode(v, len, buf, sizeof(buf))) < 0 ||
	    (colon = memchr(buf, ':', (size_t)n)) == NULL)
		return 0;
	ok = socks_users_check(s->users, buf, (size_t)(colon - buf),
	    colon + 1, (size_t)n - (size_t)(colon - buf) - 1);
	explicit_bzero(buf, sizeof(buf));
	return ok;
}

/* Whether c may appear in an HTTP token (method, header name). */
static int http_token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Whether a CONNECT host is a plausible name or address. */
static int http_host_ok(const char *h, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	if (h[0] == '[')
		return 1;
	for (i = 0; i < len; i++)
		if (!((h[i] >= 'A' && h[i] <= 'Z') ||
		    (h[i] >= 'a' && h[i] <= 'z') ||
		    (h[i] >= '0' && h[i] <= '9') ||
		    h[i] == '-' || h[i] == '.' || h[i] == '_' || h[i] == ':'))
			return 0;
	return 1;
}

/* The request line: CONNECT host:port HTTP/1.x. 0 to go on, else the
 * status to fail with. */
static int http_request_line(struct socks *s, const char *line, size_t len,
    const char **phrase, const char **headers)
{
	const char *sp1, *sp2, *target, *version;
	size_t mlen, tlen, vlen, i;
	char buf[300];

	*headers = "";
	*phrase = "Bad Request";
	sp1 = memchr(line, ' ', len);
	sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 -
	    line)) : NULL;
	if (sp1 == NULL || sp2 == NULL || sp1 == line || sp2 == sp1 + 1) {
		socks_set_error(s, "malformed HTTP request line");
		return 400;
	}
	mlen = (size_t)(sp1 - line);
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	version = sp2 + 1;
	vlen = len - (size_t)(version - line);
	for (i = 0; i < mlen; i++)
		if (!http_token_char(line[i])) {
			socks_set_error(s, "malformed HTTP method");
			return 400;
		}
	if (vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0 ||
	    (version[7] != '0' && version[7] != '1')) {
		socks_set_error(s, "not an HTTP/1.x request");
		return 400;
	}
	if (mlen != 7 || memcmp(line, "CONNECT", 7) != 0) {
		socks_set_error(s, "only CONNECT is supported, not %.*s",
		    mlen > 16 ? 16 : (int)mlen, line);
		*phrase = "Method Not Allowed";
		*headers = "Allow: CONNECT\r\n";
		return 405;
	}
	if (tlen >= sizeof(buf) || !http_host_ok(target, tlen)) {
		socks_set_error(s, "bad CONNECT target");
		return 400;
	}
	memcpy(buf, target, tlen);
	buf[tlen] = '\0';
	if (agg_target_parse(buf, &s->target) != 0) {
		socks_set_error(s, "bad CONNECT target '%s': expected "
		    "host:port", buf);
		return 400;
	}
	return 0;
}

/* A header line: Name: value. 0 to go on, else 400. */
static int http_header(struct socks *s, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len), *v;
	size_t i, nlen;

	if (colon == NULL || colon == line) {
		socks_set_error(s, "malformed HTTP header line");
		return 400;
	}
	nlen = (size_t)(colon - line);
	for (i = 0; i < nlen; i++)
		if (!http_token_char(line[i])) {
			socks_set_error(s, "malformed HTTP header name");
			return 400;
		}
	v = colon + 1;
	if (s->users != NULL && nlen == 19 &&
	    strncasecmp(line, "Proxy-Authorization", 19) == 0) {
		while (v < line + len && (*v == ' ' || *v == '\t'))
			v++;
		if (http_check_basic(s, v, (size_t)(line + len - v)))
			s->http_authorized = 1;
	}
	return 0;
}

/* The end of the head: connect, unless credentials are missing. */
static enum socks_status http_head_done(struct socks *s, struct evbuffer *out)
{
	if (s->users != NULL && !s->http_authorized) {
		socks_set_error(s, "proxy authentication required");
		return http_fail(s, out, 407, "Proxy Authentication Required",
		    "Proxy-Authenticate: Basic realm=\"agg\"\r\n");
	}
	return socks_finish(s, SOCKS_CONNECT);
}

/* HTTP: scans new bytes line by line up to the empty line. */
static enum socks_status http_parse(struct socks *s, struct evbuffer *in,
    struct evbuffer *out)
{
	const char *p, *line, *phrase, *headers;
	size_t len = evbuffer_get_length(in), llen, i;
	int status;

	if (len > SOCKS_HTTP_MAX)
		len = SOCKS_HTTP_MAX;
	if ((p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len)) == NULL)
		return SOCKS_MORE;
	for (i = s->scan; i < len; i++) {
		if (p[i] != '\n') {
			if (((unsigned char)p[i] < 0x20 && p[i] != '\r' &&
			    p[i] != '\t') || p[i] == 0x7f) {
				socks_set_error(s, "control character in "
				    "HTTP request");
				return http_fail(s, out, 400, "Bad Request",
				    "");
			}
			continue;
		}
		line = p + s->line_start;
		llen = i - s->line_start;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		s->line_start = i + 1;
		s->scan = i + 1;
		if (memchr(line, '\r', llen) != NULL) {
			socks_set_error(s, "stray CR in HTTP request");
			return http_fail(s, out, 400, "Bad Request", "");
		}
		if (s->http_lines++ == 0) {
			if ((status = http_request_line(s, line, llen, &phrase,
			    &headers)) != 0) {
				evbuffer_drain(in, i + 1);
				return http_fail(s, out, status, phrase,
				    headers);
			}
		} else if (llen == 0) {
			evbuffer_drain(in, i + 1);
			return http_head_done(s, out);
		} else if (line[0] == ' ' || line[0] == '\t' ||
		    http_header(s, line, llen) != 0) {
			if (line[0] == ' ' || line[0] == '\t')
				socks_set_error(s, "folded HTTP header");
			evbuffer_drain(in, i + 1);
			return http_fail(s, out, 400, "Bad Request", "");
		}
	}
	s->scan = len;
	if (len >= SOCKS_HTTP_MAX) {
		socks_set_error(s, "HTTP request head longer than %d bytes",
		    SOCKS_HTTP_MAX);
		return http_fail(s, out, 400, "Bad Request", "");
	}
	return SOCKS_MORE;
}

/* Reads as far as the buffered bytes go. */
enum socks_status socks_parse(struct socks *s, struct evbuffer *in,
    struct evbuffer *out)
{
	enum socks_status r;
	uint8_t first;
	static const uint8_t socks4_reject[8] = { 0x00, 0x5b };

	for (;;) {
		switch (s->state) {
		case ST_START:
			if (evbuffer_copyout(in, &first, 1) < 1)
				return SOCKS_MORE;
			if (first == SOCKS5_VERSION) {
				s->proto = SOCKS_PROTO_SOCKS5;
				s->state = ST_S5_GREETING;
			} else if (first >= 'A' && first <= 'Z') {
				s->proto = SOCKS_PROTO_HTTP;
				s->state = ST_HTTP;
			} else if (first == 0x04) {
				evbuffer_add(out, socks4_reject,
				    sizeof(socks4_reject));
				socks_set_error(s, "SOCKS4 is not supported, "
				    "only SOCKS5");
				return socks_finish(s, SOCKS_CLOSE);
			} else {
				socks_set_error(s, "neither SOCKS5 nor HTTP "
				    "(first byte 0x%02x)", first);
				return socks_finish(s, SOCKS_CLOSE);
			}
			break;
		case ST_S5_GREETING:
			r = socks5_greeting(s, in, out);
			if (r != SOCKS_MORE || s->state == ST_S5_GREETING)
				return r;
			break;
		case ST_S5_AUTH:
			r = socks5_auth(s, in, out);
			if (r != SOCKS_MORE || s->state == ST_S5_AUTH)
				return r;
			break;
		case ST_S5_REQUEST:
			return socks5_request(s, in, out);
		case ST_HTTP:
			return http_parse(s, in, out);
		default:
			return s->done;
		}
	}
}

/* Answers a CONNECT with the stream's result. */
void socks_answer(const struct socks *s, int code, const char *message,
    struct evbuffer *out)
{
	const char *phrase;
	int status;

	if (s->proto == SOCKS_PROTO_SOCKS5) {
		socks5_reply(out, socks_reply_code(code));
		return;
	}
	if (code == AGG_OK) {
		evbuffer_add_printf(out,
		    "HTTP/1.1 200 Connection established\r\n\r\n");
		return;
	}
	status = socks_http_status(code, &phrase);
	http_reply(out, status, phrase, "", message != NULL &&
	    message[0] != '\0' ? message : socks_result_text(code));
}
