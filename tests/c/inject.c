/* Allocation-failure injection (stress mode's fail_* knobs), issue 20:
 *
 *   inject cleanup N    a program with a bug only on the path after a
 *                       failed malloc: conn_open's error path frees the
 *                       name it allocated but leaves the pointer set, and
 *                       its caller always calls conn_close, which frees it
 *                       again — a double free that happens only when the
 *                       second or third malloc of conn_open fails. Opens and
 *                       closes N connections; prints "ok cleanup <opened>
 *                       <failed>" at the end, which a run without failures
 *                       reaches silently. Before the buggy free it prints
 *                       "cleanup frees name <p>" (flushed), so a test can
 *                       match the double free's report.
 *   inject pattern N S  N mallocs of S bytes: prints one character per
 *                       malloc, '1' for NULL (with errno ENOMEM, else it
 *                       prints "bad errno" and exits 1) and '0' for a
 *                       block, then a newline; frees them.
 *   inject api          under fail_every=1,fail_min=1000: every C entry
 *                       point fails a large request the way exhaustion
 *                       does (NULL and ENOMEM, posix_memalign's ENOMEM,
 *                       realloc leaving its block intact) while small ones
 *                       succeed; prints "ok api".
 *
 * stdout gets a static buffer first, so that stdio allocates nothing and
 * the program's mallocs are the ones counted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char outbuf[1 << 16];

struct conn {
    char *name;
    char *in;
    char *out;
};

static int conn_open(struct conn *c, int id) {
    c->name = malloc(32);
    if (!c->name) return -1;
    snprintf(c->name, 32, "conn-%d", id);
    c->in = malloc(4096);
    if (!c->in) goto fail;
    c->out = malloc(4096);
    if (!c->out) goto fail;
    return 0;
fail:
    printf("cleanup frees name %p\n", (void *)c->name);
    fflush(stdout);
    free(c->name); /* BUG: c->name still points at it; conn_close frees it again */
    free(c->in);
    c->in = NULL;
    return -1;
}

static void conn_close(struct conn *c) {
    free(c->name);
    free(c->in);
    free(c->out);
}

static int cleanup(int n) {
    int opened = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        struct conn c = {0};
        if (conn_open(&c, i) == 0) {
            opened++;
            memset(c.in, 'i', 4096);
            memcpy(c.out, c.name, 32);
        } else {
            failed++;
        }
        conn_close(&c);
    }
    printf("ok cleanup %d %d\n", opened, failed);
    return 0;
}

static int pattern(int n, size_t size) {
    /* Static, so that the program's only mallocs are the ones counted. */
    static void *blocks[4096];
    static char line[4097];
    if (n < 0 || n > 4096) {
        printf("N is 0..4096\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        errno = 0;
        blocks[i] = malloc(size);
        if (!blocks[i] && errno != ENOMEM) {
            printf("bad errno %d\n", errno);
            return 1;
        }
        line[i] = blocks[i] ? '0' : '1';
    }
    line[n] = 0;
    printf("%s\n", line);
    for (int i = 0; i < n; i++) free(blocks[i]);
    return 0;
}

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("failed: %s (line %d, errno %d)\n", #cond, __LINE__, errno); \
            return 1;                                                  \
        }                                                              \
    } while (0)

static int api(void) {
    char *p = malloc(100);
    CHECK(p);
    memset(p, 0x5a, 100);
    errno = 0;
    CHECK(malloc(2000) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(10, 200) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(realloc(NULL, 4096) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(realloc(p, 5000) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(p, 100, 100) == NULL && errno == ENOMEM);
    for (int i = 0; i < 100; i++) CHECK(p[i] == 0x5a); /* intact */
    CHECK(malloc_usable_size(p) == 100);
    void *q = (void *)1;
    CHECK(posix_memalign(&q, 64, 4096) == ENOMEM && q == (void *)1);
    errno = 0;
    CHECK(aligned_alloc(64, 4096) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(memalign(128, 2048) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(valloc(8192) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(5000) == NULL && errno == ENOMEM);
    char *r = realloc(p, 200); /* small: succeeds, moves, copies */
    CHECK(r);
    for (int i = 0; i < 100; i++) CHECK(r[i] == 0x5a);
    char *s = strdup("small strings still work");
    CHECK(s && strcmp(s, "small strings still work") == 0);
    free(s);
    free(r);
    printf("ok api\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    int rc = 2;
    if (argc >= 3 && strcmp(argv[1], "cleanup") == 0) rc = cleanup(atoi(argv[2]));
    else if (argc >= 4 && strcmp(argv[1], "pattern") == 0) rc = pattern(atoi(argv[2]), (size_t)atol(argv[3]));
    else if (argc >= 2 && strcmp(argv[1], "api") == 0) rc = api();
    else fprintf(stderr, "usage: inject cleanup N | pattern N SIZE | api\n");
    fflush(stdout);
    return rc;
}
