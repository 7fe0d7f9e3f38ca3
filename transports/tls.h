/*
 * tls.h: TLS 1.3 for links (OpenSSL). One configuration per side: the
 * server's (certificate and key, optionally a CA for client certificates,
 * or an external PSK derived from the shared secret) and the client's
 * (trust store or CA file with host name check, optional client
 * certificate, and the same PSK when it has the secret and no PKI was
 * asked for). A handshake turns a connected socket bufferevent into a TLS
 * bufferevent, or reports why it could not, in one line.
 */
#ifndef AGG_TLS_H
#define AGG_TLS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bufferevent;
struct agg_tls;
struct agg_tls_handshake;

#define AGG_TLS_PSK_LEN 32
#define AGG_TLS_PSK_ID_LEN 24       /* "agg-" and 20 hex digits */

/* What a side is configured with; NULL/0 for what it does not use. */
struct agg_tls_options {
	const char *ca_file;     /* client: --ca; server: --client-ca */
	const char *cert_file;   /* --cert */
	const char *key_file;    /* --key */
	const uint8_t *secret;   /* -k: the external PSK's source */
	size_t secret_len;
};

/* The client side: certificates verified against ca_file or the system
 * store, with the host name; a client certificate with cert/key. With a
 * secret and neither ca_file nor cert_file it also offers the PSK. NULL
 * with a one-line reason in err. */
struct agg_tls *agg_tls_client_new(const struct agg_tls_options *o,
    char *err, size_t errlen);
/* The server side: certificate mode with cert_file/key_file (and client
 * certificates required when ca_file is given), PSK mode otherwise (needs
 * the secret). NULL with a one-line reason in err. */
struct agg_tls *agg_tls_server_new(const struct agg_tls_options *o,
    char *err, size_t errlen);
/* Frees a configuration (handshakes in progress keep what they need). */
void agg_tls_free(struct agg_tls *tls);
/* Whether the configuration uses the external PSK. */
int agg_tls_uses_psk(const struct agg_tls *tls);

/* Derives the external PSK and its identity from the shared secret
 * (HKDF-SHA256); the identity is a printable string. 0, or -1. */
int agg_tls_derive_psk(const uint8_t *secret, size_t secret_len,
    uint8_t key[AGG_TLS_PSK_LEN], char identity[AGG_TLS_PSK_ID_LEN + 1]);

/* A finished handshake: bev is the TLS bufferevent (the callee owns it),
 * or NULL with a one-line reason ("certificate verify failed: self-signed
 * certificate", "unknown PSK", "the peer does not speak TLS"). */
typedef void (*agg_tls_done_cb)(struct bufferevent *bev, const char *error,
    void *arg);

/* Starts a handshake on a connected socket bufferevent, which it takes
 * over (freed on failure). host (client side) is the name or address the
 * certificate must carry; timeout_ms bounds the handshake. NULL with a
 * reason in err if it cannot start (tcp is freed then too). cb never runs
 * from within this call. */
struct agg_tls_handshake *agg_tls_start(struct event_base *base,
    struct agg_tls *tls, struct bufferevent *tcp, const char *host,
    unsigned timeout_ms, agg_tls_done_cb cb, void *arg, char *err,
    size_t errlen);
/* Abandons a handshake (its callback will not run; the connection
 * closes). */
void agg_tls_cancel(struct agg_tls_handshake *h);

#endif
