/* The C surface of the preload library beyond malloc/free, from C
 * (tests/preload/surface.rs; tests/c/surface.cpp is the C++ side):
 *
 *   surface libc         glibc's internal names (__libc_malloc, __libc_calloc,
 *                        __libc_realloc, __libc_memalign, __libc_valloc,
 *                        __libc_pvalloc, __libc_free) serve and free arenalloc
 *                        blocks, mixed freely with malloc/free both ways.
 *   surface sized        C23 free_sized / free_aligned_sized with the right
 *                        sizes, for malloc, calloc, realloc and aligned_alloc
 *                        blocks, small and large; NULL is a no-op.
 *   surface sized-bad    malloc(32), then free_sized(p, 48): prints
 *                        "block <p>" first; a checked heap aborts, a default
 *                        one frees it and the program prints "survived".
 *   surface aligned-bad  aligned_alloc(64, 32), free_aligned_sized(p, 64, 48).
 *   surface cxx          every operator new/delete symbol called from C by
 *                        its mangled name; each block is arenalloc's.
 *   surface cxx-oom      the nothrow new of an impossible size returns NULL;
 *                        the throwing one, with no C++ runtime loaded to
 *                        throw std::bad_alloc, aborts with one line.
 *   surface header       include/arenalloc.h: arenalloc_check, the stats
 *                        table, the dump and the leak report through a
 *                        callback (and to stderr with a NULL one).
 *   surface corrupt      hardened: a block's header overwritten, then
 *                        arenalloc_check returns 1 (one line on stderr).
 *
 * Every case prints "ok <case>" on success; a failure prints what failed
 * on stderr and exits 1.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arenalloc.h"

/* glibc 2.36's <stdlib.h> predates C23's sized frees. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);
void __libc_free(void *);

/* The C++ operators by their Itanium names (size_t is unsigned long). */
void *_Znwm(size_t);
void *_Znam(size_t);
void *_ZnwmRKSt9nothrow_t(size_t, const void *);
void *_ZnamRKSt9nothrow_t(size_t, const void *);
void *_ZnwmSt11align_val_t(size_t, size_t);
void *_ZnamSt11align_val_t(size_t, size_t);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t, size_t, const void *);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t, size_t, const void *);
void _ZdlPv(void *);
void _ZdaPv(void *);
void _ZdlPvm(void *, size_t);
void _ZdaPvm(void *, size_t);
void _ZdlPvRKSt9nothrow_t(void *, const void *);
void _ZdaPvRKSt9nothrow_t(void *, const void *);
void _ZdlPvSt11align_val_t(void *, size_t);
void _ZdaPvSt11align_val_t(void *, size_t);
void _ZdlPvmSt11align_val_t(void *, size_t, size_t);
void _ZdaPvmSt11align_val_t(void *, size_t, size_t);
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *, size_t, const void *);
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *, size_t, const void *);

static void fail(const char *what, long a, long b) {
    fprintf(stderr, "surface: %s (%ld, %ld)\n", what, a, b);
    exit(1);
}

/* A block arenalloc serves: malloc_usable_size (arenalloc's) answers at
 * least `size` for it, and 0 for anything it does not hold. */
static void *ours(void *p, size_t size, size_t align, const char *what) {
    if (!p) fail(what, (long)size, 0);
    if (malloc_usable_size(p) < size) fail(what, (long)size, (long)malloc_usable_size(p));
    if ((uintptr_t)p % align) fail(what, (long)(uintptr_t)p, (long)align);
    memset(p, 0x5a, size);
    return p;
}

