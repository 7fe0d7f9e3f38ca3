/*
 * tls.c: TLS 1.3 for links. See tls.h.
 *
 * The TLS bufferevent is libevent's OpenSSL filter over the TCP
 * bufferevent: records collect below TLS and leave in large writes (the
 * socket-based flavour made one write per record, and libagg's headers and
 * bodies are separate records), and reads below TLS take up to 256 KiB
 * (agg/bevio.h). The external PSK is an HKDF of the shared secret; its
 * identity, derived too, lets the server tell an unknown secret from other
 * failures. PSK handshakes use psk_dhe_ke, the default, so they keep
 * forward secrecy.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agg/bevio.h"

/* The PSK's ciphersuites must share its hash (SHA-256). */
#define TLS_PSK_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
/* Bytes per socket read or write, and TLS records queued below TLS. */
#define TLS_IO_MAX (256 * 1024)

/* libevent's own read callback of the socket below TLS (the same function
 * for every connection; its argument stays the connection's). */
static bufferevent_data_cb tls_below_readcb;

struct agg_tls {
	SSL_CTX *ctx;
	int server;
	int psk;                      /* PSK offered (client) or required */
	uint8_t psk_key[AGG_TLS_PSK_LEN];
	char psk_id[AGG_TLS_PSK_ID_LEN + 1];
};

struct agg_tls_handshake {
	struct agg_tls *tls;
	struct bufferevent *bev;
	struct event *timer;
	agg_tls_done_cb cb;
	void *arg;
	int psk_seen;                 /* server: the client offered a PSK */
	int psk_unknown;              /* server: ... with another identity */
};

/* HKDF-SHA256 of the secret with a label; 0, or -1. */
static int tls_hkdf(const uint8_t *secret, size_t secret_len,
    const char *label, uint8_t *out, size_t outlen)
{
	static const char salt[] = "agg tls 1.3 external psk v1";
	OSSL_PARAM params[5];
	EVP_KDF_CTX *kctx;
	EVP_KDF *kdf;
	int r;

	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL)
		return -1;
	kctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (kctx == NULL)
		return -1;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    (void *)secret, secret_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	    (void *)salt, sizeof(salt) - 1);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (void *)label, strlen(label));
	params[4] = OSSL_PARAM_construct_end();
	r = EVP_KDF_derive(kctx, out, outlen, params);
	EVP_KDF_CTX_free(kctx);
	return r == 1 ? 0 : -1;
}

/* Derives the external PSK and its identity from the shared secret. */
int agg_tls_derive_psk(const uint8_t *secret, size_t secret_len,
    uint8_t key[AGG_TLS_PSK_LEN], char identity[AGG_TLS_PSK_ID_LEN + 1])
{
	uint8_t id[(AGG_TLS_PSK_ID_LEN - 4) / 2];
	size_t i;

	if (secret_len == 0 ||
	    tls_hkdf(secret, secret_len, "key", key, AGG_TLS_PSK_LEN) != 0 ||
	    tls_hkdf(secret, secret_len, "identity", id, sizeof(id)) != 0)
		return -1;
	memcpy(identity, "agg-", 4);
	for (i = 0; i < sizeof(id); i++)
		snprintf(identity + 4 + 2 * i, 3, "%02x", id[i]);
	return 0;
}

/* The reason of the latest OpenSSL error, for configuration messages. */
static const char *tls_last_error(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "unknown error";
}

/* A session holding the PSK, for both callbacks. */
static SSL_SESSION *tls_psk_session(SSL *ssl, const struct agg_tls *t)
{
	static const unsigned char aes128gcm_sha256[] = { 0x13, 0x01 };
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
	SSL_SESSION *s;

	if (cipher == NULL || (s = SSL_SESSION_new()) == NULL)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, t->psk_key, sizeof(t->psk_key)) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

/* Client: offers the PSK (unless a HelloRetryRequest chose a hash that
 * does not fit it). */
static int tls_psk_use_cb(SSL *ssl, const EVP_MD *md,
    const unsigned char **id, size_t *idlen, SSL_SESSION **sess)
{
	const struct agg_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	SSL_SESSION *s = tls_psk_session(ssl, t);

	*sess = NULL;
	*id = NULL;
	*idlen = 0;
	if (s == NULL)
		return 0;
	if (md != NULL && md != SSL_CIPHER_get_handshake_digest(
	    SSL_SESSION_get0_cipher(s))) {
		SSL_SESSION_free(s);
		return 1;
	}
	*sess = s;
	*id = (const unsigned char *)t->psk_id;
	*idlen = strlen(t->psk_id);
	return 1;
}

