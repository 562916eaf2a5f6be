/* A use-after-free race whose window contains a malloc, for stress mode's
 * schedule jitter (issue 20):
 *
 *   race_window SWAPS [READER_WORK WRITER_WORK]
 *
 * A writer thread publishes a message, and SWAPS times replaces it with a
 * new one and frees the old one at once. A reader thread borrows the
 * current message without taking a reference — the bug — allocates a
 * small note (the malloc inside the window), and then counts a hit in the
 * message it borrowed. If the writer freed that message between the
 * reader's load and its write, the write lands in freed memory: in stress
 * mode, in a quarantined block whose poison the exit sweep (or an
 * eviction) finds changed, and the run ends with "arenalloc: use-after-free
 * write at …". Each side does READER_WORK / WRITER_WORK rounds of busy
 * work outside the window (defaults 400000 and 200000), so the window is a
 * small part of the reader's loop and the race is rare on its own.
 *
 * No sleeps, no timing: the threads only spin on atomics. Prints
 * "ok <swaps> <reader loops>" when it reaches its end.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct msg {
    long seq;
    long hits;
    char body[48];
};

static _Atomic(struct msg *) current;
static atomic_int done;
static atomic_int reader_started;
static int swaps;
static unsigned reader_work = 400000, writer_work = 200000;

static void work(unsigned n) {
    volatile unsigned x = 0;
    for (unsigned i = 0; i < n; i++) x += i;
}

static struct msg *new_msg(long seq) {
    struct msg *m = malloc(sizeof *m);
    if (!m) abort();
    m->seq = seq;
    m->hits = 0;
    return m;
}

static void *reader(void *arg) {
    long loops = 0;
    (void)arg;
    /* The thread's first malloc binds it to an arena (slow, once): done
     * before the writer starts, so that it does not widen the window. */
    free(malloc(24));
    atomic_store(&reader_started, 1);
    while (!atomic_load(&done)) {
        struct msg *m = atomic_load(&current); /* borrowed: no reference */
        char *note = malloc(24);                /* the window contains a malloc */
        if (note) note[0] = (char)loops;
        m->hits++;                              /* a use after free if m was replaced and freed */
        free(note);
        work(reader_work);
        loops++;
    }
    return (void *)loops;
}

static void *writer(void *arg) {
    (void)arg;
    free(malloc(sizeof(struct msg))); /* binds this thread too */
    while (!atomic_load(&reader_started)) {
    }
    for (long j = 1; j <= swaps; j++) {
        work(writer_work);
        struct msg *old = atomic_exchange(&current, new_msg(j));
        free(old); /* BUG: the reader may still hold `old` */
    }
    atomic_store(&done, 1);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: race_window SWAPS [READER_WORK WRITER_WORK]\n");
        return 2;
    }
    swaps = atoi(argv[1]);
    if (argc >= 4) {
        reader_work = (unsigned)atol(argv[2]);
        writer_work = (unsigned)atol(argv[3]);
    }
    atomic_store(&current, new_msg(0));
    pthread_t r, w;
    void *loops;
    pthread_create(&r, NULL, reader, NULL);
    pthread_create(&w, NULL, writer, NULL);
    pthread_join(w, NULL);
    pthread_join(r, &loops);
    printf("ok %d %ld\n", swaps, (long)loops);
    free(atomic_load(&current));
    return 0;
}