static void libc_names(void) {
    void *a = ours(__libc_malloc(100), 100, 16, "__libc_malloc");
    char *b = __libc_calloc(10, 10);
    for (int i = 0; b && i < 100; i++)
        if (b[i]) fail("__libc_calloc zeroes", i, b[i]);
    ours(b, 100, 16, "__libc_calloc");
    void *c = ours(__libc_memalign(256, 40), 40, 256, "__libc_memalign");
    void *d = ours(__libc_valloc(10), 10, 4096, "__libc_valloc");
    void *e = ours(__libc_pvalloc(10), 4096, 4096, "__libc_pvalloc");
    a = ours(__libc_realloc(a, 5000), 5000, 16, "__libc_realloc");
    /* Mixed both ways: one heap. */
    free(a);
    __libc_free(b);
    __libc_free(c);
    free(d);
    __libc_free(e);
    void *f = ours(malloc(3 << 20), 3 << 20, 16, "malloc large");
    __libc_free(f);
    __libc_free(NULL);
    printf("ok libc\n");
}

static void sized(void) {
    static const size_t sizes[] = {1, 24, 1000, 1025, 70000, 3 << 20};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        free_sized(ours(malloc(n), n, 16, "malloc"), n);
        free_sized(ours(calloc(n, 1), n, 16, "calloc"), n);
        void *p = ours(malloc(n / 2 + 1), n / 2 + 1, 16, "malloc");
        free_sized(ours(realloc(p, n), n, 16, "realloc"), n);
        free_aligned_sized(ours(aligned_alloc(64, n), n, 64, "aligned_alloc"), 64, n);
    }
    free_sized(NULL, 10);
    free_aligned_sized(NULL, 64, 10);
    printf("ok sized\n");
}

static void sized_bad(int aligned) {
    void *p = aligned ? aligned_alloc(64, 32) : malloc(32);
    if (!p) fail("alloc", 32, 0);
    fprintf(stderr, "block %p\n", p);
    if (aligned)
        free_aligned_sized(p, 64, 48);
    else
        free_sized(p, 48);
    printf("survived\n");
}

static void cxx(void) {
    const char nothrow = 0; /* any address: the operators ignore it */
    _ZdlPv(ours(_Znwm(40), 40, 16, "_Znwm"));
    _ZdaPv(ours(_Znam(400), 400, 16, "_Znam"));
    _ZdlPvm(ours(_Znwm(2000), 2000, 16, "_Znwm 2000"), 2000);
    _ZdaPvm(ours(_Znam(3 << 20), 3 << 20, 16, "_Znam large"), 3 << 20);
    _ZdlPvRKSt9nothrow_t(ours(_ZnwmRKSt9nothrow_t(8, &nothrow), 8, 16, "nothrow new"), &nothrow);
    _ZdaPvRKSt9nothrow_t(ours(_ZnamRKSt9nothrow_t(8, &nothrow), 8, 16, "nothrow new[]"), &nothrow);
    _ZdlPvSt11align_val_t(ours(_ZnwmSt11align_val_t(10, 128), 10, 128, "aligned new"), 128);
    _ZdaPvSt11align_val_t(ours(_ZnamSt11align_val_t(10, 4096), 10, 4096, "aligned new[]"), 4096);
    _ZdlPvmSt11align_val_t(ours(_ZnwmSt11align_val_t(100, 64), 100, 64, "aligned new 100"), 100, 64);
    _ZdaPvmSt11align_val_t(ours(_ZnamSt11align_val_t(100, 64), 100, 64, "aligned new[] 100"), 100, 64);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(
        ours(_ZnwmSt11align_val_tRKSt9nothrow_t(10, 256, &nothrow), 10, 256, "aligned nothrow new"),
        256, &nothrow);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(
        ours(_ZnamSt11align_val_tRKSt9nothrow_t(10, 256, &nothrow), 10, 256, "aligned nothrow new[]"),
        256, &nothrow);
    /* new(0) is a unique, non-null block; delete(NULL) is a no-op. */
    void *z1 = _Znwm(0), *z2 = _Znwm(0);
    if (!z1 || !z2 || z1 == z2) fail("new(0)", (long)(uintptr_t)z1, (long)(uintptr_t)z2);
    _ZdlPv(z1);
    _ZdlPvm(z2, 0);
    _ZdlPv(NULL);
    _ZdaPvm(NULL, 5);
    /* One heap with malloc/free. */
    free(ours(_Znwm(64), 64, 16, "_Znwm for free"));
    _ZdlPv(ours(malloc(64), 64, 16, "malloc for delete"));
    printf("ok cxx\n");
}

