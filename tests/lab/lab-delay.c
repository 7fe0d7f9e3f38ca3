/*
 * lab-delay.c: the delay line of the link lab (tests/lab/lab.sh). The
 * kernels here have no netem, so the lab puts a third network namespace in
 * the middle of a delayed link and runs this program there: it joins two
 * interfaces at layer 2 with AF_PACKET sockets and holds every frame for a
 * fixed time before passing it on, one FIFO per direction. Each FIFO is
 * bounded in bytes and frames; a frame that does not fit is dropped, as a
 * router with a full queue would. PACKET_VNET_HDR keeps the veths' offloads
 * (GSO frames up to 64 KiB, checksums left to the receiver) intact through
 * the bridge, so no ethtool is needed.
 *
 * Usage: lab-delay IF_A IF_B DELAY_A_TO_B_US DELAY_B_TO_A_US [QUEUE_KIB]
 * Runs until SIGTERM or SIGINT, then prints one line of counters on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "lab-delay"
#define FRAME_MAX (65536 + 1024)
#define BATCH_MAX 64
#define QUEUE_KIB_DEFAULT 8192u
#define QUEUE_FRAMES_MAX 100000u
#define DELAY_US_MAX 10000000ull
#define SOCK_BUF_BYTES (8 * 1024 * 1024)
#define NS_PER_US 1000ull
#define NS_PER_S 1000000000ull

/* One frame waiting in a direction's FIFO, virtio_net_hdr first. */
struct frame {
	struct frame *next;
	uint64_t due_ns;
	size_t len;
	unsigned char data[];
};

/* One direction of the bridge: frames read from in_fd go out of out_fd. */
struct direction {
	const char *from, *to;
	int in_fd, out_fd;
	uint64_t delay_ns;
	struct frame *head, *tail;
	size_t bytes, frames, max_bytes;
	int out_blocked;            /* out_fd said EAGAIN: wait for POLLOUT */
	uint64_t passed, dropped_full, dropped_send, dropped_big;
};

static volatile sig_atomic_t delay_stop;

/* Remembers that a stop signal arrived. */
static void delay_signal_cb(int sig)
{
	(void)sig;
	delay_stop = 1;
}

/* The monotonic clock in nanoseconds. */
static uint64_t delay_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Prints a one-line error and exits with status 1. */
static void delay_die(const char *what, const char *name)
{
	fprintf(stderr, PROGRAM ": %s %s: %s\n", what, name, strerror(errno));
	exit(1);
}

/* Opens a packet socket on interface name, with virtio headers. */
static int delay_open(const char *name)
{
	struct sockaddr_ll sll;
	int fd, one = 1, buf = SOCK_BUF_BYTES;
	unsigned idx = if_nametoindex(name);

	if (idx == 0)
		delay_die("no interface", name);
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    htons(ETH_P_ALL));
	if (fd == -1)
		delay_die("cannot open a packet socket on", name);
	if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)))
		delay_die("no PACKET_VNET_HDR on", name);
#ifdef PACKET_IGNORE_OUTGOING
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
#endif
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)idx;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) == -1)
		delay_die("cannot bind a packet socket to", name);
	return fd;
}

/* Reads what in_fd has (up to a batch) into the FIFO, due after delay. */
static void delay_take(struct direction *d, unsigned char *buf)
{
	struct sockaddr_ll from;
	socklen_t fromlen;
	struct frame *f;
	uint64_t now = delay_now_ns();
	ssize_t n;
	int i;

	for (i = 0; i < BATCH_MAX; i++) {
		fromlen = sizeof(from);
		n = recvfrom(d->in_fd, buf, FRAME_MAX, MSG_TRUNC,
		    (struct sockaddr *)&from, &fromlen);
		if (n < 0)
			return;     /* EAGAIN, or ENETDOWN while a link is down */
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if ((size_t)n > FRAME_MAX) {
			d->dropped_big++;
			continue;
		}
		if (d->bytes + (size_t)n > d->max_bytes ||
		    d->frames >= QUEUE_FRAMES_MAX ||
		    (f = malloc(sizeof(*f) + (size_t)n)) == NULL) {
			d->dropped_full++;
			continue;
		}
		f->next = NULL;
		f->due_ns = now + d->delay_ns;
		f->len = (size_t)n;
		memcpy(f->data, buf, (size_t)n);
		if (d->tail != NULL)
			d->tail->next = f;
		else
			d->head = f;
		d->tail = f;
		d->bytes += f->len;
		d->frames++;
	}
}

