/* free + malloc pairs of 16-520 B on one thread, the per-call cost of an
 * allocator reached through the C API: a ring of 256 live blocks in which
 * each step frees the oldest and allocates a new one of a pseudo-random
 * size in 16..520 B (the same sequence for every allocator), writing its
 * first byte; 20 M pairs (or argv[1]). Prints ns per pair. Run under each
 * allocator in one session, alternated (benches/c-peers.sh), and quote
 * ratios, not the lone figure. Build with -fno-builtin so the pairs are
 * not folded away. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RING 256

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    static void *ring[RING];
    uint32_t x = 12345;
    for (int i = 0; i < RING; i++) {
        x = x * 1664525u + 1013904223u;
        ring[i] = malloc(16 + (x >> 8) % 505);
    }
    struct timespec a, b;
    unsigned long sum = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        void **slot = &ring[i & (RING - 1)];
        free(*slot);
        x = x * 1664525u + 1013904223u;
        char *p = malloc(16 + (x >> 8) % 505);
        if (!p) return 1;
        *(volatile char *)p = (char)i;
        sum += (uintptr_t)p & 0xff;
        *slot = p;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
    printf("%.2f ns/pair (sum %lu)\n", ns, sum & 1);
    for (int i = 0; i < RING; i++) free(ring[i]);
    return 0;
}
