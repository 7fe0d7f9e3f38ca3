/*
 * key.c: reading the shared secret file.
 */
#include "agg/key.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Reads the first line of path as the secret. */
int agg_key_load(const char *path, uint8_t *key, size_t *key_len, char *err,
    size_t errlen)
{
	char line[AGG_SECRET_MAX + 2];
	size_t len;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot read secret file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	len = strcspn(line, "\r\n");
	if (len == 0) {
		snprintf(err, errlen, "secret file %s is empty", path);
		return -1;
	}
	if (len > AGG_SECRET_MAX) {
		snprintf(err, errlen, "secret in %s is longer than %d bytes",
		    path, AGG_SECRET_MAX);
		return -1;
	}
	memcpy(key, line, len);
	*key_len = len;
	return 0;
}
