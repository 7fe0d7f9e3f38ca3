/*
 * bench-flow.c: data source, sink and stream tester for tests/bench/links.sh.
 * The bytes are a fixed stream: a 1 MiB pseudo-random block repeated, with
 * the byte offset written into the first 8 bytes of every 4 KiB, so the sink
 * checks every byte against its offset at memcmp speed: a lost, repeated,
 * reordered or changed byte shows as the first bad offset.
 *
 *   bench-flow serve PORT send SECONDS   each connection gets the stream
 *                                        for SECONDS, then EOF (one child
 *                                        process per connection)
 *   bench-flow serve PORT echo           echoes every connection (one
 *                                        process, poll, many connections)
 *   bench-flow fetch [-s SOCKSPORT] [-p FILE] [-t SECONDS] HOST PORT
 *                                        reads the stream until EOF, checks
 *                                        it; -p writes "ms bytes" every
 *                                        100 ms; -s goes through SOCKS5 on
 *                                        127.0.0.1:SOCKSPORT. steady_mbit
 *                                        leaves out the first second
 *                                        (slow start)
 *   bench-flow open [-s SOCKSPORT] HOST PORT COUNT
 *                                        COUNT times: open a stream, send a
 *                                        byte, wait for its echo; prints the
 *                                        median open and echo times
 *   bench-flow streams -s SOCKSPORT [-w FILE] HOST PORT COUNT
 *                                        opens COUNT echo streams at once,
 *                                        prints "opened", waits for FILE to
 *                                        exist, then sends 1 KiB on each and
 *                                        checks every echo
 * With BENCH_CC=NAME in the environment every socket gets that TCP
 * congestion control (TCP_CONGESTION; for MPTCP sockets under mptcpize,
 * every subflow), since a namespace's default can only be set to the
 * kernel's allowed ones.
 * Results are printed as one line of key=value pairs. Exit 0 when the data
 * was right, 1 otherwise, 2 for usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "bench-flow"
#define CHUNK (256 * 1024)
#define BLOCK (1024 * 1024)
#define STAMP 4096
#define ECHO_BUF 4096
#define ECHO_MAX_CONNS 19000
#define STREAM_BYTES 1024
#define PROGRESS_MS 100
#define WARM_S 1.0
#define OPEN_MAX 10000
#define WAIT_FILE_S 60
#define IO_TIMEOUT_MS 30000

/* Word i of the random block. */
static uint64_t flow_word(uint64_t i)
{
	uint64_t z = i + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The random block, repeated, followed by CHUNK more of it so that any
 * CHUNK bytes from any offset are one memcpy. */
static unsigned char flow_block[BLOCK + CHUNK];

/* Makes the random block. */
static void flow_init(void)
{
	uint64_t w;
	size_t i;

	for (i = 0; i < BLOCK; i += 8) {
		w = flow_word(i / 8);
		memcpy(flow_block + i, &w, 8);
	}
	memcpy(flow_block + BLOCK, flow_block, CHUNK);
}

/* Fills buf with the len (<= CHUNK) bytes of the stream that start at
 * offset off: the random block, with the offset of every STAMP-aligned
 * position written over its first 8 bytes (little-endian). */
static void flow_fill(unsigned char *buf, uint64_t off, size_t len)
{
	uint64_t p, k, end = off + len;

	memcpy(buf, flow_block + off % BLOCK, len);
	for (p = off / STAMP * STAMP; p < end; p += STAMP)
		for (k = p > off ? p : off; k < p + 8 && k < end; k++)
			buf[k - off] = (unsigned char)(p >> (8 * (k - p)));
}

/* Seconds on the monotonic clock. */
static double flow_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints a usage error and exits with status 2. */
static void flow_usage(void)
{
	fprintf(stderr, "usage: " PROGRAM " serve PORT send SECONDS | serve "
	    "PORT echo | fetch [-s SOCKSPORT] [-p FILE] [-t SECONDS] HOST PORT"
	    " | open [-s SOCKSPORT] HOST PORT COUNT | streams -s SOCKSPORT "
	    "[-w FILE] HOST PORT COUNT\n");
	exit(2);
}

/* Prints a one-line error with errno's text and exits with status 1. */
static void flow_die(const char *what)
{
	fprintf(stderr, PROGRAM ": %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Reads exactly len bytes (blocking); -1 on EOF or error. */
static int flow_read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* Writes all of buf (blocking); -1 on error. */
static int flow_write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(fd, (const char *)buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Sets the congestion control named by BENCH_CC, if any, on fd. */
static void flow_cc(int fd)
{
	const char *cc = getenv("BENCH_CC");

	if (cc != NULL && cc[0] != '\0' && setsockopt(fd, IPPROTO_TCP,
	    TCP_CONGESTION, cc, (socklen_t)strlen(cc)) == -1)
		flow_die("BENCH_CC");
}

/* Connects to host:port (numeric or a name), blocking; -1 on failure. */
static int flow_connect(const char *host, const char *port)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		flow_cc(fd);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* SOCKS5 without authentication: CONNECT host:port over fd; 0 when the
 * proxy says yes. The greeting and the request go out together. */
static int flow_socks(int fd, const char *host, const char *port)
{
	unsigned char req[3 + 7 + 255], rep[262];
	size_t hl = strlen(host), n = 0;
	unsigned p = (unsigned)atoi(port);

	if (hl > 255)
		return -1;
	req[n++] = 5; req[n++] = 1; req[n++] = 0;
	req[n++] = 5; req[n++] = 1; req[n++] = 0; req[n++] = 3;
	req[n++] = (unsigned char)hl;
	memcpy(req + n, host, hl);
	n += hl;
	req[n++] = (unsigned char)(p >> 8);
	req[n++] = (unsigned char)p;
	if (flow_write_all(fd, req, n) != 0)
		return -1;
	if (flow_read_all(fd, rep, 2) != 0 || rep[0] != 5 || rep[1] != 0)
		return -1;
	if (flow_read_all(fd, rep, 4) != 0 || rep[1] != 0)
		return -1;
	if (rep[3] == 1)
		n = 4 + 2;
	else if (rep[3] == 4)
		n = 16 + 2;
	else
		return -1;
	return flow_read_all(fd, rep, n);
}

/* Opens a stream to host:port, through SOCKS on 127.0.0.1:socks if given. */
static int flow_open(const char *socks, const char *host, const char *port)
{
	int fd;

	if (socks == NULL)
		return flow_connect(host, port);
	if ((fd = flow_connect("127.0.0.1", socks)) == -1)
		return -1;
	if (flow_socks(fd, host, port) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A listening TCP socket on every IPv4 address, port port. */
static int flow_listen(const char *port)
{
	struct sockaddr_in sin;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		flow_die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	flow_cc(fd);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)atoi(port));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		flow_die("bind");
	if (listen(fd, 4096) == -1)
		flow_die("listen");
	return fd;
}

/* Sends the stream on fd for seconds, then closes it. */
static void flow_send(int fd, double seconds)
{
	static unsigned char buf[CHUNK];
	uint64_t off = 0;
	double end = flow_now() + seconds;
	ssize_t n;

	while (flow_now() < end) {
		flow_fill(buf, off, CHUNK);
		n = write(fd, buf, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* The unwritten tail is generated again from its offset. */
		off += (uint64_t)n;
	}
	shutdown(fd, SHUT_WR);
	/* Wait for the reader's EOF so that nothing is cut off by a reset. */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

/* Echoes every connection of listener lfd, forever. */
static void flow_echo(int lfd)
{
	static struct pollfd pfd[ECHO_MAX_CONNS + 1];
	static unsigned char buf[ECHO_BUF];
	size_t n = 1, i;
	ssize_t r;
	int fd;

	pfd[0].fd = lfd;
	pfd[0].events = POLLIN;
	for (;;) {
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			flow_die("poll");
		}
		for (i = n; i-- > 1;) {
			if (pfd[i].revents == 0)
				continue;
			r = read(pfd[i].fd, buf, sizeof(buf));
			if (r > 0 && flow_write_all(pfd[i].fd, buf, (size_t)r)
			    == 0)
				continue;
			close(pfd[i].fd);
			pfd[i] = pfd[--n];
		}
		if ((pfd[0].revents & POLLIN) && n <= ECHO_MAX_CONNS &&
		    (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) != -1) {
			pfd[n].fd = fd;
			pfd[n].events = POLLIN;
			pfd[n].revents = 0;
			n++;
		}
	}
}

/* serve PORT send SECONDS | serve PORT echo */
static int flow_serve(int argc, char *argv[])
{
	int lfd, fd;

	if (argc < 2)
		flow_usage();
	lfd = flow_listen(argv[0]);
	if (strcmp(argv[1], "echo") == 0)
		flow_echo(lfd);
	if (strcmp(argv[1], "send") != 0 || argc != 3)
		flow_usage();
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			flow_die("accept");
		}
		if (fork() == 0) {
			close(lfd);
			flow_cc(fd);
			flow_send(fd, atof(argv[2]));
			_exit(0);
		}
		close(fd);
	}
}

/* fetch [-s SOCKSPORT] [-p FILE] [-t SECONDS] HOST PORT */
static int flow_fetch(int argc, char *argv[])
{
	static unsigned char buf[CHUNK], want[CHUNK];
	const char *socks = NULL, *progress = NULL;
	double limit = 600, start, now, next_mark, last_byte, warm_t = 0;
	uint64_t off = 0, warm_off = 0;
	int64_t bad = -1;
	FILE *pf = NULL;
	ssize_t n;
	int fd, ch;
	size_t i;

	optind = 0;
	while ((ch = getopt(argc, argv, "+s:p:t:")) != -1) {
		if (ch == 's')
			socks = optarg;
		else if (ch == 'p')
			progress = optarg;
		else if (ch == 't')
			limit = atof(optarg);
		else
			flow_usage();
	}
	if (argc - optind != 2)
		flow_usage();
	if (progress != NULL && (pf = fopen(progress, "w")) == NULL)
		flow_die(progress);
	start = flow_now();
	if ((fd = flow_open(socks, argv[optind], argv[optind + 1])) == -1) {
		fprintf(stderr, PROGRAM ": cannot open a stream to %s:%s\n",
		    argv[optind], argv[optind + 1]);
		return 1;
	}
	{
		struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	start = last_byte = flow_now();
	next_mark = start + PROGRESS_MS / 1000.0;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		now = flow_now();
		if (pf != NULL)
			for (; now >= next_mark; next_mark += PROGRESS_MS /
			    1000.0)
				fprintf(pf, "%.0f %" PRIu64 "\n",
				    (next_mark - start) * 1000, off);
		if (now - start > limit)
			break;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		last_byte = now;
		if (warm_t == 0 && now - start >= WARM_S) {
			warm_t = now;
			warm_off = off;
		}
		if (bad < 0) {
			flow_fill(want, off, (size_t)n);
			if (memcmp(want, buf, (size_t)n) != 0) {
				for (i = 0; want[i] == buf[i]; i++)
					;
				bad = (int64_t)(off + i);
			}
		}
		off += (uint64_t)n;
	}
	if (pf != NULL)
		fclose(pf);
	close(fd);
	printf("bytes=%" PRIu64 " seconds=%.3f mbit=%.1f steady_mbit=%.1f "
	    "bad_offset=%" PRId64 " eof=%d\n", off, last_byte - start,
	    last_byte > start ? (double)off * 8 / 1e6 / (last_byte - start) :
	    0.0, last_byte > warm_t && warm_t > 0 ? (double)(off - warm_off) *
	    8 / 1e6 / (last_byte - warm_t) : 0.0, bad, n == 0);
	return bad < 0 && n == 0 && off > 0 ? 0 : 1;
}

/* Sorts doubles, for medians. */
static int flow_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* open [-s SOCKSPORT] HOST PORT COUNT */
static int flow_open_times(int argc, char *argv[])
{
	static double t_open[OPEN_MAX], t_echo[OPEN_MAX];
	const char *socks = NULL;
	unsigned char b = 0x5a, r;
	double t0;
	int ch, count, i, fd;

	optind = 0;
	while ((ch = getopt(argc, argv, "+s:")) != -1) {
		if (ch != 's')
			flow_usage();
		socks = optarg;
	}
	if (argc - optind != 3)
		flow_usage();
	count = atoi(argv[optind + 2]);
	if (count < 1 || count > OPEN_MAX)
		flow_usage();
	for (i = 0; i < count; i++) {
		t0 = flow_now();
		fd = flow_open(socks, argv[optind], argv[optind + 1]);
		if (fd == -1) {
			fprintf(stderr, PROGRAM ": open %d failed\n", i);
			return 1;
		}
		t_open[i] = (flow_now() - t0) * 1000;
		if (flow_write_all(fd, &b, 1) != 0 ||
		    flow_read_all(fd, &r, 1) != 0 || r != b) {
			fprintf(stderr, PROGRAM ": no echo on stream %d\n", i);
			return 1;
		}
		t_echo[i] = (flow_now() - t0) * 1000;
		close(fd);
		usleep(20000);
	}
	qsort(t_open, (size_t)count, sizeof(double), flow_cmp);
	qsort(t_echo, (size_t)count, sizeof(double), flow_cmp);
	printf("count=%d open_ms_median=%.2f open_ms_min=%.2f "
	    "echo_ms_median=%.2f echo_ms_min=%.2f\n", count,
	    t_open[count / 2], t_open[0], t_echo[count / 2], t_echo[0]);
	return 0;
}

/* streams -s SOCKSPORT [-w FILE] HOST PORT COUNT */
static int flow_streams(int argc, char *argv[])
{
	static int fds[OPEN_MAX];
	unsigned char out[STREAM_BYTES], in[STREAM_BYTES];
	const char *socks = NULL, *wait_file = NULL;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000, .tv_usec = 0 };
	struct stat st;
	int ch, count, i, good = 0;

	optind = 0;
	while ((ch = getopt(argc, argv, "+s:w:")) != -1) {
		if (ch == 's')
			socks = optarg;
		else if (ch == 'w')
			wait_file = optarg;
		else
			flow_usage();
	}
	if (socks == NULL || argc - optind != 3)
		flow_usage();
	count = atoi(argv[optind + 2]);
	if (count < 1 || count > OPEN_MAX)
		flow_usage();
	for (i = 0; i < count; i++) {
		fds[i] = flow_open(socks, argv[optind], argv[optind + 1]);
		if (fds[i] == -1) {
			fprintf(stderr, PROGRAM ": stream %d did not open\n",
			    i);
			return 1;
		}
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	printf("opened=%d\n", count);
	fflush(stdout);
	for (i = 0; wait_file != NULL && i < WAIT_FILE_S * 10 &&
	    stat(wait_file, &st) != 0; i++)
		usleep(100000);
	/* All streams carry their own 1 KiB at once, then all are read. */
	for (i = 0; i < count; i++) {
		flow_fill(out, (uint64_t)i * STREAM_BYTES, STREAM_BYTES);
		if (flow_write_all(fds[i], out, STREAM_BYTES) != 0)
			fprintf(stderr, PROGRAM ": write on %d failed\n", i);
	}
	for (i = 0; i < count; i++) {
		flow_fill(out, (uint64_t)i * STREAM_BYTES, STREAM_BYTES);
		if (flow_read_all(fds[i], in, STREAM_BYTES) == 0 &&
		    memcmp(in, out, STREAM_BYTES) == 0)
			good++;
	}
	printf("streams=%d correct=%d\n", count, good);
	fflush(stdout);
	for (i = 0; wait_file != NULL && i < WAIT_FILE_S * 10 &&
	    stat(wait_file, &st) == 0; i++)
		usleep(100000);
	for (i = 0; i < count; i++)
		close(fds[i]);
	return good == count ? 0 : 1;
}

/* Dispatches to the mode named by the first argument. */
int main(int argc, char *argv[])
{
	signal(SIGPIPE, SIG_IGN);
	flow_init();
	if (argc < 2)
		flow_usage();
	if (strcmp(argv[1], "serve") == 0)
		return flow_serve(argc - 2, argv + 2);
	if (strcmp(argv[1], "fetch") == 0)
		return flow_fetch(argc - 1, argv + 1);
	if (strcmp(argv[1], "open") == 0)
		return flow_open_times(argc - 1, argv + 1);
	if (strcmp(argv[1], "streams") == 0)
		return flow_streams(argc - 1, argv + 1);
	flow_usage();
	return 2;
}
