// The C surface of the preload library from C++ (tests/preload/surface.rs;
// tests/c/surface.c is the C side): what a C++ program's new and delete
// expressions call, the new-handler protocol, and the C functions through
// their C++ declarations.
//
//   surface_cxx new        new/delete expressions: scalar, array, sized (the
//                          compiler's sized deletes), over-aligned, nothrow,
//                          std::vector/std::string/std::map churn; every
//                          block is arenalloc's (malloc_usable_size).
//   surface_cxx bad-alloc  a new of an impossible size throws std::bad_alloc
//                          (scalar, array, aligned); nothrow forms give
//                          nullptr; run with no new-handler.
//   surface_cxx handler    a new-handler that gives up after 3 calls (it
//                          uninstalls itself): new calls it 3 times, then
//                          throws std::bad_alloc; nothrow new likewise
//                          returns nullptr after 3 more.
//   surface_cxx reserve    a new-handler that frees a reserve: with a 64 MiB
//                          region (ARENALLOC_REGION_SIZE=64M), a 40 MiB block
//                          held, another 40 MiB new succeeds after the
//                          handler's one call (throwing and nothrow forms).
//   surface_cxx sized-bad  ::operator delete(::operator new(32), 48): prints
//                          "block <p>"; a checked heap aborts, a default one
//                          prints "survived".
//   surface_cxx array-bad  the same with operator new[] / delete[].
//   surface_cxx c          the C functions from C++: __libc_*, free_sized,
//                          and include/arenalloc.h (extern "C" linkage).
//
// Every case prints "ok <case>" on success; a failure prints what failed on
// stderr and exits 1.
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "arenalloc.h"

extern "C" {
void free_sized(void *ptr, std::size_t size);
void free_aligned_sized(void *ptr, std::size_t alignment, std::size_t size);
void *__libc_malloc(std::size_t);
void *__libc_calloc(std::size_t, std::size_t);
void *__libc_realloc(void *, std::size_t);
void *__libc_memalign(std::size_t, std::size_t);
void __libc_free(void *);
}

[[noreturn]] static void fail(const char *what, long a = 0, long b = 0) {
    std::fprintf(stderr, "surface_cxx: %s (%ld, %ld)\n", what, a, b);
    std::exit(1);
}

template <typename T>
static void ours(const T *p, std::size_t size, std::size_t align, const char *what) {
    if (!p) fail(what);
    void *v = const_cast<void *>(static_cast<const void *>(p));
    if (malloc_usable_size(v) < size) fail(what, (long)size, (long)malloc_usable_size(v));
    if (reinterpret_cast<std::uintptr_t>(v) % align) fail(what, (long)align);
}

struct alignas(256) Wide {
    char bytes[300];
};

struct Node {
    long value;
    Node *next;
    ~Node() { value = -1; }
};

static void news() {
    auto *i = new int(7);
    ours(i, sizeof(int), 16, "new int");
    delete i;  // sized delete (-fsized-deallocation, the C++14 default)
    auto *arr = new Node[100];  // a cookie: new[] of a type with a destructor
    // The block starts at the cookie (the element count), 8 bytes before.
    ours(reinterpret_cast<char *>(arr) - sizeof(std::size_t),
         100 * sizeof(Node) + sizeof(std::size_t), 16, "new Node[100]");
    delete[] arr;  // sized delete[] of size + cookie
    auto *w = new Wide;  // aligned new (alignas > 16)
    ours(w, sizeof(Wide), 256, "new Wide");
    delete w;
    auto *ws = new Wide[5];
    ours(ws, 5 * sizeof(Wide), 256, "new Wide[5]");
    delete[] ws;
    auto *n = new (std::nothrow) Node{1, nullptr};
    ours(n, sizeof(Node), 16, "nothrow new");
    delete n;
    auto *big = new char[3 << 20];
    ours(big, 3 << 20, 16, "new char[3 MiB]");
    delete[] big;
    std::map<std::string, std::vector<long>> m;
    for (long k = 0; k < 20000; k++) {
        auto &v = m[std::to_string(k * 7919 % 5000) + std::string(40, 'x')];
        v.push_back(k);
        if (k % 3 == 0) m.erase(m.begin());
    }
    long sum = 0;
    for (auto &kv : m) sum += (long)kv.second.size();
    if (sum == 0) fail("map churn");
    std::printf("ok new\n");
}

