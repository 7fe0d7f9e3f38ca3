/*
 * agg/key.h: the shared secret, read from a file of one line.
 */
#ifndef AGG_KEY_H
#define AGG_KEY_H

#include <stddef.h>
#include <stdint.h>

#define AGG_SECRET_MAX 1024

/* Reads the secret file: its first line without the line end, which must
 * not be empty. Returns 0, or -1 with a one-line reason in err. */
int agg_key_load(const char *path, uint8_t *key, size_t *key_len, char *err,
    size_t errlen);

#endif
