//! Process-wide settings the kernels' workloads depend on.

/// Tells glibc's allocator to keep freed memory for reuse instead of handing it back to the
/// operating system. A training step allocates and frees the same few hundred megabytes of
/// activations and gradients (buffers of 1 to 30 MB); with glibc's defaults many of them come
/// from fresh `mmap`s or a re-grown heap, so every step pays a page fault and a page clear per
/// 4 KiB. With this, allocations up to 32 MiB (glibc's largest mmap threshold) come from the
/// heap, which is trimmed only past 1 GiB of free space at its top.
///
/// Process-wide; call once, before the threads that allocate start. A no-op off glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: `mallopt` has this C signature in glibc, takes plain integers and only
        // changes allocator tunables (glibc rejects values out of range); it is safe to call
        // at any time, from any thread.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Hands the free pages inside glibc's heaps back to the operating system (`malloc_trim`).
///
/// A server that loads and evicts task bundles frees a few megabytes per eviction, in chunks
/// below glibc's mmap threshold (one adapter matrix is ~100 KB) and interleaved with live
/// allocations, so glibc's own trimming (only at the top of a heap) returns almost none of
/// it: measured on `adalbert serve` with 64 tasks and a cap of 8 loaded, resident memory grew
/// from 191 to 572 MiB over 3 rounds of loads, and a `malloc_trim` brought it back to 232.
/// Costs a walk over the heaps (about a millisecond at these sizes), so call it after an
/// eviction or unload, not per request. Returns whether memory was released; `false` off
/// glibc, where it does nothing.
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: `malloc_trim` has this C signature in glibc, takes a plain integer and only
        // walks glibc's own heaps under their locks; it is safe to call from any thread.
        unsafe { malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_free_heap_returns_freed_small_chunks_on_glibc() {
        // Many ~100 KB blocks (below the mmap threshold) with every other one kept, so the
        // freed ones sit inside the heap where glibc's automatic trimming cannot reach.
        let mut blocks: Vec<Vec<u8>> = (0..400).map(|i| vec![i as u8; 100_000]).collect();
        let kept: Vec<Vec<u8>> = blocks.drain(..).step_by(2).collect();
        let released = release_free_heap();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "20 MB of freed chunks should be released");
        } else {
            assert!(!released);
        }
        assert_eq!(kept.len(), 200);
        assert!(kept.iter().enumerate().all(|(i, b)| b[0] == (2 * i) as u8));
    }
}