/* Server: takes the PSK whose identity the client names, if it is ours. */
static int tls_psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen,
    SSL_SESSION **sess)
{
	const struct agg_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct agg_tls_handshake *h = SSL_get_app_data(ssl);

	*sess = NULL;
	if (h != NULL)
		h->psk_seen = 1;
	if (idlen != strlen(t->psk_id) ||
	    CRYPTO_memcmp(id, t->psk_id, idlen) != 0) {
		if (h != NULL)
			h->psk_unknown = 1;
		return 1;
	}
	*sess = tls_psk_session(ssl, t);
	return *sess != NULL;
}

/* Checks that a file can be read, for a clear message. */
static int tls_check_file(const char *what, const char *path, char *err,
    size_t errlen)
{
	if (access(path, R_OK) == 0)
		return 0;
	snprintf(err, errlen, "cannot read %s %.400s: %s", what, path,
	    strerror(errno));
	return -1;
}

/* Loads a certificate chain and its key into ctx. */
static int tls_load_cert(SSL_CTX *ctx, const struct agg_tls_options *o,
    char *err, size_t errlen)
{
	if (o->cert_file == NULL || o->key_file == NULL) {
		snprintf(err, errlen, "--cert and --key go together");
		return -1;
	}
	if (tls_check_file("--cert", o->cert_file, err, errlen) != 0 ||
	    tls_check_file("--key", o->key_file, err, errlen) != 0)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
		snprintf(err, errlen, "cannot load --cert %.400s: %s",
		    o->cert_file, tls_last_error());
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file,
	    SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "cannot load --key %.400s: %s",
		    o->key_file, tls_last_error());
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "--key %.300s does not belong to --cert "
		    "%.300s", o->key_file, o->cert_file);
		return -1;
	}
	return 0;
}

/* A context for TLS 1.3 only, without session tickets. */
static struct agg_tls *tls_new(int server, char *err, size_t errlen)
{
	struct agg_tls *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->server = server;
	t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (t->ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION)) {
		snprintf(err, errlen, "cannot set up TLS: %s",
		    tls_last_error());
		agg_tls_free(t);
		return NULL;
	}
	SSL_CTX_set_app_data(t->ctx, t);
	SSL_CTX_set_num_tickets(t->ctx, 0);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	return t;
}

/* Derives the PSK into t and restricts the suites to its hash. */
static int tls_set_psk(struct agg_tls *t, const struct agg_tls_options *o,
    char *err, size_t errlen)
{
	if (agg_tls_derive_psk(o->secret, o->secret_len, t->psk_key,
	    t->psk_id) != 0 ||
	    SSL_CTX_set_ciphersuites(t->ctx, TLS_PSK_SUITES) != 1) {
		snprintf(err, errlen, "cannot derive the TLS PSK: %s",
		    tls_last_error());
		return -1;
	}
	t->psk = 1;
	return 0;
}

/* The client side. */
struct agg_tls *agg_tls_client_new(const struct agg_tls_options *o,
    char *err, size_t errlen)
{
	struct agg_tls *t;

	if ((t = tls_new(0, err, errlen)) == NULL)
		return NULL;
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (o->ca_file != NULL) {
		if (tls_check_file("--ca", o->ca_file, err, errlen) != 0)
			goto fail;
		if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file,
		    NULL) != 1) {
			snprintf(err, errlen, "cannot load --ca %.400s: %s",
			    o->ca_file, tls_last_error());
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		snprintf(err, errlen, "cannot load the system trust store: %s",
		    tls_last_error());
		goto fail;
	}
	if ((o->cert_file != NULL || o->key_file != NULL) &&
	    tls_load_cert(t->ctx, o, err, errlen) != 0)
		goto fail;
	if (o->secret_len > 0 && o->ca_file == NULL && o->cert_file == NULL) {
		if (tls_set_psk(t, o, err, errlen) != 0)
			goto fail;
		SSL_CTX_set_psk_use_session_callback(t->ctx, tls_psk_use_cb);
	}
	return t;
fail:
	agg_tls_free(t);
	return NULL;
}

