/*
 * auth.h: link authentication (HMAC-SHA256 over the handshake transcript)
 * and random numbers, through OpenSSL.
 */
#ifndef AGG_AUTH_H
#define AGG_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Computes AUTH = HMAC(key, "agg-link-auth-client-v1" || hello || shello). */
int agg_auth_client_mac(const uint8_t *key, size_t key_len,
    const uint8_t hello[AGG_CLIENT_HELLO_LEN],
    const uint8_t shello[AGG_SERVER_HELLO_LEN], uint8_t out[AGG_MAC_LEN]);
/* Computes the server proof = HMAC(key, "agg-link-auth-server-v1" || hello
 * || shello || auth || status). */
int agg_auth_server_proof(const uint8_t *key, size_t key_len,
    const uint8_t hello[AGG_CLIENT_HELLO_LEN],
    const uint8_t shello[AGG_SERVER_HELLO_LEN],
    const uint8_t auth[AGG_MAC_LEN], uint8_t status,
    uint8_t out[AGG_MAC_LEN]);
/* Compares two MACs in constant time; 1 if equal. */
int agg_auth_equal(const uint8_t a[AGG_MAC_LEN], const uint8_t b[AGG_MAC_LEN]);
/* Fills buf with len cryptographically random bytes; 0 or -1. */
int agg_random_bytes(void *buf, size_t len);

#endif
