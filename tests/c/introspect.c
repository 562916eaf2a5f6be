/* glibc's introspection and tuning calls under the preload library
 * (tests/preload/introspect.rs):
 *
 *   introspect mallinfo  mallinfo2/mallinfo deltas over known allocations:
 *                        uordblks grows by exactly the usable sizes of
 *                        1000 small blocks, hblks/hblkhd by one 5 MiB
 *                        block's; mallinfo's int fields equal mallinfo2's.
 *                        Prints "mallinfo2 <field>=<n> ..." with the blocks
 *                        still live (the test compares it with the exit
 *                        report), then "ok mallinfo".
 *   introspect info      malloc_info with the arenas of main and of three
 *                        threads (that may adopt each other's: two or more)
 *                        and a large block, to stdout (the test parses the
 *                        XML); and
 *                        malloc_info(1, …) is EINVAL; and to a memstream.
 *   introspect stats     malloc_stats (stderr, between "before" and "after"
 *                        lines) with the same arenas in use.
 *   introspect trim      4 threads allocate 64 MiB each of 16-512 B blocks
 *                        and wait; main frees every block (remote frees),
 *                        then malloc_trim(0). Prints RSS before/after.
 *   introspect arenas N  mallopt(M_ARENA_MAX, N) (N = 0: no call), then 4
 *                        threads alive at once allocate; prints how many
 *                        heaps malloc_info lists.
 *   introspect opt       mallopt's return values (M_MMAP_THRESHOLD: 0, …).
 *   introspect purge T   mallopt(M_TRIM_THRESHOLD, T) (T < 0: no call), then
 *                        frees a 96 KiB block between live ones (above the
 *                        owner cache's 64 KiB classes, so it reaches the
 *                        index, which purges); prints
 *                        how many bytes that purged (run with
 *                        ARENALLOC_PURGE_MS=0: purge as blocks become free).
 *
 * Any failure prints what failed on stderr and exits 1.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fail(const char *what, long a, long b) {
    fprintf(stderr, "introspect: %s (%ld, %ld)\n", what, a, b);
    exit(1);
}

static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f || fscanf(f, "%lu %lu", &size, &resident) != 2)
        fail("read /proc/self/statm", 0, 0);
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* The malloc_info document in a malloc'd string (open_memstream: stdio
 * reallocs its buffer through the heap being described). */
static char *info_text(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        fail("open_memstream", 0, 0);
    if (malloc_info(0, f) != 0)
        fail("malloc_info to a memstream", 0, 0);
    fclose(f);
    return buf;
}