/* The server side. */
struct agg_tls *agg_tls_server_new(const struct agg_tls_options *o,
    char *err, size_t errlen)
{
	STACK_OF(X509_NAME) *names;
	struct agg_tls *t;

	if ((t = tls_new(1, err, errlen)) == NULL)
		return NULL;
	if (o->cert_file == NULL && o->key_file == NULL) {
		if (o->ca_file != NULL) {
			snprintf(err, errlen, "--client-ca needs --cert and "
			    "--key");
			goto fail;
		}
		if (o->secret_len == 0) {
			snprintf(err, errlen, "TLS needs --cert and --key, or "
			    "a secret (-k) for its PSK");
			goto fail;
		}
		if (tls_set_psk(t, o, err, errlen) != 0)
			goto fail;
		SSL_CTX_set_psk_find_session_callback(t->ctx, tls_psk_find_cb);
		return t;
	}
	if (tls_load_cert(t->ctx, o, err, errlen) != 0)
		goto fail;
	if (o->ca_file != NULL) {
		if (tls_check_file("--client-ca", o->ca_file, err, errlen) != 0)
			goto fail;
		if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file,
		    NULL) != 1 ||
		    (names = SSL_load_client_CA_file(o->ca_file)) == NULL) {
			snprintf(err, errlen, "cannot load --client-ca %.400s: "
			    "%s", o->ca_file, tls_last_error());
			goto fail;
		}
		SSL_CTX_set_client_CA_list(t->ctx, names);
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return t;
fail:
	agg_tls_free(t);
	return NULL;
}

/* Frees a configuration. */
void agg_tls_free(struct agg_tls *tls)
{
	if (tls == NULL)
		return;
	SSL_CTX_free(tls->ctx);
	OPENSSL_cleanse(tls->psk_key, sizeof(tls->psk_key));
	free(tls);
}

/* Whether the configuration uses the external PSK. */
int agg_tls_uses_psk(const struct agg_tls *tls)
{
	return tls->psk;
}

/* Frees a handshake that is over; the bufferevent is someone else's or
 * gone. */
static void tls_handshake_free(struct agg_tls_handshake *h)
{
	event_free(h->timer);
	free(h);
}

/* The handshake failed: closes the connection and says why. */
static void tls_handshake_fail(struct agg_tls_handshake *h, const char *why)
{
	agg_tls_done_cb cb = h->cb;
	void *arg = h->arg;

	/* The alert that tells the peer why. */
	agg_bev_last_flush(h->bev, BEV_FLUSH);
	bufferevent_free(h->bev);
	tls_handshake_free(h);
	cb(NULL, why, arg);
}

/* What an OpenSSL error means here, or NULL to keep looking. */
static const char *tls_error_meaning(const struct agg_tls_handshake *h,
    unsigned long e)
{
	int reason = ERR_GET_REASON(e);

	switch (reason) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
		return h->tls->server ? "the client does not speak TLS "
		    "(plain tcp:// to a TLS port?)" :
		    "the server does not speak TLS";
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return "connection closed during the TLS handshake";
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		return "the peer does not speak TLS 1.3";
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return "the server requires a client certificate";
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return "the client sent no certificate";
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
		if (!h->tls->server && h->tls->psk)
			return "unknown PSK";
		return NULL;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
		if (h->tls->server && h->tls->psk)
			return h->psk_unknown ? "unknown PSK" :
			    "the client offered no PSK";
		return NULL;
	default:
		return NULL;
	}
}

/* Words the failure of a handshake in one line. */
static void tls_describe_failure(struct agg_tls_handshake *h, short what,
    int sock_err, char *out, size_t outlen)
{
	SSL *ssl = bufferevent_openssl_get_ssl(h->bev);
	const char *meaning = NULL, *last = NULL;
	unsigned long e;
	long vr;

	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(out, outlen, "%scertificate verify failed: %s",
		    h->tls->server ? "client " : "",
		    X509_verify_cert_error_string(vr));
		while (bufferevent_get_openssl_error(h->bev) != 0)
			;
		return;
	}
	while ((e = bufferevent_get_openssl_error(h->bev)) != 0) {
		if (meaning == NULL)
			meaning = tls_error_meaning(h, e);
		if (ERR_reason_error_string(e) != NULL)
			last = ERR_reason_error_string(e);
	}
	if (meaning != NULL)
		snprintf(out, outlen, "%s", meaning);
	else if (last != NULL && h->tls->server && strstr(last, " alert "))
		snprintf(out, outlen, "the client ended the handshake: %s",
		    last);
	else if (last != NULL)
		snprintf(out, outlen, "TLS handshake failed: %s", last);
	else if ((what & BEV_EVENT_EOF) || sock_err == 0)
		snprintf(out, outlen, "connection closed during the TLS "
		    "handshake");
	else
		snprintf(out, outlen, "TLS handshake failed: %s",
		    evutil_socket_error_to_string(sock_err));
}

