/* fork at any instant: six threads churn 16 B - 1 KiB blocks (their own
 * and each other's: a shared mailbox makes every fourth free a remote one)
 * while the main thread forks FORKS times. Each child starts eight threads
 * that allocate, free each other's blocks and call malloc_trim(0), then
 * exits 0; the parent counts children that did not. Prints
 * "forks N failed M" and exits 1 if any child failed.
 *
 *   cc -O2 -pthread fork_storm.c -o fork_storm && LD_PRELOAD=... ./fork_storm [FORKS]
 */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHURNERS 6
#define SLOTS 256
#define MAILBOX 64
#define CHILD_THREADS 8
#define CHILD_ROUNDS 4000

static atomic_int stop;
static _Atomic(void *) mailbox[MAILBOX];

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t pick_size(uint64_t *s) { return 16 + next_rand(s) % 1009; }

/* Takes what the mailbox holds at a random slot and puts p there: the
 * block taken (if any) was allocated by another thread, so freeing it is
 * a remote free. */
static void swap_through_mailbox(uint64_t *s, void *p) {
    void *old = atomic_exchange(&mailbox[next_rand(s) % MAILBOX], p);
    free(old);
}

static void *churn(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    void *slot[SLOTS] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned i = next_rand(&s) % SLOTS;
        if (slot[i]) {
            if (next_rand(&s) % 4 == 0)
                swap_through_mailbox(&s, slot[i]);
            else
                free(slot[i]);
            slot[i] = NULL;
        } else {
            size_t n = pick_size(&s);
            slot[i] = malloc(n);
            if (!slot[i])
                abort();
            memset(slot[i], (int)i, n < 32 ? n : 32);
        }
    }
    for (unsigned i = 0; i < SLOTS; i++)
        free(slot[i]);
    return NULL;
}

/* In the child: blocks written with a pattern, handed between the child's
 * threads, checked and freed by whoever takes them. */
static _Atomic(unsigned char *) child_box[CHILD_THREADS * 4];

static void *child_work(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x2545f4914f6cdd1dull + 7;
    for (int r = 0; r < CHILD_ROUNDS; r++) {
        size_t n = pick_size(&s);
        unsigned char *p = malloc(n);
        if (!p)
            _exit(3);
        p[0] = (unsigned char)n;
        p[n - 1] = (unsigned char)(n >> 3);
        memcpy(p + 1, &n, sizeof n); /* n >= 16 */
        unsigned char *q = atomic_exchange(&child_box[next_rand(&s) % (CHILD_THREADS * 4)], p);
        if (q) {
            size_t m;
            memcpy(&m, q + 1, sizeof m);
            if (m < 16 || m > 1024 || q[0] != (unsigned char)m || q[m - 1] != (unsigned char)(m >> 3))
                _exit(4); /* a block changed under us: the heap handed it out twice */
            free(q);
        }
        if (r % 1000 == 999)
            malloc_trim(0);
    }
    return NULL;
}

static int child(void) {
    pthread_t t[CHILD_THREADS];
    for (uintptr_t i = 0; i < CHILD_THREADS; i++)
        if (pthread_create(&t[i], NULL, child_work, (void *)(i + 1)))
            return 2;
    for (int i = 0; i < CHILD_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < CHILD_THREADS * 4; i++)
        free(atomic_exchange(&child_box[i], NULL));
    return 0;
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 300;
    pthread_t t[CHURNERS];
    for (uintptr_t i = 0; i < CHURNERS; i++)
        if (pthread_create(&t[i], NULL, churn, (void *)(i + 1)))
            return 2;
    int failed = 0;
    for (int f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0)
            _exit(child());
        int status = 0;
        if (waitpid(pid, &status, 0) != pid)
            return 2;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "child %d: signal %d\n", f, WTERMSIG(status));
            else
                fprintf(stderr, "child %d: exit %d\n", f, WEXITSTATUS(status));
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < CHURNERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < MAILBOX; i++)
        free(atomic_exchange(&mailbox[i], NULL));
    printf("forks %d failed %d\n", forks, failed);
    return failed != 0;
}
