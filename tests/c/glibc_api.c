/* Edge cases of the C allocation API under arenalloc's LD_PRELOAD library
 * (tests/preload/hardening.rs, issue 9 item 7).
 *
 *   glibc_api usable-size    malloc_usable_size answers only for block
 *                            starts: the size for a live block's start,
 *                            0 for NULL, interior pointers (arena blocks
 *                            and large runs), the header, freed blocks and
 *                            pointers outside the heap.
 *   glibc_api aligned-alloc  aligned_alloc(0 or 3, n) is NULL with EINVAL
 *                            (C17, glibc >= 2.38); any power of two works.
 *
 * Prints "ok <case>" on success; exits 1 with a message otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)

static void usable_size(void) {
    unsigned char *p = malloc(100);
    unsigned char *big = malloc(3 << 20);
    CHECK(p && big, "malloc");
    size_t n = malloc_usable_size(p);
    CHECK(n >= 100, "malloc_usable_size(p) = %zu", n);
    /* Interior pointers, at and past a granule, and inside the header. */
    size_t interior[] = { 1, 15, 16, 48, 64, n - 1 };
    for (size_t i = 0; i < sizeof interior / sizeof *interior; i++)
        CHECK(malloc_usable_size(p + interior[i]) == 0, "malloc_usable_size(p + %zu) = %zu",
              interior[i], malloc_usable_size(p + interior[i]));
    CHECK(malloc_usable_size(p - 16) == 0, "malloc_usable_size of the header");
    CHECK(malloc_usable_size(big) >= 3 << 20, "malloc_usable_size(big) = %zu", malloc_usable_size(big));
    CHECK(malloc_usable_size(big + 48) == 0, "malloc_usable_size(big + 48)");
    CHECK(malloc_usable_size(big + (2 << 20)) == 0, "malloc_usable_size(big + 2 MiB)");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
    int local;
    CHECK(malloc_usable_size(&local) == 0, "malloc_usable_size(stack)");
    /* A block the next malloc(100) cannot reuse, so it stays freed. */
    unsigned char *freed = malloc(200);
    unsigned char *guard = malloc(16);
    free(freed);
    CHECK(malloc_usable_size(freed) == 0, "malloc_usable_size(freed) = %zu", malloc_usable_size(freed));
    free(guard);
    free(big);
    free(p);
}

static void aligned_alloc_rejects(size_t align) {
    errno = 0;
    void *p = aligned_alloc(align, 64);
    CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu, 64) = %p, errno %d", align, p, errno);
}

static void aligned(void) {
    aligned_alloc_rejects(0);
    aligned_alloc_rejects(3);
    aligned_alloc_rejects(48);
    aligned_alloc_rejects(SIZE_MAX);
    for (size_t align = 1; align <= 1 << 16; align <<= 1) {
        unsigned char *p = aligned_alloc(align, 100);
        CHECK(p && (uintptr_t)p % align == 0 && (uintptr_t)p % 16 == 0, "aligned_alloc(%zu) = %p",
              align, (void *)p);
        memset(p, 0x5a, 100);
        free(p);
    }
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "usable-size") == 0)
        usable_size();
    else if (strcmp(c, "aligned-alloc") == 0)
        aligned();
    else {
        fprintf(stderr, "usage: glibc_api usable-size | aligned-alloc\n");
        return 2;
    }
    printf("ok %s\n", c);
    return 0;
}