static void cxx_oom(void) {
    const char nothrow = 0;
    size_t huge = (size_t)1 << 62;
    if (_ZnwmRKSt9nothrow_t(huge, &nothrow)) fail("nothrow new of 2^62", 0, 0);
    if (_ZnamSt11align_val_tRKSt9nothrow_t(huge, 64, &nothrow)) fail("aligned nothrow new", 0, 0);
    if (_ZnwmSt11align_val_tRKSt9nothrow_t(8, 3, &nothrow)) fail("alignment 3", 0, 0);
    fprintf(stderr, "nothrow ok\n");
    void *p = _Znwm(huge);
    printf("survived %p\n", p);
}

/* Collects callback output. */
struct sink {
    char text[1 << 16];
    size_t len;
    int calls;
};

static void collect(void *opaque, const char *text) {
    struct sink *s = opaque;
    size_t n = strlen(text);
    if (n == 0 || text[n - 1] != '\n') fail("a callback line ends in a newline", (long)n, 0);
    if (s->len + n < sizeof s->text) {
        memcpy(s->text + s->len, text, n + 1);
        s->len += n;
    }
    s->calls++;
    /* The heap is free to use from the callback. */
    free(malloc(100));
}

static void header(void) {
    static struct sink s;
    void *keep[3];
    for (int i = 0; i < 3; i++) keep[i] = malloc(48);
    if (arenalloc_check() != 0) fail("arenalloc_check", 0, 0);

    arenalloc_stats_print(collect, &s);
    if (!strstr(s.text, "allocations") || !strstr(s.text, "live blocks") ||
        !strstr(s.text, "arena    0: live"))
        fail("stats text", (long)s.len, s.calls);
    if (s.calls < 7) fail("stats: a call per line", s.calls, 7);
    printf("%s", s.text);

    s.len = 0, s.calls = 0, s.text[0] = 0;
    if (arenalloc_dump(collect, &s) != 0) fail("arenalloc_dump", 0, 0);
    if (!strstr(s.text, "arena 0")) fail("dump text", (long)s.len, s.calls);

    s.len = 0, s.calls = 0, s.text[0] = 0;
    size_t leaked = arenalloc_leak_report(collect, &s);
    if (leaked < 3) fail("leak report counts the live blocks", (long)leaked, 3);
    if (!strstr(s.text, "leak report")) fail("leak text", (long)s.len, s.calls);
    printf("leaked %zu\n", leaked);

    fprintf(stderr, "to stderr:\n");
    arenalloc_stats_print(NULL, NULL);
    if (arenalloc_dump(NULL, NULL) != 0) fail("dump to stderr", 0, 0);
    arenalloc_leak_report(NULL, NULL);
    for (int i = 0; i < 3; i++) free(keep[i]);
    if (arenalloc_check() != 0) fail("arenalloc_check after", 0, 0);
    printf("ok header\n");
}

static void corrupt(void) {
    char *p = malloc(200);
    char *q = malloc(200);
    if (arenalloc_check() != 0) fail("check before", 0, 0);
    /* The size word of q's header (the 8 bytes before its payload). */
    memset(q - 8, 0x41, 8);
    int r = arenalloc_check();
    printf("check %d\n", r);
    fflush(stdout);
    (void)p;
    /* _exit: no free, no exit-time report over the corrupt header. */
    _exit(r == 1 ? 0 : 1);
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "libc")) libc_names();
    else if (!strcmp(c, "sized")) sized();
    else if (!strcmp(c, "sized-bad")) sized_bad(0);
    else if (!strcmp(c, "aligned-bad")) sized_bad(1);
    else if (!strcmp(c, "cxx")) cxx();
    else if (!strcmp(c, "cxx-oom")) cxx_oom();
    else if (!strcmp(c, "header")) header();
    else if (!strcmp(c, "corrupt")) corrupt();
    else fail("unknown case", 0, 0);
    return 0;
}