/* The socket below TLS is readable: read more, then let TLS decrypt. */
static void tls_below_read_cb(struct bufferevent *tcp, void *arg)
{
	agg_bev_read_more(tcp, bufferevent_get_input(tcp));
	tls_below_readcb(tcp, arg);
}

/* Puts tls_below_read_cb in front of libevent's read callback of the
 * socket below an open TLS bufferevent. */
static void tls_hook_reads(struct bufferevent *bev)
{
	struct bufferevent *tcp = bufferevent_get_underlying(bev);
	bufferevent_data_cb readcb, writecb;
	bufferevent_event_cb eventcb;
	void *cbarg;

	if (tcp == NULL)
		return;
	bufferevent_getcb(tcp, &readcb, &writecb, &eventcb, &cbarg);
	if (readcb == NULL || readcb == tls_below_read_cb)
		return;
	if (tls_below_readcb == NULL)
		tls_below_readcb = readcb;
	if (readcb != tls_below_readcb)
		return;
	bufferevent_setcb(tcp, tls_below_read_cb, writecb, eventcb, cbarg);
}

/* The handshake finished or failed. */
static void tls_handshake_event_cb(struct bufferevent *bev, short what,
    void *arg)
{
	struct agg_tls_handshake *h = arg;
	int sock_err = EVUTIL_SOCKET_ERROR();
	agg_tls_done_cb cb;
	char why[256];
	void *cb_arg;

	if (what & BEV_EVENT_CONNECTED) {
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		/* A link that ends without close_notify ends all the same. */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
		SSL_set_app_data(bufferevent_openssl_get_ssl(bev), NULL);
		tls_hook_reads(bev);
		cb = h->cb;
		cb_arg = h->arg;
		tls_handshake_free(h);
		cb(bev, NULL, cb_arg);
		return;
	}
	if (!(what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)))
		return;
	tls_describe_failure(h, what, sock_err, why, sizeof(why));
	tls_handshake_fail(h, why);
}

/* The handshake took too long. */
static void tls_handshake_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tls_handshake_fail(arg, "TLS handshake timed out");
}

/* Tells the client's SSL which name or address the certificate needs. */
static int tls_set_peer_name(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	unsigned char addr[16];

	if (host == NULL || host[0] == '\0')
		return 0;
	if (inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ? 0 : -1;
	if (SSL_set_tlsext_host_name(ssl, host) != 1)
		return -1;
	return SSL_set1_host(ssl, host) == 1 ? 0 : -1;
}

/* Starts a handshake on a connected socket bufferevent. */
struct agg_tls_handshake *agg_tls_start(struct event_base *base,
    struct agg_tls *tls, struct bufferevent *tcp, const char *host,
    unsigned timeout_ms, agg_tls_done_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct agg_tls_handshake *h = NULL;
	struct timeval tv;
	SSL *ssl = NULL;

	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->timer = evtimer_new(base, tls_handshake_timer_cb, h)) == NULL ||
	    (ssl = SSL_new(tls->ctx)) == NULL)
		goto fail;
	h->tls = tls;
	h->cb = cb;
	h->arg = arg;
	SSL_set_app_data(ssl, h);
	if (!tls->server && tls_set_peer_name(ssl, host) != 0)
		goto fail;
	/* Records pile up in the socket bufferevent's output and leave in
	 * large writes; reads take whatever the socket holds. Past the
	 * watermark, plaintext waits above TLS, where the link counts it. */
	bufferevent_setcb(tcp, NULL, NULL, NULL, NULL);
	bufferevent_set_max_single_read(tcp, TLS_IO_MAX);
	bufferevent_set_max_single_write(tcp, TLS_IO_MAX);
	bufferevent_setwatermark(tcp, EV_WRITE, 0, TLS_IO_MAX);
	h->bev = bufferevent_openssl_filter_new(base, tcp, ssl, tls->server ?
	    BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (h->bev == NULL)
		goto fail;
	tcp = NULL;
	ssl = NULL;
	bufferevent_setcb(h->bev, NULL, NULL, tls_handshake_event_cb, h);
	bufferevent_enable(h->bev, EV_READ | EV_WRITE);
	tv.tv_sec = (time_t)(timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	return h;
fail:
	snprintf(err, errlen, "cannot start TLS: %s", tls_last_error());
	SSL_free(ssl);
	if (tcp != NULL)
		bufferevent_free(tcp);
	if (h != NULL && h->timer != NULL)
		event_free(h->timer);
	free(h);
	return NULL;
}

/* Abandons a handshake. */
void agg_tls_cancel(struct agg_tls_handshake *h)
{
	if (h == NULL)
		return;
	bufferevent_free(h->bev);
	tls_handshake_free(h);
}