static long count(const char *text, const char *needle) {
    long n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The number after `key="` in the last <arenalloc .../> element (the
 * totals'). */
static long total_attr(const char *text, const char *key) {
    const char *last = NULL;
    for (const char *p = text; (p = strstr(p, "<arenalloc ")); p++)
        last = p;
    if (!last)
        fail("no <arenalloc> element", 0, 0);
    char pat[64];
    snprintf(pat, sizeof pat, " %s=\"", key);
    const char *v = strstr(last, pat);
    if (!v)
        fail("attribute missing", 0, 0);
    return strtol(v + strlen(pat), NULL, 10);
}

static int mode_mallinfo(void) {
    enum { N = 1000 };
    static void *p[N];
    /* Before the first allocation there is no heap and every figure is 0;
     * after it, each call's figures include the statistics vector it
     * allocates (one entry per arena), so deltas cancel it. */
    struct mallinfo2 none = mallinfo2();
    if (none.arena != 0 || none.uordblks != 0)
        fail("figures before the heap exists", (long)none.arena, (long)none.uordblks);
    free(malloc(16));
    struct mallinfo2 before = mallinfo2();
    size_t usable = 0;
    for (int i = 0; i < N; i++) {
        p[i] = malloc(100 + i % 7);
        if (!p[i])
            fail("malloc", i, 0);
        memset(p[i], 1, 100);
        usable += malloc_usable_size(p[i]);
    }
    struct mallinfo2 small = mallinfo2();
    if (small.uordblks - before.uordblks != usable)
        fail("uordblks delta != usable bytes of the new blocks", (long)(small.uordblks - before.uordblks),
             (long)usable);
    char *big = malloc(5 << 20);
    if (!big)
        fail("malloc 5 MiB", 0, 0);
    memset(big, 2, 5 << 20);
    struct mallinfo2 m = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo mi = mallinfo();
#pragma GCC diagnostic pop
    if (m.hblks != small.hblks + 1)
        fail("hblks after a 5 MiB malloc", (long)m.hblks, (long)small.hblks);
    if (m.hblkhd - small.hblkhd != malloc_usable_size(big))
        fail("hblkhd delta != the large block's usable size", (long)(m.hblkhd - small.hblkhd),
             (long)malloc_usable_size(big));
    if (m.hblkhd < 5 << 20)
        fail("hblkhd below 5 MiB", (long)m.hblkhd, 0);
    if (m.uordblks != small.uordblks)
        fail("a large block counted in uordblks", (long)m.uordblks, (long)small.uordblks);
    if (m.arena == 0 || m.uordblks + m.fordblks > m.arena)
        fail("uordblks + fordblks > arena", (long)(m.uordblks + m.fordblks), (long)m.arena);
    if (m.fsmblks > m.fordblks || m.usmblks != 0)
        fail("fsmblks > fordblks, or usmblks set", (long)m.fsmblks, (long)m.usmblks);
    /* Nothing allocated between the two calls: the same figures. */
    if ((size_t)mi.arena != m.arena || (size_t)mi.ordblks != m.ordblks || (size_t)mi.smblks != m.smblks ||
        (size_t)mi.hblks != m.hblks || (size_t)mi.hblkhd != m.hblkhd || (size_t)mi.usmblks != m.usmblks ||
        (size_t)mi.fsmblks != m.fsmblks || (size_t)mi.uordblks != m.uordblks ||
        (size_t)mi.fordblks != m.fordblks || (size_t)mi.keepcost != m.keepcost)
        fail("mallinfo differs from mallinfo2", mi.uordblks, (long)m.uordblks);
    /* Freed, the large run is cached for reuse: keepcost. */
    free(big);
    struct mallinfo2 freed = mallinfo2();
    if (freed.hblks != small.hblks || freed.keepcost < (5 << 20))
        fail("after free(big): hblks, keepcost", (long)freed.hblks, (long)freed.keepcost);
    big = malloc(5 << 20);
    m = mallinfo2();
    printf("mallinfo2 arena=%zu ordblks=%zu smblks=%zu hblks=%zu hblkhd=%zu usmblks=%zu fsmblks=%zu "
           "uordblks=%zu fordblks=%zu keepcost=%zu\n",
           m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd, m.usmblks, m.fsmblks, m.uordblks, m.fordblks,
           m.keepcost);
    printf("ok mallinfo\n");
    fflush(stdout);
    /* Live until exit: the exit report sees them. */
    return big == NULL;
}

static void *alloc_some(void *arg) {
    void **keep = arg;
    for (int i = 0; i < 100; i++)
        keep[i] = malloc(64 + 16 * i);
    return NULL;
}

/* Three more threads bind to arenas (their own, or one an exited thread
 * left) and leave blocks live. */
static void **three_threads(void) {
    static void *keep[3][100];
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, alloc_some, keep[i]) != 0)
            fail("pthread_create", i, 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return &keep[0][0];
}

static int mode_info(void) {
    void *a = malloc(1000);
    three_threads();
    void *big = malloc(3 << 20);
    errno = 0;
    int r = malloc_info(1, stdout);
    if (r != EINVAL || errno != EINVAL)
        fail("malloc_info(1, ...) is EINVAL", r, errno);
    char *text = info_text();
    if (strncmp(text, "<malloc version=\"1\">\n", 21) != 0 || count(text, "</malloc>") != 1)
        fail("memstream document", 0, 0);
    free(text);
    if (malloc_info(0, stdout) != 0)
        fail("malloc_info", 0, 0);
    free(a);
    free(big);
    return 0;
}

static int mode_stats(void) {
    void *a = malloc(1000);
    three_threads();
    void *big = malloc(3 << 20);
    fprintf(stderr, "before\n");
    malloc_stats();
    fprintf(stderr, "after\n");
    free(a);
    free(big);
    return 0;
}

enum { TRIM_THREADS = 4 };
static const size_t TRIM_BYTES = 64 << 20; /* per thread */

struct trim_work {
    void **blocks;
    size_t n;
    size_t bytes;
    uint64_t seed;
    pthread_barrier_t *ready, *done;
};

static void *trim_worker(void *arg) {
    struct trim_work *w = arg;
    uint64_t x = w->seed;
    size_t cap = TRIM_BYTES / 16;
    w->blocks = malloc(cap * sizeof(void *));
    if (!w->blocks)
        return (void *)1;
    while (w->bytes < TRIM_BYTES && w->n < cap) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t size = 16 + x % 497;
        char *p = malloc(size);
        if (!p)
            return (void *)1;
        memset(p, (int)x, size);
        w->blocks[w->n++] = p;
        w->bytes += size;
    }
    pthread_barrier_wait(w->ready);
    /* Alive (owning its arena) while main frees and trims. */
    pthread_barrier_wait(w->done);
    return NULL;
}

