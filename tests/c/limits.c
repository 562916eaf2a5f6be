/* Resource-limit cases for the preload library (tests/preload/limits.rs):
 *
 *   limits threads [SEQ CHURN]
 *                    SEQ (100,000) threads one after another, then CHURN
 *                    (20,000) more 8 at a time; each does free(malloc(16)).
 *                    Every one of them binds to an arena: the process
 *                    must not run out of anything per thread ever bound.
 *   limits keys [SEQ CHURN]
 *                    the same (20,000 and 20,000) after creating 40
 *                    pthread keys before its first malloc, so that the
 *                    allocator's own thread-exit key lands in glibc's
 *                    second level and each binding thread's
 *                    pthread_setspecific callocs (while binding: from the
 *                    internal pool) a block that glibc frees at thread
 *                    exit.
 *   limits alloc     64 MiB of small blocks and 8 large ones of 16 MiB,
 *                    each filled and verified, then freed (run under
 *                    `ulimit -v`).
 *
 * Each prints "ok <mode> ..." on success; any failure prints what failed
 * and exits 1. Output is written only at the end, so that nothing is
 * allocated before the first thread binds (the stdout buffer would be).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what, long i) {
    fprintf(stderr, "limits: %s (at %ld)\n", what, i);
    exit(1);
}

static void *touch(void *arg) {
    (void)arg;
    char *p = malloc(16);
    if (!p)
        return (void *)1;
    memset(p, 0x5a, 16);
    free(p);
    return NULL;
}

/* `sequential` threads one at a time, then `churned` threads `width` at a
 * time. Returns the number of threads run. */
static long churn(long sequential, long churned, int width) {
    pthread_t t[8];
    void *r;
    long n = 0;
    for (long i = 0; i < sequential; i++, n++) {
        if (pthread_create(&t[0], NULL, touch, NULL) != 0)
            fail("pthread_create (sequential)", i);
        if (pthread_join(t[0], &r) != 0 || r != NULL)
            fail("thread's malloc (sequential)", i);
    }
    for (long i = 0; i < churned; i += width) {
        for (int k = 0; k < width; k++)
            if (pthread_create(&t[k], NULL, touch, NULL) != 0)
                fail("pthread_create (churn)", i + k);
        for (int k = 0; k < width; k++) {
            if (pthread_join(t[k], &r) != 0 || r != NULL)
                fail("thread's malloc (churn)", i + k);
            n++;
        }
    }
    return n;
}

static long count(int argc, char **argv, int i, long dflt) {
    return argc > i ? strtol(argv[i], NULL, 10) : dflt;
}

static int threads(long seq, long churned) {
    long n = churn(seq, churned, 8);
    printf("ok threads %ld\n", n);
    return 0;
}

static int keys(long seq, long churned) {
    pthread_key_t k[40];
    for (int i = 0; i < 40; i++)
        if (pthread_key_create(&k[i], NULL) != 0)
            fail("pthread_key_create", i);
    long n = churn(seq, churned, 8);
    printf("ok keys %ld\n", n);
    return 0;
}

static int alloc(void) {
    enum { SMALL = 1 << 16, LARGE = 8 };
    static unsigned char *small[SMALL];
    unsigned char *large[LARGE];
    for (long i = 0; i < SMALL; i++) {
        size_t size = 16 + (size_t)(i * 2654435761u % 2032);
        small[i] = malloc(size);
        if (!small[i])
            fail("malloc (small)", i);
        memset(small[i], (int)(i & 0xff), size);
    }
    for (long i = 0; i < LARGE; i++) {
        large[i] = malloc(16u << 20);
        if (!large[i])
            fail("malloc (large)", i);
        memset(large[i], (int)(0xa0 + i), 16u << 20);
    }
    for (long i = 0; i < SMALL; i++) {
        size_t size = 16 + (size_t)(i * 2654435761u % 2032);
        for (size_t j = 0; j < size; j += 97)
            if (small[i][j] != (unsigned char)(i & 0xff))
                fail("small block contents", i);
        free(small[i]);
    }
    for (long i = 0; i < LARGE; i++) {
        for (size_t j = 0; j < (16u << 20); j += 4093)
            if (large[i][j] != (unsigned char)(0xa0 + i))
                fail("large block contents", i);
        free(large[i]);
    }
    printf("ok alloc %d %d\n", SMALL, LARGE);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "threads"))
        return threads(count(argc, argv, 2, 100000), count(argc, argv, 3, 20000));
    if (!strcmp(mode, "keys"))
        return keys(count(argc, argv, 2, 20000), count(argc, argv, 3, 20000));
    if (!strcmp(mode, "alloc"))
        return alloc();
    fprintf(stderr, "usage: limits threads|keys [SEQ CHURN] | alloc\n");
    return 2;
}
