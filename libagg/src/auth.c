/*
 * auth.c: link authentication through OpenSSL's HMAC-SHA256.
 */
#include "auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static const char client_label[] = "agg-link-auth-client-v1";
static const char server_label[] = "agg-link-auth-server-v1";

/* HMAC-SHA256 of the concatenation label || parts; 0 or -1. */
static int auth_hmac(const uint8_t *key, size_t key_len, const char *label,
    const uint8_t *const parts[], const size_t lens[], size_t nparts,
    uint8_t out[AGG_MAC_LEN])
{
	uint8_t msg[256];
	size_t len = strlen(label), i;
	unsigned int out_len = 0;
	static const uint8_t empty_key[1];

	memcpy(msg, label, len);
	for (i = 0; i < nparts; i++) {
		if (len + lens[i] > sizeof(msg))
			return -1;
		memcpy(msg + len, parts[i], lens[i]);
		len += lens[i];
	}
	if (HMAC(EVP_sha256(), key_len ? key : empty_key, (int)key_len, msg,
	    len, out, &out_len) == NULL || out_len != AGG_MAC_LEN)
		return -1;
	return 0;
}

/* Computes the client's AUTH MAC over the transcript. */
int agg_auth_client_mac(const uint8_t *key, size_t key_len,
    const uint8_t hello[AGG_CLIENT_HELLO_LEN],
    const uint8_t shello[AGG_SERVER_HELLO_LEN], uint8_t out[AGG_MAC_LEN])
{
	const uint8_t *parts[] = { hello, shello };
	const size_t lens[] = { AGG_CLIENT_HELLO_LEN, AGG_SERVER_HELLO_LEN };

	return auth_hmac(key, key_len, client_label, parts, lens, 2, out);
}

/* Computes the server's proof over the transcript and its status. */
int agg_auth_server_proof(const uint8_t *key, size_t key_len,
    const uint8_t hello[AGG_CLIENT_HELLO_LEN],
    const uint8_t shello[AGG_SERVER_HELLO_LEN],
    const uint8_t auth[AGG_MAC_LEN], uint8_t status,
    uint8_t out[AGG_MAC_LEN])
{
	const uint8_t *parts[] = { hello, shello, auth, &status };
	const size_t lens[] = { AGG_CLIENT_HELLO_LEN, AGG_SERVER_HELLO_LEN,
	    AGG_MAC_LEN, 1 };

	return auth_hmac(key, key_len, server_label, parts, lens, 4, out);
}

/* Constant-time MAC comparison. */
int agg_auth_equal(const uint8_t a[AGG_MAC_LEN], const uint8_t b[AGG_MAC_LEN])
{
	return CRYPTO_memcmp(a, b, AGG_MAC_LEN) == 0;
}

/* Cryptographically random bytes from OpenSSL. */
int agg_random_bytes(void *buf, size_t len)
{
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}
