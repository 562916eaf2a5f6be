/* The bugs concurrent programs have, one per case, for stress mode
 * (tests/preload/stress_mode.rs) and for the detection table in benches/RESULTS.md,
 * which runs the same binary under arenalloc's stress mode, glibc with
 * MALLOC_CHECK_=3 MALLOC_PERTURB_=165, and built with -fsanitize=address.
 *
 *   bugs uaf         thread A allocates 64 bytes and hands them to thread
 *                    B, which frees them; A then writes byte 24 (a late
 *                    write by the thread that still had the pointer).
 *   bugs overflow1   A allocates 64 bytes and writes 65 (one past the
 *                    end); B frees the block.
 *   bugs overflow16  the same, 80 bytes written (16 past the end).
 *   bugs uninit      A allocates a struct and hands it to B without
 *                    initialising it; B branches on its `ready` field.
 *   bugs leak        A leaks 3 blocks of 100 bytes, B 2 of 4000.
 *
 * Threads are ordered by joins only (no sleeps). Every case prints
 * "alloc tid <A> block <p>" and "free tid <B>" (the kernel thread ids of
 * the two threads and the block's address, flushed at once) so that the
 * test can match the report, then "ok" when it reaches its end (a detector that aborts stops
 * it before). With no detector the program exits 0 and prints nothing on
 * stderr: the bugs are silent — except `uninit`, whose branch prints
 * "uninitialised: ready = 0x…" on stdout when the field is not zero.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

struct node {
    unsigned ready;
    unsigned len;
    char data[56];
};

static char *volatile block;
static volatile long tid_a, tid_b;
static const char *which;

static long tid(void) { return syscall(SYS_gettid); }

/* Thread B: frees the block (uaf, overflow*), reads it (uninit), leaks
 * (leak). */
static void *thread_b(void *arg) {
    (void)arg;
    tid_b = tid();
    printf("free tid %ld\n", tid_b);
    fflush(stdout);
    if (!strcmp(which, "uninit")) {
        struct node *n = (struct node *)block;
        if (n->ready != 0)
            printf("uninitialised: ready = 0x%x\n", n->ready);
        free(n);
    } else if (!strcmp(which, "leak")) {
        for (int i = 0; i < 2; i++) {
            char *p = malloc(4000);
            p[0] = 1;
        }
    } else {
        free(block);
    }
    return NULL;
}

/* Thread A: allocates, does its write, hands over to B, and (uaf) writes
 * after B's free. */
static void *thread_a(void *arg) {
    (void)arg;
    tid_a = tid();
    pthread_t b;
    if (!strcmp(which, "leak")) {
        for (int i = 0; i < 3; i++) {
            char *p = malloc(100);
            p[0] = 1;
        }
        block = malloc(1);
        free(block);
    } else if (!strcmp(which, "uninit")) {
        block = malloc(sizeof(struct node));
    } else {
        block = malloc(64);
        memset(block, 'a', 64);
        if (!strcmp(which, "overflow1"))
            block[64] = 'x';
        else if (!strcmp(which, "overflow16"))
            memset(block + 64, 'x', 16);
    }
    printf("alloc tid %ld block %p\n", tid_a, (void *)block);
    fflush(stdout);
    pthread_create(&b, NULL, thread_b, NULL);
    pthread_join(b, NULL);
    if (!strcmp(which, "uaf"))
        block[24] = 'x';
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bugs uaf|overflow1|overflow16|uninit|leak\n");
        return 2;
    }
    which = argv[1];
    pthread_t a;
    pthread_create(&a, NULL, thread_a, NULL);
    pthread_join(a, NULL);
    printf("ok\n");
    return 0;
}
