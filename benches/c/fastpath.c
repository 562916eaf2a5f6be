/* The default configuration's fast paths, counted by callgrind: a ring of
 * 64 live blocks of 16-512 bytes in which each step frees the oldest and
 * allocates a new one, on one thread, so that (after the first steps)
 * every malloc and free is an owner-cache hit. benches/callgrind-fastpath.sh
 * runs it under LD_PRELOAD=libarenalloc.so and divides each function's
 * inclusive instructions by its calls. */
#include <stdio.h>
#include <stdlib.h>

#define RING 64
#define STEPS 1000000

int main(void) {
    static void *ring[RING];
    static const size_t sizes[8] = {16, 24, 48, 64, 100, 128, 256, 512};
    unsigned long sum = 0;
    for (long i = 0; i < STEPS; i++) {
        void **slot = &ring[i % RING];
        free(*slot);
        *slot = malloc(sizes[(i * 7) % 8]);
        if (!*slot) return 1;
        *(volatile char *)*slot = (char)i;
        sum += (unsigned long)*slot & 0xff;
    }
    for (int i = 0; i < RING; i++) free(ring[i]);
    printf("%lu\n", sum & 1);
    return 0;
}
