/* malloc_usable_size per call on 1,024 live blocks of 16 B-2 KiB, cycled
 * through 20 M times (or argv[1]): the query memory-counting programs make
 * on every allocation and free. Run it under each allocator in one go:
 *   cc -O2 -o /tmp/usable_size benches/c/usable_size.c
 *   /tmp/usable_size; LD_PRELOAD=target/release/libarenalloc.so /tmp/usable_size
 * and quote the ratio, not the lone figure (benches/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <time.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    enum { K = 1024 };
    void *p[K];
    for (int i = 0; i < K; i++) p[i] = malloc(16 + (i * 37) % 2000);
    struct timespec a, b;
    size_t sum = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) sum += malloc_usable_size(p[i & (K - 1)]);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
    printf("%.2f ns/call (sum %zu)\n", ns, sum);
    for (int i = 0; i < K; i++) free(p[i]);
    return 0;
}