/* Sends the frames whose time has come, in order. */
static void delay_give(struct direction *d, uint64_t now)
{
	struct frame *f;

	while ((f = d->head) != NULL && f->due_ns <= now) {
		if (send(d->out_fd, f->data, f->len, MSG_DONTWAIT) < 0) {
			if (errno == EAGAIN || errno == ENOBUFS) {
				d->out_blocked = errno == EAGAIN;
				if (d->out_blocked)
					return;
			}
			d->dropped_send++;  /* link down: the frame is lost */
		} else {
			d->passed++;
		}
		d->head = f->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->bytes -= f->len;
		d->frames--;
		free(f);
	}
}

/* Parses a delay in microseconds, or exits with status 2. */
static uint64_t delay_parse_us(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > DELAY_US_MAX) {
		fprintf(stderr, PROGRAM ": bad delay '%s': expected 0 to %llu "
		    "microseconds\n", s, DELAY_US_MAX);
		exit(2);
	}
	return (uint64_t)v;
}

/* Sets up both directions and forwards until a stop signal. */
int main(int argc, char *argv[])
{
	static unsigned char buf[FRAME_MAX];
	struct direction dir[2];
	struct pollfd pfd[2];
	struct sigaction sa;
	sigset_t block, wait_mask;
	struct timespec ts, *tsp;
	uint64_t now, next, delay_ab, delay_ba;
	size_t queue_kib = QUEUE_KIB_DEFAULT;
	int fa, fb, i;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: " PROGRAM " IF_A IF_B DELAY_A_TO_B_US "
		    "DELAY_B_TO_A_US [QUEUE_KIB]\n");
		return 2;
	}
	if (argc == 6) {
		queue_kib = (size_t)strtoul(argv[5], NULL, 10);
		if (queue_kib == 0 || queue_kib > 1024 * 1024) {
			fprintf(stderr, PROGRAM ": bad QUEUE_KIB '%s'\n",
			    argv[5]);
			return 2;
		}
	}
	delay_ab = delay_parse_us(argv[3]) * NS_PER_US;
	delay_ba = delay_parse_us(argv[4]) * NS_PER_US;
	fa = delay_open(argv[1]);
	fb = delay_open(argv[2]);
	dir[0] = (struct direction){ .from = argv[1], .to = argv[2],
	    .in_fd = fa, .out_fd = fb, .delay_ns = delay_ab,
	    .max_bytes = queue_kib * 1024 };
	dir[1] = (struct direction){ .from = argv[2], .to = argv[1],
	    .in_fd = fb, .out_fd = fa, .delay_ns = delay_ba,
	    .max_bytes = queue_kib * 1024 };
	/* Wake-ups on time: the default 50 us slack would add up. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = delay_signal_cb;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);

	while (!delay_stop) {
		now = delay_now_ns();
		next = UINT64_MAX;
		for (i = 0; i < 2; i++) {
			if (!dir[i].out_blocked)
				delay_give(&dir[i], now);
			if (dir[i].head != NULL && !dir[i].out_blocked &&
			    dir[i].head->due_ns < next)
				next = dir[i].head->due_ns;
		}
		/* pfd[k] is interface k: input of dir[k], output of dir[1-k]. */
		for (i = 0; i < 2; i++) {
			pfd[i].fd = dir[i].in_fd;
			pfd[i].events = POLLIN;
			if (dir[1 - i].out_blocked)
				pfd[i].events |= POLLOUT;
			pfd[i].revents = 0;
		}
		tsp = NULL;
		if (next != UINT64_MAX) {
			now = delay_now_ns();
			next = next > now ? next - now : 0;
			ts.tv_sec = (time_t)(next / NS_PER_S);
			ts.tv_nsec = (long)(next % NS_PER_S);
			tsp = &ts;
		}
		if (ppoll(pfd, 2, tsp, &wait_mask) < 0)
			continue;   /* EINTR: the loop condition looks */
		for (i = 0; i < 2; i++) {
			if (pfd[i].revents & POLLOUT)
				dir[1 - i].out_blocked = 0;
			if (pfd[i].revents & (POLLIN | POLLERR))
				delay_take(&dir[i], buf);
		}
	}
	for (i = 0; i < 2; i++)
		fprintf(stderr, PROGRAM ": %s -> %s: %" PRIu64 " frames passed, "
		    "%" PRIu64 " dropped (queue full), %" PRIu64 " (send "
		    "failed), %" PRIu64 " (too big), %zu still queued\n",
		    dir[i].from, dir[i].to, dir[i].passed, dir[i].dropped_full,
		    dir[i].dropped_send, dir[i].dropped_big, dir[i].frames);
	return 0;
}
