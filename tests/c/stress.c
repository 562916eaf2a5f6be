/* A malloc stress program for arenalloc's LD_PRELOAD library.
 *
 *   stress blocks   threads pass blocks to each other through a shared ring;
 *                   every block is made with one of the C allocation
 *                   functions, filled with a pattern, checked for alignment
 *                   and malloc_usable_size, and verified and freed by
 *                   another thread.
 *   stress errno    the error cases: overflow, bad alignments, exhaustion.
 *   stress fork     threads allocate while the main thread forks; every
 *                   child allocates, frees and exits 0 (or is killed by its
 *                   alarm if a lock was left held).
 *   stress double   frees a block twice: must abort with arenalloc's line.
 *
 * Prints "ok <mode>" on success; exits non-zero with a message otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 8
#define RING 1024
#define ROUNDS 40000
/* Bytes filled and verified at each end of a block (all of a small one). */
#define CHECKED 4096

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)

struct block { unsigned char *p; size_t size; unsigned char seed; };

static struct block ring[RING];
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t next(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

static int checked(size_t i, size_t size) { return i < CHECKED || i >= size - CHECKED; }

static void verify_and_free(struct block b) {
    for (size_t i = 0; i < b.size; i = (i + 1 == CHECKED && b.size > 2 * CHECKED) ? b.size - CHECKED : i + 1)
        CHECK(b.p[i] == (unsigned char)(b.seed + i), "block %p byte %zu corrupted", (void *)b.p, i);
    free(b.p);
}

/* Makes a block of about `size` bytes with a function picked by `how`. */
static struct block make(uint64_t how, size_t size, unsigned char seed) {
    struct block b = { NULL, size, seed };
    size_t align = (size_t)1 << (4 + how % 9);
    void *p = NULL;
    switch (how % 9) {
    case 0: p = malloc(size); break;
    case 1: p = calloc(1, size);
        for (size_t i = 0; p && i < size; i++)
            if (checked(i, size)) CHECK(((unsigned char *)p)[i] == 0, "calloc not zeroed");
        break;
    case 2: p = malloc(size / 2 + 1); p = realloc(p, size); break;
    case 3: p = reallocarray(NULL, size, 1); break;
    case 4: CHECK(posix_memalign(&p, align, size) == 0, "posix_memalign"); break;
    case 5: p = aligned_alloc(align, size); break;
    case 6: p = memalign(align, size); break;
    case 7: p = valloc(size); align = 4096; break;
    default: p = pvalloc(size); align = 4096; break;
    }
    CHECK(p != NULL, "allocation of %zu bytes failed (how %d)", size, (int)(how % 9));
    if (how % 9 >= 4) CHECK(((uintptr_t)p & (align - 1)) == 0, "%p not aligned to %zu", p, align);
    CHECK(((uintptr_t)p & 15) == 0, "%p not 16-aligned", p);
    CHECK(malloc_usable_size(p) >= size, "usable %zu < %zu", malloc_usable_size(p), size);
    b.p = p;
    for (size_t i = 0; i < size; i++)
        if (checked(i, size)) b.p[i] = (unsigned char)(seed + i);
    return b;
}

static void *worker(void *arg) {
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t x = next(&s);
        size_t size = x % 16 == 0 ? x % 70000 + 1 : x % 64 == 1 ? x % 3000000 + 1 : x % 600 + 1;
        struct block b = make(next(&s), size, (unsigned char)x);
        size_t slot = next(&s) % RING;
        pthread_mutex_lock(&ring_lock);
        struct block old = ring[slot];
        ring[slot] = b;
        pthread_mutex_unlock(&ring_lock);
        if (old.p) verify_and_free(old); /* usually another thread's block */
    }
    return NULL;
}

static int blocks(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0, "pthread_create");
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < RING; i++) if (ring[i].p) verify_and_free(ring[i]);
    return 0;
}

static int errnos(void) {
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM, "calloc overflow");
    errno = 0;
    void *p = malloc(10);
    CHECK(reallocarray(p, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM, "reallocarray overflow");
    CHECK(malloc_usable_size(p) >= 10, "p survives a failed reallocarray");
    errno = 0;
    CHECK(malloc(SIZE_MAX - 4096) == NULL && errno == ENOMEM, "huge malloc");
    void *q;
    CHECK(posix_memalign(&q, 24, 10) == EINVAL, "posix_memalign(24)");
    CHECK(posix_memalign(&q, 4, 10) == EINVAL, "posix_memalign(4)");
    errno = 0;
    CHECK(aligned_alloc(24, 10) == NULL && errno == EINVAL, "aligned_alloc(24)");
    void *m = memalign(24, 10); /* glibc rounds up to 32 */
    CHECK(m && ((uintptr_t)m & 31) == 0, "memalign(24)");
    void *z = malloc(0);
    CHECK(z != NULL, "malloc(0) returns a unique pointer");
    CHECK(realloc(z, 0) == NULL, "realloc(p, 0) frees and returns NULL");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
    free(NULL);
    free(p);
    free(m);
    return 0;
}

static volatile int stop;
static void *churn(void *arg) {
    uint64_t s = 42 + (uintptr_t)arg;
    void *keep[64] = { 0 };
    while (!stop) {
        size_t i = next(&s) % 64;
        free(keep[i]);
        keep[i] = malloc(next(&s) % 5000 + 1);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static int forks(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0, "pthread_create");
    for (int f = 0; f < 300; f++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            alarm(20); /* a lock left held would hang here: die instead */
            void *a[100];
            for (int i = 0; i < 100; i++) { a[i] = malloc(i * 37 + 1); memset(a[i], i, i * 37 + 1); }
            for (int i = 0; i < 100; i++) free(a[i]);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d of fork %d: status %#x", pid, f, status);
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return 0;
}

static int double_free(void) {
    char *p = malloc(100);
    strcpy(p, "hello");
    free(p);
    free(p); /* must abort here */
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "blocks";
    int r = !strcmp(mode, "blocks") ? blocks()
          : !strcmp(mode, "errno") ? errnos()
          : !strcmp(mode, "fork") ? forks()
          : !strcmp(mode, "double") ? double_free()
          : 2;
    if (r == 0) printf("ok %s\n", mode);
    return r;
}