static int mode_trim(void) {
    pthread_barrier_t ready, done;
    pthread_barrier_init(&ready, NULL, TRIM_THREADS + 1);
    pthread_barrier_init(&done, NULL, TRIM_THREADS + 1);
    static struct trim_work w[TRIM_THREADS];
    pthread_t t[TRIM_THREADS];
    free(malloc(16)); /* main binds to an arena of its own first */
    for (int i = 0; i < TRIM_THREADS; i++) {
        w[i] = (struct trim_work){.seed = 0x9e3779b97f4a7c15ull * (i + 1), .ready = &ready, .done = &done};
        if (pthread_create(&t[i], NULL, trim_worker, &w[i]) != 0)
            fail("pthread_create", i, 0);
    }
    pthread_barrier_wait(&ready);
    size_t allocated = 0;
    for (int i = 0; i < TRIM_THREADS; i++) {
        if (!w[i].blocks)
            fail("worker's block array", i, 0);
        allocated += w[i].bytes;
    }
    size_t rss_full = rss_bytes();
    for (int i = 0; i < TRIM_THREADS; i++) {
        for (size_t k = 0; k < w[i].n; k++)
            free(w[i].blocks[k]);
        free(w[i].blocks);
    }
    size_t rss_freed = rss_bytes();
    int trimmed = malloc_trim(0);
    size_t rss_trimmed = rss_bytes();
    struct mallinfo2 m = mallinfo2();
    int again = malloc_trim(0);
    pthread_barrier_wait(&done);
    for (int i = 0; i < TRIM_THREADS; i++)
        pthread_join(t[i], NULL);
    printf("trim allocated=%zu rss_full=%zu rss_freed=%zu trim=%d rss_trimmed=%zu live=%zu again=%d\n",
           allocated, rss_full, rss_freed, trimmed, rss_trimmed, m.uordblks + m.hblkhd, again);
    return 0;
}

static pthread_barrier_t all_alive;

static void *alive_worker(void *arg) {
    void **slot = arg;
    *slot = malloc(256);
    /* Every worker binds while the others are alive: none can adopt an
     * exited one's arena. */
    pthread_barrier_wait(&all_alive);
    free(*slot);
    return NULL;
}

static int mode_arenas(int n) {
    free(malloc(16));
    if (n != 0 && mallopt(M_ARENA_MAX, n) != 1)
        fail("mallopt(M_ARENA_MAX) returns 1", n, 0);
    pthread_barrier_init(&all_alive, NULL, 5);
    pthread_t t[4];
    void *slots[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, alive_worker, &slots[i]) != 0)
            fail("pthread_create", i, 0);
    pthread_barrier_wait(&all_alive);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *text = info_text();
    printf("heaps=%ld\n", count(text, "<heap nr="));
    free(text);
    return 0;
}

static int mode_opt(void) {
    struct {
        int param, value, expected;
        const char *what;
    } cases[] = {
        {M_MMAP_THRESHOLD, 1 << 20, 0, "M_MMAP_THRESHOLD 1 MiB"},
        {M_MMAP_THRESHOLD, 64 << 10, 0, "M_MMAP_THRESHOLD 64 KiB"},
        {M_TOP_PAD, 0, 0, "M_TOP_PAD"},
        {M_MXFAST, 0, 0, "M_MXFAST"},
        {M_ARENA_TEST, 2, 0, "M_ARENA_TEST"},
        {12345, 1, 0, "an unknown param"},
        {M_ARENA_MAX, 0, 0, "M_ARENA_MAX 0"},
        {M_ARENA_MAX, -1, 0, "M_ARENA_MAX -1"},
        {M_TRIM_THRESHOLD, -1, 0, "M_TRIM_THRESHOLD -1"},
        {M_TRIM_THRESHOLD, 128 << 10, 1, "M_TRIM_THRESHOLD 128 KiB"},
        {M_ARENA_MAX, 64, 1, "M_ARENA_MAX 64"},
        {M_ARENA_MAX, 100000, 1, "M_ARENA_MAX 100000 (clamped)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int r = mallopt(cases[i].param, cases[i].value);
        if (r != cases[i].expected) {
            fprintf(stderr, "introspect: mallopt %s returned %d\n", cases[i].what, r);
            exit(1);
        }
    }
    /* Still a working heap. */
    void *p = malloc(2 << 20);
    free(p);
    printf("ok opt\n");
    return 0;
}

static int mode_purge(int threshold) {
    if (threshold >= 0 && mallopt(M_TRIM_THRESHOLD, threshold) != 1)
        fail("mallopt(M_TRIM_THRESHOLD) returns 1", threshold, 0);
    char *a = malloc(96 << 10), *b = malloc(96 << 10), *c = malloc(96 << 10);
    if (!a || !b || !c)
        fail("malloc", 0, 0);
    memset(a, 1, 96 << 10);
    memset(b, 1, 96 << 10);
    memset(c, 1, 96 << 10);
    /* The two documents are freed after both readings: between them only
     * b's free (and the second document's small buffers) may purge. */
    char *before = info_text();
    long purged_before = total_attr(before, "purged");
    free(b);
    char *after = info_text();
    long purged_after = total_attr(after, "purged");
    free(before);
    free(after);
    printf("purged=%ld\n", purged_after - purged_before);
    free(a);
    free(c);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    long arg = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    if (!strcmp(mode, "mallinfo"))
        return mode_mallinfo();
    if (!strcmp(mode, "info"))
        return mode_info();
    if (!strcmp(mode, "stats"))
        return mode_stats();
    if (!strcmp(mode, "trim"))
        return mode_trim();
    if (!strcmp(mode, "arenas"))
        return mode_arenas((int)arg);
    if (!strcmp(mode, "opt"))
        return mode_opt();
    if (!strcmp(mode, "purge"))
        return mode_purge((int)arg);
    fprintf(stderr, "usage: introspect mallinfo|info|stats|trim|arenas N|opt|purge T\n");
    return 2;
}
