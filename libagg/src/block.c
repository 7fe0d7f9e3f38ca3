/*
 * block.c: one arena of 256 KiB blocks per process, socket reads into them,
 * and evbuffer moves that share them (see block.h).
 *
 * The arena is one reservation of address space; a block's pages are
 * touched only when a read first lands in it, and a freed block goes back
 * on a LIFO list so the next read reuses warm memory. A block is found
 * from any pointer into it by a range check, so a split needs no lookup
 * table. Reads fill the current block from where the last one stopped:
 * small reads (acks, idle streams) are copied out, so they reuse the same
 * few bytes of it.
 */
#include "block.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#define BLOCK_SIZE AGG_BLOCK_SIZE
#define BLOCK_COUNT 4096u              /* 1 GiB of address space */
#define BLOCK_MIN_ROOM (64u * 1024u)   /* less left: start a new block */
#define BLOCK_SMALL_READ 4096u         /* reads below this are copied */
#define BLOCK_NONE UINT32_MAX

static struct {
	uint8_t *base;          /* NULL before first use */
	bool failed;            /* no arena: callers read the old way */
	uint32_t refs[BLOCK_COUNT];
	uint32_t free_list[BLOCK_COUNT];
	uint32_t n_free;
	uint32_t next_fresh;    /* blocks from here on were never used */
	uint32_t limit;         /* blocks that may be used */
	uint32_t cur;           /* block reads go to, or BLOCK_NONE */
	size_t fill;            /* bytes of cur already handed out */
	size_t in_use;
} arena = { .cur = BLOCK_NONE, .limit = BLOCK_COUNT };

/* Reserves the arena's address space on first use. */
static bool block_arena_ready(void)
{
	void *p;

	if (arena.base != NULL)
		return true;
	if (arena.failed)
		return false;
	p = mmap(NULL, (size_t)BLOCK_SIZE * BLOCK_COUNT, PROT_READ |
	    PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		arena.failed = true;
		return false;
	}
	arena.base = p;
	return true;
}

/* The block holding p, or BLOCK_NONE when p is not in the arena. */
static uint32_t block_of(const void *p)
{
	const uint8_t *q = p;

	if (arena.base == NULL || q < arena.base ||
	    q >= arena.base + (size_t)BLOCK_SIZE * BLOCK_COUNT)
		return BLOCK_NONE;
	return (uint32_t)((size_t)(q - arena.base) / BLOCK_SIZE);
}

/* Takes a free block with one reference, or BLOCK_NONE. */
static uint32_t block_get(void)
{
	uint32_t b;

	if (arena.n_free > 0)
		b = arena.free_list[--arena.n_free];
	else if (arena.next_fresh < arena.limit)
		b = arena.next_fresh++;
	else
		return BLOCK_NONE;
	arena.refs[b] = 1;
	arena.in_use++;
	return b;
}

/* Drops one reference; the last one frees the block. */
static void block_unref(uint32_t b)
{
	if (--arena.refs[b] > 0)
		return;
	arena.free_list[arena.n_free++] = b;
	arena.in_use--;
}

/* evbuffer cleanup: a chain that referenced block memory is gone. */
static void block_chain_free_cb(const void *data, size_t len, void *extra)
{
	(void)len;
	(void)extra;
	block_unref(block_of(data));
}

/* Appends len bytes at p (inside block b) to dst as a shared reference. */
static void block_add_reference(struct evbuffer *dst, uint32_t b,
    const void *p, size_t len)
{
	arena.refs[b]++;
	if (evbuffer_add_reference(dst, p, len, block_chain_free_cb,
	    NULL) != 0) {
		/* No memory for a chain: libevent does not call the cleanup. */
		arena.refs[b]--;
		evbuffer_add(dst, p, len);
	}
}

/* Reads into the current block (a fresh one when little room is left). */
ssize_t agg_block_read(int fd, struct evbuffer *dst, size_t *room)
{
	uint8_t *p;
	ssize_t got;

	*room = 0;
	if (!block_arena_ready())
		return -2;
	if (arena.cur != BLOCK_NONE && BLOCK_SIZE - arena.fill <
	    BLOCK_MIN_ROOM) {
		uint32_t old = arena.cur;

		arena.cur = BLOCK_NONE;
		block_unref(old);
	}
	if (arena.cur == BLOCK_NONE) {
		if ((arena.cur = block_get()) == BLOCK_NONE)
			return -2;
		arena.fill = 0;
	}
	p = arena.base + (size_t)arena.cur * BLOCK_SIZE + arena.fill;
	*room = BLOCK_SIZE - arena.fill;
	/* MSG_DONTWAIT: a local socket may have been left blocking. */
	got = recv(fd, p, *room, MSG_DONTWAIT);
	if (got >= (ssize_t)BLOCK_SMALL_READ) {
		block_add_reference(dst, arena.cur, p, (size_t)got);
		arena.fill += (size_t)got;
	} else if (got > 0) {
		/* A small read (an ack, an idle stream's few bytes) is copied
		 * and its room read into again: a thousand streams' small
		 * messages then touch one page, not a thousand. */
		evbuffer_add(dst, p, (size_t)got);
	}
	return got;
}

/* Moves len bytes from src to dst, sharing block memory where it splits. */
void agg_block_move(struct evbuffer *src, struct evbuffer *dst, size_t len)
{
	struct evbuffer_iovec v;
	uint32_t b;

	while (len > 0) {
		if (evbuffer_peek(src, -1, NULL, &v, 1) < 1 ||
		    v.iov_len == 0) {
			evbuffer_remove_buffer(src, dst, len);
			return;
		}
		if (v.iov_len <= len) {
			/* A whole chain moves without a copy. */
			evbuffer_remove_buffer(src, dst, v.iov_len);
			len -= v.iov_len;
			continue;
		}
		if ((b = block_of(v.iov_base)) == BLOCK_NONE) {
			evbuffer_remove_buffer(src, dst, len);
			return;
		}
		block_add_reference(dst, b, v.iov_base, len);
		evbuffer_drain(src, len);
		return;
	}
}

/* Blocks with live references, the one being filled included. */
size_t agg_block_in_use(void)
{
	return arena.in_use;
}

/* Caps the blocks in use, so tests reach the arena's end. */
void agg_block_set_limit(size_t blocks)
{
	arena.limit = blocks < BLOCK_COUNT ? (uint32_t)blocks : BLOCK_COUNT;
}
