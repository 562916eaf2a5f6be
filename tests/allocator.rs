//! `Allocator` for `&Heap`: collections whose memory comes from a heap of
//! their own, through allocator-api2 (feature `allocator-api2`: its `Vec`
//! and `Box`, hashbrown's `HashMap`) and through the standard library's
//! unstable trait (feature `nightly`: `std::vec::Vec::new_in`). Each test
//! checks that the blocks are the heap's, that the contents survive growth
//! and moves, and that dropping the collection gives every block back.
//!
//! `cargo test --release --features allocator-api2 --test allocator`;
//! `cargo +nightly test --release --features nightly,allocator-api2 --test allocator`.
#![cfg(any(feature = "allocator-api2", feature = "nightly"))]
#![cfg_attr(feature = "nightly", feature(allocator_api))]

use arenalloc::{Config, Heap, Stress};

fn heap(config: Config) -> Heap {
    Heap::with_config(config.region_size(512 << 20))
}

/// The configurations every collection test runs in: default, hardened
/// (the size `deallocate` is given is checked), stress mode (the request
/// must match exactly).
fn configs() -> [Config; 3] {
    [
        Config::new(),
        Config::new().hardened(true),
        Config::new().stress(Stress::new()),
    ]
}

fn assert_empty(heap: &Heap) {
    heap.check().unwrap();
    let s = heap.stats();
    assert_eq!(s.live_blocks(), 0, "every block given back");
    assert!(s.allocations() > 0, "the heap served the collection");
}

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::{Allocator, Layout};
    use allocator_api2::boxed::Box;
    use allocator_api2::vec::Vec;

    #[test]
    fn vec_grows_in_the_heap_and_gives_every_block_back() {
        for config in configs() {
            let heap = heap(config);
            let mut v: Vec<u64, &Heap> = Vec::new_in(&heap);
            for i in 0..200_000u64 {
                v.push(i * 7);
                if i.is_power_of_two() {
                    assert!(heap.is_allocated(v.as_ptr().cast()));
                }
            }
            // Past the large threshold (grown in place or moved to a run).
            assert!(heap.usable_size(v.as_ptr().cast()).unwrap() >= 200_000 * 8);
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 7));
            v.truncate(10);
            v.shrink_to_fit();
            assert!(heap.usable_size(v.as_ptr().cast()).unwrap() >= 80);
            assert_eq!(v.iter().sum::<u64>(), 7 * 45);
            let b = Box::new_in([3u8; 100], &heap);
            assert!(heap.is_allocated(b.as_ptr()));
            drop((v, b));
            assert_empty(&heap);
        }
    }

    #[test]
    fn hashbrown_map_lives_in_the_heap() {
        for config in configs() {
            let heap = heap(config);
            let mut m = hashbrown::HashMap::new_in(&heap);
            for i in 0..20_000u32 {
                m.insert(i, i.wrapping_mul(2_654_435_761));
            }
            for i in (0..20_000u32).step_by(2) {
                m.remove(&i);
            }
            assert_eq!(m.len(), 10_000);
            assert!((1..20_000u32)
                .step_by(2)
                .all(|i| m[&i] == i.wrapping_mul(2_654_435_761)));
            assert!(heap.stats().allocated_bytes() >= 10_000 * 8);
            m.shrink_to_fit();
            drop(m);
            assert_empty(&heap);
        }
    }

    #[test]
    fn grow_and_shrink_keep_contents_and_the_new_alignment() {
        for config in configs() {
            let heap = heap(config);
            let a = &heap;
            let small = Layout::from_size_align(24, 8).unwrap();
            let p = a.allocate(small).unwrap();
            assert_eq!(p.len(), 24);
            let p = p.cast::<u8>();
            // SAFETY: `p` holds 24 bytes; each step passes the live block
            // with the layout it was last given and uses only the result.
            unsafe {
                p.as_ptr().write_bytes(0x5a, 24);
                let big = Layout::from_size_align(5000, 4096).unwrap();
                let q = a.grow_zeroed(p, small, big).unwrap().cast::<u8>();
                assert_eq!(q.as_ptr() as usize % 4096, 0, "grow took the new alignment");
                let s = core::slice::from_raw_parts(q.as_ptr(), 5000);
                assert!(s[..24].iter().all(|&b| b == 0x5a));
                assert!(
                    s[24..].iter().all(|&b| b == 0),
                    "grow_zeroed zeroes the rest"
                );
                let tiny = Layout::from_size_align(8, 4096).unwrap();
                let r = a.shrink(q, big, tiny).unwrap();
                assert_eq!(r.len(), 8);
                let r = r.cast::<u8>();
                assert_eq!(*r.as_ptr().add(7), 0x5a);
                let zero = Layout::from_size_align(0, 1).unwrap();
                let z = a.allocate(zero).unwrap().cast::<u8>();
                assert!(heap.is_allocated(z.as_ptr()), "a zero-size block is real");
                a.deallocate(z, zero);
                a.deallocate(r, tiny);
            }
            heap.check().unwrap();
            assert_eq!(heap.stats().live_blocks(), 0);
        }
    }
}

#[cfg(feature = "nightly")]
mod nightly {
    use super::*;

    #[test]
    fn std_vec_new_in_uses_the_heap() {
        for config in configs() {
            let heap = heap(config);
            let mut v: Vec<String, &Heap> = Vec::new_in(&heap);
            for i in 0..1000 {
                v.push(i.to_string());
            }
            assert!(heap.is_allocated(v.as_ptr().cast()));
            assert_eq!(v[999], "999");
            let b = Box::new_in(42u128, &heap);
            assert!(heap.is_allocated((&*b as *const u128).cast()));
            drop((v, b));
            assert_empty(&heap);
        }
    }
}
