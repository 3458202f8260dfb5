//! What the AMX kernels ([`crate::bf16`], [`crate::int8`]) share: whether the CPU and the
//! operating system let this process use the tiles, the tile configuration, and the tile
//! prefetch.
//!
//! AMX needs the CPU bits (CPUID leaf 7: AMX-TILE and the unit's AMX-BF16 or AMX-INT8) and
//! Linux's permission to use tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`, asked
//! once per process); the kernels' epilogues also need AVX-512.

use std::sync::OnceLock;

use super::Isa;

/// An AMX compute unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// `tdpbf16ps`.
    Bf16,
    /// `tdpbusd` and its signed/unsigned siblings.
    Int8,
}

/// Whether `unit`'s kernels can run here (checked once per unit).
pub(crate) fn available(unit: Unit) -> bool {
    static BF16: OnceLock<bool> = OnceLock::new();
    static INT8: OnceLock<bool> = OnceLock::new();
    let cell = match unit {
        Unit::Bf16 => &BF16,
        Unit::Int8 => &INT8,
    };
    *cell.get_or_init(|| Isa::Avx512.available() && cpu_has(unit) && permitted())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn cpu_has(unit: Unit) -> bool {
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let bit = |b: u32| (leaf7.edx >> b) & 1 == 1;
    let unit_bit = match unit {
        Unit::Bf16 => 22,
        Unit::Int8 => 25,
    };
    bit(24) && bit(unit_bit)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn cpu_has(_unit: Unit) -> bool {
    false
}

/// Linux's permission for tile data, asked once.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn permitted() -> bool {
    static PERM: OnceLock<bool> = OnceLock::new();
    *PERM.get_or_init(|| {
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) only changes this process's
        // permission to use AMX state; it clobbers rcx and r11 like every syscall.
        unsafe {
            std::arch::asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
                 in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    })
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn permitted() -> bool {
    false
}

/// Palette 1, all eight tiles 16 rows x 64 bytes (what every AMX kernel here uses).
#[repr(C, align(64))]
pub(crate) struct TileConfig(pub(crate) [u8; 64]);

pub(crate) fn config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1;
    for t in 0..8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
    }
    TileConfig(c)
}

/// Prefetches the 16 cache lines of a 1 KiB tile at `p` (row stride `stride` bytes) into
/// L1 (a hint: never faults, so it may run past the end of a buffer).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_tile<T>(p: *const T, stride: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let p = p as *const i8;
    for line in 0..16 {
        // SAFETY: a prefetch only hints the cache; it reads nothing and never faults,
        // whatever the address (SSE, which x86-64 always has).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line * stride)) };
    }
}
