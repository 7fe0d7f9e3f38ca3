/*
 * alloc.c: allocator settings for a process that moves bulk data.
 */
#include "agg/session.h"

#include <malloc.h>

/* Keeps freed buffers in the heap. Every stream byte passes through a
 * 64 KiB evbuffer chain that is freed once written; with glibc's defaults
 * the heap top is returned to the kernel after each burst and faulted back
 * in, 4 KiB at a time, for the next one (a quarter of the relay's CPU time
 * in a loopback profile). */
void agg_tune_allocator(void)
{
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
}
