/* Heap-corruption cases for arenalloc's hardening (tests/preload/hardening.rs).
 *
 *   corrupt CASE [N] [clean]
 *
 * Each case lays out a row of adjacent malloc(32) blocks (48-byte blocks:
 * a 16-byte header, prev_size then the size/flags word, and 32 payload
 * bytes; so `p + 32` is the next block's prev_size and `p + 40` its size
 * word), corrupts one word the way a buggy program would, and makes the
 * call that must notice it. With `clean` it does everything but the
 * corruption, frees what is left and prints "ok": the same steps on an
 * intact heap must succeed, so the detection is no false positive.
 *
 *   hang                 the reproducer: free(q), 9 bytes over p into
 *                        the free q, free(p), free(a), free(r), malloc(16)
 *   overflow-free-p N    N bytes past p's end into the live q, then free(p)
 *   overflow-free-q N    the same overflow, then free(q) (the neighbour)
 *   overflow-into-free N free(q) first (r stays live after it), then N
 *                        bytes past p's end into the free q, then free(p)
 *   underflow N          N bytes before p (its own header), then free(p)
 *   size-zero            p's size word zeroed, then free(p)
 *   size-triple          p's size made 3x larger (flag bits kept), free(p)
 *   write-after-free     free(p), 8 bytes of garbage at p, malloc(32) twice
 *   poisoned-link        free(p), a pointer to a fake block in a static array
 *                        at p, malloc(32) twice; prints "target LO HI" and
 *                        "got ADDR" after each malloc returns
 *
 * Exit codes: 0 ok; 2 usage; 3 the blocks are not adjacent (the case could
 * not be set up); 4 malloc returned NULL; 5 malloc returned the attacker's
 * static array. Detected corruption is arenalloc's abort (SIGABRT).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The block malloc(32) gets: a 16-byte header plus 32 payload bytes. */
#define REQUEST 32
#define BLOCK 48
/* Blocks in a row: a guard, p, q, r (a guard after q). */
#define ROW 4
/* How many allocations to try for ROW adjacent blocks. */
#define TRIES 256

/* Every block made; two more than TRIES for the cases' own mallocs. */
static unsigned char *made[TRIES + 2];
static int nmade;

/* The attacker's memory: a fake free block header at +16 (prev_size 0,
 * size 48 | FREE, null links), which a poisoned free-list link names. */
static unsigned char target[256] __attribute__((aligned(64)));

static void *must_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "malloc(%zu) returned NULL\n", n);
        exit(4);
    }
    return p;
}

/* Allocates malloc(32) blocks until the last ROW of them are adjacent in
 * address order (a fresh heap gives them at once; blocks freed by libc's
 * start-up may come first). The others stay live until `release_all`. */
static unsigned char **adjacent_row(void) {
    while (nmade < TRIES) {
        made[nmade++] = must_malloc(REQUEST);
        if (nmade < ROW)
            continue;
        unsigned char **row = &made[nmade - ROW];
        int ok = 1;
        for (int i = 1; i < ROW; i++)
            ok &= row[i] == row[i - 1] + BLOCK;
        if (ok)
            return row;
    }
    fprintf(stderr, "no %d adjacent malloc(%d) blocks in %d tries\n", ROW, REQUEST, TRIES);
    exit(3);
}

/* Frees every block made that is still live (freed ones are NULL). */
static void release_all(void) {
    for (int i = 0; i < nmade; i++)
        free(made[i]);
    nmade = 0;
}

static size_t *size_word(unsigned char *payload) { return (size_t *)payload - 1; }

static int in_target(void *x) {
    return (unsigned char *)x >= target && (unsigned char *)x < target + sizeof target;
}

int main(int argc, char **argv) {
    /* Unbuffered: an abort must not lose what was printed, and stdio must
     * not allocate between the steps of a case. */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: corrupt CASE [N] [clean]\n");
        return 2;
    }
    const char *c = argv[1];
    int clean = strcmp(argv[argc - 1], "clean") == 0;
    size_t n = argc > 2 && argv[2][0] >= '0' && argv[2][0] <= '9' ? strtoul(argv[2], NULL, 10) : 0;
    unsigned char **row = adjacent_row();
    unsigned char *a = row[0], *p = row[1], *q = row[2], *r = row[3];

    if (strcmp(c, "hang") == 0) {
        free(q);
        row[2] = NULL;
        if (!clean)
            memset(p + REQUEST, 'A', 9);
        free(p);
        row[1] = NULL;
        free(a);
        row[0] = NULL;
        free(r);
        row[3] = NULL;
        free(must_malloc(16));
    } else if (strcmp(c, "overflow-free-p") == 0 || strcmp(c, "overflow-free-q") == 0) {
        if (!clean)
            memset(p + REQUEST, 'A', n);
        int self = strcmp(c, "overflow-free-p") == 0;
        free(self ? p : q);
        row[self ? 1 : 2] = NULL;
    } else if (strcmp(c, "overflow-into-free") == 0) {
        free(q);
        row[2] = NULL;
        if (!clean)
            memset(p + REQUEST, 'A', n);
        free(p);
        row[1] = NULL;
    } else if (strcmp(c, "underflow") == 0) {
        if (!clean)
            memset(p - n, 'A', n);
        free(p);
        row[1] = NULL;
    } else if (strcmp(c, "size-zero") == 0 || strcmp(c, "size-triple") == 0) {
        size_t w = *size_word(p);
        if (!clean)
            *size_word(p) = strcmp(c, "size-zero") == 0 ? 0 : ((w & ~(size_t)15) * 3) | (w & 15);
        free(p);
        row[1] = NULL;
    } else if (strcmp(c, "write-after-free") == 0 || strcmp(c, "poisoned-link") == 0) {
        /* p lies between the live a and q: it stays a free 48-byte block. */
        free(p);
        row[1] = NULL;
        int poison = strcmp(c, "poisoned-link") == 0;
        if (poison) {
            size_t *fake = (size_t *)(target + 16);
            fake[0] = 0;           /* prev_size: the block before is live */
            fake[1] = BLOCK | 1;   /* size 48, FREE */
            fake[2] = fake[3] = 0; /* no next, no prev */
            printf("target %p %p\n", (void *)target, (void *)(target + sizeof target));
        }
        if (!clean) {
            if (poison)
                *(void **)p = target + 16;
            else
                memcpy(p, "\x13\x37\xc0\xde\x5a\xfe\xf0\x0d", 8);
        }
        for (int i = 0; i < 2; i++) {
            void *x = must_malloc(REQUEST);
            if (poison)
                printf("got %p\n", x);
            if (in_target(x)) {
                fprintf(stderr, "malloc returned %p, inside the static array\n", x);
                return 5;
            }
            made[nmade++] = x;
        }
    } else {
        fprintf(stderr, "unknown case %s\n", c);
        return 2;
    }
    release_all();
    printf("ok\n");
    return 0;
}
