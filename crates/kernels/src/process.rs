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
