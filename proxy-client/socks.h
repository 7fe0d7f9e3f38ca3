/*
 * socks.h: the first bytes of a -D connection. A state machine that reads
 * a SOCKS5 (RFC 1928, with RFC 1929 username/password) or an HTTP CONNECT
 * request from an evbuffer that may hold any prefix of it, and says what
 * to do: read more, send a reply and close, or connect to a target and
 * answer later with socks_answer(). It does no I/O and keeps no pointers
 * into the buffer, so the same bytes give the same result however they
 * are split.
 */
#ifndef AGG_SOCKS_H
#define AGG_SOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "agg/target.h"

struct evbuffer;

/* Longest HTTP request head (request line and headers) we accept. */
#define SOCKS_HTTP_MAX 8192

/* Accepted user:password pairs (--socks-auth FILE). */
struct socks_users;

enum socks_status {
	SOCKS_MORE,     /* read more bytes (out may hold a reply to send) */
	SOCKS_CLOSE,    /* send what is in out, then close */
	SOCKS_CONNECT,  /* open a stream to socks_target(), then answer */
};

enum socks_proto {
	SOCKS_PROTO_NONE,    /* not known yet */
	SOCKS_PROTO_SOCKS5,
	SOCKS_PROTO_HTTP,
};

struct socks {
	const struct socks_users *users; /* NULL: no authentication */
	int state;
	enum socks_proto proto;
	enum socks_status done;          /* the result once decided */
	size_t scan;                     /* HTTP: bytes already looked at */
	size_t line_start;               /* HTTP: start of the current line */
	int http_lines;                  /* HTTP: lines seen */
	int http_authorized;             /* HTTP: good Proxy-Authorization */
	struct agg_target target;
	char error[160];                 /* why it closed, for logs */
};

/* Reads the user:password lines of path. NULL with a one-line reason in
 * err if the file cannot be read or has no valid line. */
struct socks_users *socks_users_load(const char *path, char *err,
    size_t errlen);
/* Number of users loaded. */
size_t socks_users_count(const struct socks_users *users);
/* Frees the users. */
void socks_users_free(struct socks_users *users);
/* Whether name and password (not NUL-terminated) match a loaded pair. */
int socks_users_check(const struct socks_users *users, const void *name,
    size_t name_len, const void *pass, size_t pass_len);

/* Starts a parser; users may be NULL (no authentication asked). */
void socks_init(struct socks *s, const struct socks_users *users);
/* Consumes what it can from in, appends replies to out. After
 * SOCKS_CONNECT, in holds only bytes that follow the request. */
enum socks_status socks_parse(struct socks *s, struct evbuffer *in,
    struct evbuffer *out);
/* The destination once socks_parse() returned SOCKS_CONNECT. */
const struct agg_target *socks_target(const struct socks *s);
/* Why the parser closed, or "". */
const char *socks_error(const struct socks *s);
/* Protocol name for logs: "socks5", "http" or "unknown". */
const char *socks_proto_name(const struct socks *s);
/* Appends the answer to a CONNECT: code is the stream result (AGG_OK or
 * AGG_ERR_*), message an optional reason for the HTTP body. Anything but
 * AGG_OK means close after sending. */
void socks_answer(const struct socks *s, int code, const char *message,
    struct evbuffer *out);
/* SOCKS5 REP byte for a stream result code (0x01 for unknown codes). */
uint8_t socks_reply_code(int code);
/* HTTP status and reason phrase for a stream result code. */
int socks_http_status(int code, const char **phrase);
/* A short text for a stream result code ("connection refused"). */
const char *socks_result_text(int code);

#endif
