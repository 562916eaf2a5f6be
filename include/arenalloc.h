/* arenalloc.h: arenalloc's own functions, for C and C++ programs that run
 * under the preload library (LD_PRELOAD=libarenalloc.so) or link it.
 *
 * The standard allocation API (malloc, free, calloc, realloc, aligned_alloc,
 * posix_memalign, malloc_usable_size, ...), glibc's (__libc_malloc, ...,
 * mallinfo2, malloc_trim, mallopt, malloc_stats, malloc_info), C23's
 * free_sized and free_aligned_sized, and C++'s operator new and delete
 * (sized, aligned and nothrow forms) are exported too, under their usual
 * names and declared by the usual headers (<stdlib.h>, <malloc.h>, <new>);
 * on a C library whose <stdlib.h> predates C23, declare the sized frees
 * yourself:
 *
 *     void free_sized(void *ptr, size_t size);
 *     void free_aligned_sized(void *ptr, size_t alignment, size_t size);
 *
 * Hardened (ARENALLOC_HARDENED=1) and in stress mode (ARENALLOC_STRESS),
 * free_sized, free_aligned_sized and the sized operator delete abort with
 * "arenalloc: free of 0x... with size N, block holds M" when the size
 * cannot be the block's (more than its usable bytes; in stress mode, not
 * its request). A failed operator new with no new-handler throws
 * std::bad_alloc through libstdc++; without it, it aborts with one line.
 *
 * Every function here may be called from any thread (a write callback
 * included: the text is complete before the first call) and takes the
 * heap's locks one arena at a time, so its figures are exact only when no
 * other thread allocates or frees meanwhile.
 */
#ifndef ARENALLOC_H
#define ARENALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Receives output: NUL-terminated text, one call per line (each line
 * ending in '\n'). May call malloc and free. */
typedef void (*arenalloc_write_cb)(void *opaque, const char *text);

/* Walks every invariant of the heap (block tiling, free lists, headers,
 * caches, queues, counters, large runs). Returns 0 when all hold; else 1,
 * after one line on stderr naming the arena, address and invariant. */
int arenalloc_check(void);

/* Writes the statistics table the library prints at exit with
 * ARENALLOC_STATS (allocations, frees, remote frees, live blocks and bytes,
 * arenas, pool, caches, stress reports), then one line per arena. A NULL
 * write_cb writes to stderr. (jemalloc's malloc_stats_print.) */
void arenalloc_stats_print(arenalloc_write_cb write_cb, void *opaque);

/* Writes a map of the heap: each arena's chunks and blocks (address,
 * state, size; runs of equal blocks folded), then the large allocations.
 * A NULL write_cb writes to stderr. Returns 0, or -1 if it failed. */
int arenalloc_dump(arenalloc_write_cb write_cb, void *opaque);

/* Writes the blocks still allocated, grouped by size and allocating thread
 * (threads and allocation numbers are recorded in stress mode), largest
 * groups first. A NULL write_cb writes to stderr. Returns the number of
 * blocks reported. */
size_t arenalloc_leak_report(arenalloc_write_cb write_cb, void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* ARENALLOC_H */
