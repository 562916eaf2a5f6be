//! Remote: the queue through which threads that do not own a block hand it
//! back to the owning arena.
//!
//! The protocol (`_mt` = may run on any thread):
//!
//! 1. `claim_mt`: a foreign thread validates the pointer against the chunk's
//!    start bitmap and the block header, then sets the header's
//!    `REMOTE_PENDING` flag with a compare-exchange. Only one free of a
//!    block can win this, so a second free of the same block — remote or
//!    local, before or after the drain — is reported as `DoubleFree` at once
//!    and deterministically. From here on the block is not live for the
//!    user (`is_allocated` is false) though it is still counted live.
//! 2. The pointer is pushed on the owner's [`RemoteQueue`] (a
//!    `crossbeam_queue::ArrayQueue<usize>`, capacity fixed at arena creation,
//!    lock-free, allocated once). If the queue is full, the foreign thread
//!    takes the owner's lock, drains a batch, and frees the block directly.
//! 3. Whoever holds the arena lock — the owner on its own alloc/free path,
//!    an adopter, `check`, `stats` — drains in bounded batches
//!    (`DRAIN_BATCH`): each entry must be a pending block of the arena, and
//!    is freed and coalesced like a local free.
//!
//! Invariant: every pointer in the queue is a block of the queue's arena
//! whose header has `REMOTE_PENDING` set, and every such block is either in
//! the queue or in the hands of a thread between steps 1 and 2. So no free
//! is lost: after all threads join, draining every queue leaves each block
//! live or free.
//!
//! Under `cfg(loom)` the queue is a loom-modelled `Mutex<VecDeque>` with the
//! same interface and the same full/empty behaviour.

/// Entries an arena drains per lock acquisition on its alloc/free path.
pub(crate) const DRAIN_BATCH: usize = 64;

/// A bounded multi-producer queue of block payload addresses.
pub(crate) struct RemoteQueue {
    #[cfg(not(loom))]
    queue: crossbeam_queue::ArrayQueue<usize>,
    #[cfg(loom)]
    queue: loom::sync::Mutex<std::collections::VecDeque<usize>>,
    #[cfg(loom)]
    capacity: usize,
}

impl RemoteQueue {
    /// A queue of `capacity` slots. Allocates its buffer through the global
    /// allocator: call it with no heap lock held.
    pub(crate) fn new(capacity: usize) -> RemoteQueue {
        #[cfg(not(loom))]
        {
            RemoteQueue {
                queue: crossbeam_queue::ArrayQueue::new(capacity),
            }
        }
        #[cfg(loom)]
        {
            let q = std::collections::VecDeque::with_capacity(capacity);
            RemoteQueue {
                queue: loom::sync::Mutex::new(q),
                capacity,
            }
        }
    }

    /// Bytes the buffer of a queue of `capacity` slots asks the allocator
    /// for (an upper bound: a stamp and a value per slot).
    pub(crate) const fn buffer_bytes(capacity: usize) -> usize {
        capacity * 2 * core::mem::size_of::<usize>()
    }

    /// Pushes `addr`; gives it back if the queue is full.
    #[inline]
    pub(crate) fn push_mt(&self, addr: usize) -> Result<(), usize> {
        #[cfg(not(loom))]
        {
            self.queue.push(addr)
        }
        #[cfg(loom)]
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() == self.capacity {
                return Err(addr);
            }
            q.push_back(addr);
            Ok(())
        }
    }

    /// Pops the oldest entry.
    #[inline]
    pub(crate) fn pop(&self) -> Option<usize> {
        #[cfg(not(loom))]
        {
            self.queue.pop()
        }
        #[cfg(loom)]
        {
            self.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
        }
    }

    /// Whether the queue looks empty (exact when no push is in flight).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(not(loom))]
        {
            self.queue.is_empty()
        }
        #[cfg(loom)]
        {
            self.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        }
    }
}