static void bad_alloc() {
    const std::size_t huge = std::size_t(1) << 62;
    int caught = 0;
    try {
        void *p = ::operator new(huge);
        fail("operator new(2^62) returned", (long)(std::uintptr_t)p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        void *p = ::operator new[](huge);
        fail("operator new[](2^62) returned", (long)(std::uintptr_t)p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        void *p = ::operator new(huge, std::align_val_t(64));
        fail("aligned operator new(2^62) returned", (long)(std::uintptr_t)p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    if (caught != 3) fail("bad_alloc caught", caught, 3);
    if (::operator new(huge, std::nothrow)) fail("nothrow new");
    if (::operator new[](huge, std::align_val_t(64), std::nothrow)) fail("nothrow aligned new[]");
    std::printf("ok bad-alloc\n");
}

static int handler_calls;

static void give_up_after_three() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

static void handler() {
    const std::size_t huge = std::size_t(1) << 62;
    std::set_new_handler(give_up_after_three);
    try {
        void *p = ::operator new(huge);
        fail("returned", (long)(std::uintptr_t)p);
    } catch (const std::bad_alloc &) {
    }
    if (handler_calls != 3) fail("handler calls before the throw", handler_calls, 3);
    handler_calls = 0;
    std::set_new_handler(give_up_after_three);
    if (::operator new(huge, std::nothrow)) fail("nothrow returned");
    if (handler_calls != 3) fail("handler calls before nullptr", handler_calls, 3);
    std::printf("ok handler\n");
}

static char *reserve;

static void free_reserve() {
    handler_calls++;
    delete[] reserve;
    reserve = nullptr;
    std::set_new_handler(nullptr);
}

static void reserve_case() {
    const std::size_t block = 40u << 20;
    for (int nothrow = 0; nothrow < 2; nothrow++) {
        handler_calls = 0;
        reserve = new char[block];
        std::memset(reserve, 1, block);
        std::set_new_handler(free_reserve);
        char *p = nothrow ? new (std::nothrow) char[block] : new char[block];
        if (!p) fail("second block after the handler", nothrow);
        if (handler_calls != 1 || reserve) fail("handler ran once", handler_calls, nothrow);
        ours(p, block, 16, "second block");
        delete[] p;
    }
    std::printf("ok reserve\n");
}

static void sized_bad(bool array) {
    void *p = array ? ::operator new[](32) : ::operator new(32);
    std::fprintf(stderr, "block %p\n", p);
    if (array)
        ::operator delete[](p, std::size_t(48));
    else
        ::operator delete(p, std::size_t(48));
    std::printf("survived\n");
}

static void count_line(void *opaque, const char *text) {
    auto *lines = static_cast<std::vector<std::string> *>(opaque);
    lines->emplace_back(text);  // allocates from inside the callback
}

static void c_functions() {
    void *a = __libc_malloc(100);
    ours(a, 100, 16, "__libc_malloc");
    a = __libc_realloc(a, 300);
    ours(a, 300, 16, "__libc_realloc");
    void *b = __libc_memalign(128, 10);
    ours(b, 10, 128, "__libc_memalign");
    auto *c = static_cast<char *>(__libc_calloc(4, 4));
    ours(c, 16, 16, "__libc_calloc");
    for (int i = 0; i < 16; i++)
        if (c[i]) fail("calloc zeroes", i);
    __libc_free(a);
    std::free(b);
    free_sized(c, 16);
    void *d = std::aligned_alloc(64, 128);
    free_aligned_sized(d, 64, 128);
    auto *keep = new long[6];
    if (arenalloc_check() != 0) fail("arenalloc_check");
    std::vector<std::string> lines;
    arenalloc_stats_print(count_line, &lines);
    if (lines.size() < 7 || lines[0].rfind("allocations", 0) != 0) fail("stats lines", (long)lines.size());
    lines.clear();
    if (arenalloc_dump(count_line, &lines) != 0 || lines.empty()) fail("dump", (long)lines.size());
    lines.clear();
    std::size_t leaked = arenalloc_leak_report(count_line, &lines);
    if (leaked < 1 || lines.empty()) fail("leak report", (long)leaked);
    delete[] keep;
    std::printf("ok c\n");
}

int main(int argc, char **argv) {
    std::string c = argc > 1 ? argv[1] : "";
    if (c == "new") news();
    else if (c == "bad-alloc") bad_alloc();
    else if (c == "handler") handler();
    else if (c == "reserve") reserve_case();
    else if (c == "sized-bad") sized_bad(false);
    else if (c == "array-bad") sized_bad(true);
    else if (c == "c") c_functions();
    else fail("unknown case");
    return 0;
}
