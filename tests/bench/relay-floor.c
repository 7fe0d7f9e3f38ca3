/*
 * relay-floor.c: the cheapest relay a pair can be, for scenario 7 of
 * tests/bench/links.sh: what any relay pair costs on this machine before
 * doing any work of its own (no framing, no event loop, no retained
 * bytes). One connection, one direction: it accepts on LISTEN_PORT,
 * connects to 127.0.0.1:CONNECT_PORT and moves what that connection sends
 * to the accepted one until EOF, with blocking calls.
 *
 *   relay-floor copy PORT TARGET_PORT    read() and write() of 256 KiB
 *   relay-floor splice PORT TARGET_PORT  splice() through a pipe: the
 *                                        bytes never enter user space
 *
 * Prints "bytes=N" on standard error at the end. Exit 0 on a clean EOF,
 * 1 on an I/O error, 2 for usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROGRAM "relay-floor"
#define CHUNK (256 * 1024)
#define PIPE_SIZE (1024 * 1024)

/* Parses a TCP port or exits with a usage error. */
static uint16_t parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535) {
		fprintf(stderr, "%s: bad port '%s'\n", PROGRAM, s);
		exit(2);
	}
	return (uint16_t)v;
}

/* A loopback address for port. */
static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* Accepts one connection on port, then connects to target: *in is the
 * target's side (the bytes come from there), *out the accepted one. */
static void open_pair(uint16_t port, uint16_t target, int *in, int *out)
{
	struct sockaddr_in a = loopback(port);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0 || bind(l, (struct sockaddr *)&a,
	    sizeof(a)) != 0 || listen(l, 1) != 0) {
		fprintf(stderr, "%s: cannot listen on %u: %s\n", PROGRAM,
		    (unsigned)port, strerror(errno));
		exit(1);
	}
	if ((*out = accept(l, NULL, NULL)) < 0) {
		fprintf(stderr, "%s: accept: %s\n", PROGRAM, strerror(errno));
		exit(1);
	}
	close(l);
	a = loopback(target);
	if ((*in = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(*in, (struct sockaddr *)&a, sizeof(a)) != 0) {
		fprintf(stderr, "%s: cannot reach 127.0.0.1:%u: %s\n", PROGRAM,
		    (unsigned)target, strerror(errno));
		exit(1);
	}
}

/* Moves bytes with read() and write(); returns the count or -1. */
static long long relay_copy(int in, int out)
{
	static char buf[CHUNK];
	long long total = 0;
	ssize_t n, m;
	size_t off;

	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (off = 0; off < (size_t)n; off += (size_t)m)
			if ((m = write(out, buf + off, (size_t)n - off)) <= 0)
				return -1;
		total += n;
	}
	return n == 0 ? total : -1;
}

/* Moves bytes with splice() through a pipe; returns the count or -1. */
static long long relay_splice(int in, int out)
{
	long long total = 0;
	ssize_t n, m;
	int p[2];

	if (pipe(p) != 0)
		return -1;
	(void)fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
	while ((n = splice(in, NULL, p[1], NULL, PIPE_SIZE,
	    SPLICE_F_MOVE)) > 0) {
		for (; n > 0; n -= m) {
			m = splice(p[0], NULL, out, NULL, (size_t)n,
			    SPLICE_F_MOVE);
			if (m <= 0)
				return -1;
			total += m;
		}
	}
	return n == 0 ? total : -1;
}

int main(int argc, char **argv)
{
	long long total;
	int in, out;

	if (argc != 4 || (strcmp(argv[1], "copy") != 0 &&
	    strcmp(argv[1], "splice") != 0)) {
		fprintf(stderr, "usage: %s copy|splice PORT TARGET_PORT\n",
		    PROGRAM);
		return 2;
	}
	open_pair(parse_port(argv[2]), parse_port(argv[3]), &in, &out);
	total = strcmp(argv[1], "copy") == 0 ? relay_copy(in, out) :
	    relay_splice(in, out);
	if (total < 0) {
		fprintf(stderr, "%s: relay failed: %s\n", PROGRAM,
		    strerror(errno));
		return 1;
	}
	fprintf(stderr, "bytes=%lld\n", total);
	return 0;
}
