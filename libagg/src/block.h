/*
 * block.h: socket reads into shared blocks, and evbuffer moves that share
 * those blocks instead of copying. Nothing outside libagg includes this.
 *
 * Bulk bytes are read once into a block and then only referenced: a DATA
 * payload cut from the middle of a link read, a segment cut from a local
 * read, a stream's reorder piece. libevent 2.1's evbuffer_remove_buffer()
 * copies whenever it splits a chain; agg_block_move() splits a block chain
 * by adding a second reference to the same memory.
 */
#ifndef AGG_BLOCK_H
#define AGG_BLOCK_H

#include <stddef.h>
#include <sys/types.h>

struct evbuffer;

/* Reads up to one block's room from fd (nonblocking) and appends it to dst
 * as a reference; *room is what was offered (a shorter read drained the
 * socket). Returns the bytes read, 0 at EOF, -1 with errno (EAGAIN when
 * nothing was waiting), or -2 when no block was free (the caller reads
 * another way). */
ssize_t agg_block_read(int fd, struct evbuffer *dst, size_t *room);

/* Moves len bytes (at most what src holds) from src's front to dst's end:
 * whole chains move, a block chain that must be split is shared, any
 * other chain that must be split is copied. */
void agg_block_move(struct evbuffer *src, struct evbuffer *dst, size_t len);

/* Blocks now holding bytes somebody references, the one reads are
 * filling included. */
size_t agg_block_in_use(void);
/* Caps the blocks that may ever be in use (tests reach the arena's end). */
void agg_block_set_limit(size_t blocks);
/* Bytes in one block. */
#define AGG_BLOCK_SIZE (256u * 1024u)

#endif
