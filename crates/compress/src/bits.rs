//! A growable, bit-addressable store: the physical image of codes in memory.
//!
//! Codes of `b` bits are packed back to back, least significant bit first, into `u64`
//! words. Fault injection works on this image, so a cell of an MLC memory can straddle
//! two codes exactly as it would in hardware. One zero word is always kept past the
//! end so that a read of up to 32 bits at any valid position never needs a bounds
//! branch.

/// Bit-packed storage of `len` bits, LSB first.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PackedBits {
    /// `len.div_ceil(64) + 1` words; the last is padding and always zero.
    words: Vec<u64>,
    len: usize,
}

impl PackedBits {
    /// `len` zero bits.
    pub fn zeros(len: usize) -> Self {
        PackedBits {
            words: vec![0; len.div_ceil(64) + 1],
            len,
        }
    }

    /// Packs each code's low `bits` bits (1..=32); higher bits are ignored.
    pub fn pack(codes: &[u32], bits: u32) -> Self {
        let mut w = BitWriter::with_capacity(codes.len() * bits as usize);
        let mask = low_mask(bits);
        for &c in codes {
            w.push(u64::from(c) & mask, bits);
        }
        w.finish()
    }

    /// Unpacks `out.len()` codes of `bits` bits from the start of the store.
    /// Codes past the end read as zero.
    pub fn unpack(&self, bits: u32, out: &mut [u32]) {
        let mut pos = 0usize;
        for o in out.iter_mut() {
            *o = self.get(pos, bits) as u32;
            pos += bits as usize;
        }
    }

    /// Number of valid bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no bit is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `n` (0..=32) bits at bit position `pos`; bits past `len` read as zero.
    #[inline]
    pub fn get(&self, pos: usize, n: u32) -> u64 {
        let idx = pos / 64;
        if idx + 1 >= self.words.len() {
            return self.tail_get(pos, n);
        }
        let pair = (u128::from(self.words[idx + 1]) << 64) | u128::from(self.words[idx]);
        ((pair >> (pos % 64)) as u64) & low_mask(n) & self.valid_mask(pos, n)
    }

    /// Slow path of [`get`](Self::get) for the last word.
    fn tail_get(&self, pos: usize, n: u32) -> u64 {
        let idx = pos / 64;
        match self.words.get(idx) {
            Some(&w) => (w >> (pos % 64)) & low_mask(n) & self.valid_mask(pos, n),
            None => 0,
        }
    }

    /// Mask of the bits of an `n`-bit read at `pos` that lie below `len`.
    #[inline]
    fn valid_mask(&self, pos: usize, n: u32) -> u64 {
        let avail = self.len.saturating_sub(pos).min(n as usize) as u32;
        low_mask(avail)
    }

    /// Writes the low `n` (0..=32) bits of `value` at `pos`; bits past `len` are dropped.
    pub fn set(&mut self, pos: usize, n: u32, value: u64) {
        let n = n.min(self.len.saturating_sub(pos) as u32);
        for i in 0..n as usize {
            let bit = (value >> i) & 1;
            let p = pos + i;
            let w = &mut self.words[p / 64];
            *w = (*w & !(1u64 << (p % 64))) | (bit << (p % 64));
        }
    }

    /// Inverts the bit at `pos` (ignored past `len`).
    pub fn flip(&mut self, pos: usize) {
        if pos < self.len {
            self.words[pos / 64] ^= 1u64 << (pos % 64);
        }
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The packed words (including the trailing zero padding word).
    pub fn words(&self) -> &[u64] {
        &self.words
    }
}

/// `n` low bits set (n in 0..=64).
#[inline]
pub(crate) fn low_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Appends bit fields to a [`PackedBits`] without per-element allocation.
pub(crate) struct BitWriter {
    words: Vec<u64>,
    acc: u64,
    fill: u32,
    len: usize,
}

impl BitWriter {
    /// A writer with room for `bits` bits.
    pub(crate) fn with_capacity(bits: usize) -> Self {
        BitWriter {
            words: Vec::with_capacity(bits.div_ceil(64) + 1),
            acc: 0,
            fill: 0,
            len: 0,
        }
    }

    /// Appends the low `n` (0..=32) bits of `value`, which must have no higher bit set.
    /// `n == 0` appends nothing, which lets callers skip an element without a branch.
    #[inline(always)]
    pub(crate) fn push(&mut self, value: u64, n: u32) {
        self.acc |= value << self.fill;
        self.fill += n;
        self.len += n as usize;
        if self.fill >= 64 {
            self.words.push(self.acc);
            self.fill -= 64;
            // The bits of `value` that did not fit; `value >> n` is 0 when fill is 0.
            self.acc = value >> (n - self.fill);
        }
    }

    /// Closes the stream, adding the partial word and the padding word.
    pub(crate) fn finish(mut self) -> PackedBits {
        if self.fill > 0 {
            self.words.push(self.acc);
        }
        self.words.push(0);
        PackedBits {
            words: self.words,
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lsb_first_across_word_boundaries() {
        // Three 24-bit codes: the third straddles words 0 and 1.
        let p = PackedBits::pack(&[0xABCDEF, 0x123456, 0xFEDCBA], 24);
        assert_eq!(p.len(), 72);
        assert_eq!(p.words()[0], 0xDCBA_1234_56AB_CDEF);
        assert_eq!(p.words()[1], 0xFE);
        let mut out = [0u32; 3];
        p.unpack(24, &mut out);
        assert_eq!(out, [0xABCDEF, 0x123456, 0xFEDCBA]);
        assert_eq!(p.words().len(), 3, "two data words and one padding word");
    }

    #[test]
    fn get_set_flip_respect_len() {
        let mut p = PackedBits::zeros(70);
        p.set(62, 4, 0b1011);
        assert_eq!(p.get(62, 4), 0b1011);
        assert_eq!(p.get(60, 8), 0b10_1100);
        p.flip(69);
        assert_eq!(p.get(66, 8), 0b1000, "bit 69 set, bits past 70 read as 0");
        p.flip(70);
        p.set(68, 8, 0xFF);
        assert_eq!(
            p.count_ones(),
            5,
            "bits 62, 63, 65, 68, 69; nothing past 70"
        );
    }
}
