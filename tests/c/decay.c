/* Memory back to the OS under LD_PRELOAD (issue 11): each mode prints one
 * "ok <mode> ..." line with the figures the Rust side (tests/preload/
 * decay.rs) asserts on, or exits non-zero.
 *
 *   remote MIB [GOAL]
 *                4 threads allocate MIB MiB of 16-512 B blocks (every byte
 *                written) and stay alive and idle; the main thread frees
 *                every block (remote frees) and then calls nothing that
 *                allocates: it reads its RSS with open/read every 10 ms for
 *                up to 3 s. Prints the RSS with everything live, right
 *                after the frees, and the first time it fell to GOAL MiB
 *                (default 16) or less (with the milliseconds it took),
 *                else -1.
 *   trim MIB     the same frees with ARENALLOC_PURGE_MS=-1 set by the
 *                caller, then malloc_trim(0): RSS before and after.
 *   lastexit     the heap passes 16 MiB (so the decay thread starts), then
 *                the main thread calls pthread_exit while a worker runs:
 *                the process must end when the worker does (exit status 0).
 *   forkthread   the same, in a child forked from a non-main thread whose
 *                thread then returns (Python's test_threading does this):
 *                the parent prints the child's exit status.
 *   exhaust      14 threads at once each malloc and free one 100-byte
 *                block and exit; then malloc(3 MiB) three times (run with
 *                ARENALLOC_REGION_SIZE=64M): how many were served.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4

static size_t per_thread;
static void **blocks[THREADS];
static size_t counts[THREADS];
static pthread_barrier_t filled, released;

/* RSS in KiB from /proc/self/statm, without allocating. */
static long rss_kib(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strchr(buf, ' ');
    return p ? atol(p + 1) * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *fill(void *arg) {
    long id = (long)arg;
    size_t cap = per_thread / 16 + 1, n = 0, bytes = 0;
    void **v = malloc(cap * sizeof *v);
    unsigned s = (unsigned)id * 7919u + 1u;
    while (bytes < per_thread && n < cap) {
        s = s * 1103515245u + 12345u;
        size_t size = 16 + (s >> 8) % 497;
        void *p = malloc(size);
        if (!p) { fprintf(stderr, "malloc failed\n"); exit(2); }
        memset(p, 0xa5, size);
        v[n++] = p;
        bytes += size;
    }
    blocks[id] = v;
    counts[id] = n;
    pthread_barrier_wait(&filled);
    pthread_barrier_wait(&released); /* alive and idle meanwhile */
    return NULL;
}

/* Fills with THREADS threads and frees everything from this thread. */
static void burst(size_t mib, long *live_kib, long *freed_kib, pthread_t *t) {
    per_thread = (mib << 20) / THREADS;
    pthread_barrier_init(&filled, NULL, THREADS + 1);
    pthread_barrier_init(&released, NULL, THREADS + 1);
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, fill, (void *)i);
    pthread_barrier_wait(&filled);
    *live_kib = rss_kib();
    for (int i = 0; i < THREADS; i++) {
        for (size_t j = 0; j < counts[i]; j++) free(blocks[i][j]);
        free(blocks[i]);
    }
    *freed_kib = rss_kib();
}

static void finish(pthread_t *t) {
    pthread_barrier_wait(&released);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
}

static void *touch(void *arg) {
    pthread_barrier_t *start = arg;
    pthread_barrier_wait(start);
    void *p = malloc(100);
    if (!p) exit(3);
    free(p);
    pthread_barrier_wait(start);
    return NULL;
}

/* Takes the heap past 16 MiB and frees it: the next allocation starts the
 * decay thread, which then parks. */
static void start_decay_thread(void) {
    void *v[40];
    for (int i = 0; i < 40; i++) { v[i] = malloc(512 << 10); memset(v[i], 1, 512 << 10); }
    for (int i = 0; i < 40; i++) free(v[i]);
    free(malloc(300 << 10));
}

static void *short_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) free(malloc(64));
    puts("ok worker done");
    fflush(stdout);
    return NULL;
}

static void *forking_thread(void *arg) {
    (void)arg;
    pid_t child = fork();
    if (child == 0) {
        /* The child's only thread: an allocation slow path (the heap it
         * inherited holds 16 MiB: the child starts its own decay thread),
         * then it returns, which is a pthread_exit of the last thread
         * (glibc then exits with 0). */
        free(malloc(300 << 10));
        return NULL;
    }
    /* A child that does not end within 10 s hangs: kill it, say so. */
    int status = 0;
    double t0 = now_ms();
    while (waitpid(child, &status, WNOHANG) == 0) {
        if (now_ms() - t0 > 10000) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            puts("ok forkthread child hung");
            fflush(stdout);
            return NULL;
        }
        usleep(10000);
    }
    printf("ok forkthread child %s %d\n", WIFEXITED(status) ? "exited" : "killed",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    fflush(stdout);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 256;
    pthread_t t[THREADS];
    if (!strcmp(mode, "remote")) {
        long live, freed, fell = -1, fell_ms = -1;
        burst(mib, &live, &freed, t);
        double t0 = now_ms();
        long goal = argc > 3 ? atol(argv[3]) * 1024 : 16 * 1024;
        while (now_ms() - t0 < 3000) {
            long r = rss_kib();
            if (r >= 0 && r <= goal) { fell = r; fell_ms = (long)(now_ms() - t0); break; }
            usleep(10000);
        }
        finish(t);
        printf("ok remote live_kib %ld freed_kib %ld fell_kib %ld fell_ms %ld\n", live, freed, fell, fell_ms);
        return 0;
    }
    if (!strcmp(mode, "trim")) {
        long live, freed;
        burst(mib, &live, &freed, t);
        int released = malloc_trim(0);
        long after = rss_kib();
        finish(t);
        printf("ok trim live_kib %ld freed_kib %ld trimmed_kib %ld returned %d\n", live, freed, after, released);
        return 0;
    }
    if (!strcmp(mode, "lastexit")) {
        start_decay_thread();
        pthread_t w;
        pthread_create(&w, NULL, short_worker, NULL);
        pthread_exit(NULL);
    }
    if (!strcmp(mode, "forkthread")) {
        start_decay_thread();
        pthread_t w;
        pthread_create(&w, NULL, forking_thread, NULL);
        pthread_join(w, NULL);
        return 0;
    }
    if (!strcmp(mode, "exhaust")) {
        pthread_t th[14];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 14);
        for (int i = 0; i < 14; i++) pthread_create(&th[i], NULL, touch, &start);
        for (int i = 0; i < 14; i++) pthread_join(th[i], NULL);
        int served = 0;
        void *big[3];
        for (int i = 0; i < 3; i++) {
            big[i] = malloc(3 << 20);
            if (big[i]) { memset(big[i], 1, 3 << 20); served++; }
        }
        for (int i = 0; i < 3; i++) free(big[i]);
        printf("ok exhaust served %d\n", served);
        return 0;
    }
    fprintf(stderr, "usage: decay remote|trim MIB | exhaust\n");
    return 1;
}
