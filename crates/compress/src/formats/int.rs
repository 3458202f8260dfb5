//! Uniform integer quantization, 2 to 8 bits, symmetric or asymmetric, per tensor or
//! per output channel (docs/sources.md#other-number-formats).
//!
//! Symmetric: `scale = max|w| / (2^(b-1) - 1)`, `q = clamp(round(w / scale))` in
//! `[-(2^(b-1) - 1), 2^(b-1) - 1]` (the most negative code is left unused so that the
//! grid is symmetric), value `q * scale`; codes are `q` in `b`-bit two's complement,
//! so the zero code is 0.
//!
//! Asymmetric: the range `[min(w, 0), max(w, 0)]` is split into `2^b - 1` steps,
//! `scale = (hi - lo) / (2^b - 1)`, zero point `z = round(-lo / scale)`,
//! `q = clamp(round(w / scale) + z, 0, 2^b - 1)`, value `(q - z) * scale`; the zero
//! code is `z`, so 0.0 (a pruned weight) is exact.
//!
//! Rounding is half to even throughout. A channel that is all zeros gets scale 0 and
//! encodes to its zero code.

use serde::{Deserialize, Serialize};

use super::rounded_low_bits;
use crate::error::{check_len, out_of_range, Result};

/// Which uniform integer grid to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntSpec {
    /// Code width, 2..=8.
    pub bits: u8,
    /// Symmetric (zero point 0) or asymmetric (zero point per channel).
    pub symmetric: bool,
    /// One scale per output channel (row of `[out, in]`) instead of one per tensor.
    pub per_channel: bool,
}

impl IntSpec {
    /// Fails unless `bits` is in 2..=8.
    pub fn validate(&self) -> Result<()> {
        if (2..=8).contains(&self.bits) {
            Ok(())
        } else {
            Err(out_of_range("int.bits", self.bits, "2..=8"))
        }
    }
}

/// A fitted integer quantizer: the spec plus one scale and zero point per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct IntQuantizer {
    spec: IntSpec,
    /// Elements per channel; the whole tensor when per-tensor.
    row_len: usize,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

impl IntQuantizer {
    /// Fits scales (and zero points) to `data`, a row-major tensor whose channels are
    /// runs of `row_len` elements. `row_len` is ignored for per-tensor specs.
    pub fn fit(spec: IntSpec, data: &[f32], row_len: usize) -> Result<Self> {
        spec.validate()?;
        let row_len = if spec.per_channel && row_len > 0 {
            row_len
        } else {
            data.len().max(1)
        };
        if !data.len().is_multiple_of(row_len) {
            return Err(out_of_range(
                "int.row_len",
                row_len,
                format!("a divisor of the tensor size {}", data.len()),
            ));
        }
        let (scales, zero_points) = data.chunks(row_len).map(|row| fit_row(spec, row)).unzip();
        Ok(IntQuantizer {
            spec,
            row_len,
            scales,
            zero_points,
        })
    }

    /// The spec this quantizer was fitted with.
    pub fn spec(&self) -> IntSpec {
        self.spec
    }

    /// One scale per channel (one in total when per-tensor).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// One zero point per channel (all 0 when symmetric).
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }

    /// Elements per channel.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Code of 0.0 per channel, as stored.
    pub fn zero_codes(&self) -> Vec<u32> {
        let mask = code_mask(self.spec.bits);
        self.zero_points.iter().map(|&z| z as u32 & mask).collect()
    }

    /// Encodes `data` to `b`-bit codes (`codes.len() == data.len()`).
    pub fn encode(&self, data: &[f32], codes: &mut [u32]) -> Result<()> {
        check_len("int codes", data.len(), codes.len())?;
        self.check_numel(data.len())?;
        let (lo, hi) = self.code_range();
        let mask = code_mask(self.spec.bits);
        for (ch, (row, out)) in data
            .chunks(self.row_len)
            .zip(codes.chunks_mut(self.row_len))
            .enumerate()
        {
            let (scale, z) = (self.scales[ch], self.zero_points[ch] as f32);
            // A zero scale means an all-zero channel: every element maps to `z`.
            let (num, div) = if scale > 0.0 {
                (1.0, scale)
            } else {
                (0.0, 1.0)
            };
            // Clamping before rounding is exact because the bounds are integers, and
            // keeps the argument of the branch-free rounding small.
            let (qlo, qhi) = (lo - z, hi - z);
            // Adding the zero point as an integer avoids double rounding in `x + z`.
            let zi = z as i32 as u32;
            for (o, &w) in out.iter_mut().zip(row) {
                let q = rounded_low_bits((w * num / div).clamp(qlo, qhi));
                *o = q.wrapping_add(zi) & mask;
            }
        }
        Ok(())
    }

    /// Decodes codes back to values; only the low `b` bits of each code are read, so
    /// corrupted codes decode to some grid value instead of failing.
    pub fn decode(&self, codes: &[u32], out: &mut [f32]) -> Result<()> {
        check_len("int values", codes.len(), out.len())?;
        self.check_numel(codes.len())?;
        let bits = u32::from(self.spec.bits);
        let shift = 32 - bits;
        for (ch, (row, o)) in codes
            .chunks(self.row_len)
            .zip(out.chunks_mut(self.row_len))
            .enumerate()
        {
            let (scale, z) = (self.scales[ch], self.zero_points[ch]);
            if self.spec.symmetric {
                for (v, &c) in o.iter_mut().zip(row) {
                    *v = (((c << shift) as i32) >> shift) as f32 * scale;
                }
            } else {
                let mask = code_mask(self.spec.bits);
                for (v, &c) in o.iter_mut().zip(row) {
                    *v = ((c & mask) as i32 - z) as f32 * scale;
                }
            }
        }
        Ok(())
    }

    /// Bits of per-tensor metadata: an f32 scale per channel, plus a `b`-bit zero
    /// point per channel when asymmetric.
    pub fn metadata_bits(&self) -> u64 {
        let per = 32
            + if self.spec.symmetric {
                0
            } else {
                u64::from(self.spec.bits)
            };
        per * self.scales.len() as u64
    }

    /// Smallest and largest integer `q` the grid uses.
    fn code_range(&self) -> (f32, f32) {
        let b = i32::from(self.spec.bits);
        if self.spec.symmetric {
            let m = ((1 << (b - 1)) - 1) as f32;
            (-m, m)
        } else {
            (0.0, ((1 << b) - 1) as f32)
        }
    }

    fn check_numel(&self, n: usize) -> Result<()> {
        check_len("int tensor size", self.row_len * self.scales.len(), n)
    }
}

/// Scale and zero point of one channel.
fn fit_row(spec: IntSpec, row: &[f32]) -> (f32, i32) {
    let b = i32::from(spec.bits);
    if spec.symmetric {
        let max_abs = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        (max_abs / ((1 << (b - 1)) - 1) as f32, 0)
    } else {
        let lo = row.iter().fold(0.0f32, |m, &w| m.min(w));
        let hi = row.iter().fold(0.0f32, |m, &w| m.max(w));
        let qmax = (1 << b) - 1;
        let scale = (hi - lo) / qmax as f32;
        if scale > 0.0 {
            let z = (-lo / scale).round_ties_even().clamp(0.0, qmax as f32);
            (scale, z as i32)
        } else {
            (0.0, 0)
        }
    }
}

/// Low `bits` bits set.
fn code_mask(bits: u8) -> u32 {
    (1u32 << bits) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bits: u8, symmetric: bool, per_channel: bool) -> IntSpec {
        IntSpec {
            bits,
            symmetric,
            per_channel,
        }
    }

    #[test]
    fn int8_symmetric_golden() {
        // max|w| = 127 -> scale exactly 1; -63.5 and 62.5 are ties that go to even.
        let data = [127.0, -63.5, 62.5, 0.4, -0.5, -127.0];
        let q = IntQuantizer::fit(spec(8, true, false), &data, 0).unwrap();
        assert_eq!(q.scales(), &[1.0]);
        let mut codes = [0u32; 6];
        q.encode(&data, &mut codes).unwrap();
        assert_eq!(codes, [127, 0xC0, 62, 0, 0, 0x81]);
        let mut out = [0f32; 6];
        q.decode(&codes, &mut out).unwrap();
        assert_eq!(out, [127.0, -64.0, 62.0, 0.0, 0.0, -127.0]);
        assert_eq!(q.zero_codes(), vec![0]);
    }

    #[test]
    fn int4_asymmetric_golden() {
        // Range [-1, 14] over 15 steps: scale 1, zero point 1.
        let data = [-1.0, 0.0, 14.0, 2.5, 3.5];
        let q = IntQuantizer::fit(spec(4, false, false), &data, 0).unwrap();
        assert_eq!((q.scales()[0], q.zero_points()[0]), (1.0, 1));
        let mut codes = [0u32; 5];
        q.encode(&data, &mut codes).unwrap();
        assert_eq!(codes, [0, 1, 15, 3, 5]);
        let mut out = [0f32; 5];
        q.decode(&codes, &mut out).unwrap();
        assert_eq!(out, [-1.0, 0.0, 14.0, 2.0, 4.0]);
        assert_eq!(q.zero_codes(), vec![1]);
        assert_eq!(q.metadata_bits(), 36);
    }

    #[test]
    fn zero_point_is_added_after_rounding() {
        // Range [-255, 0]: scale 1, zero point 255. -(0.5 - 2^-20) rounds to 0, so the
        // code is 255; adding 255 in f32 first would round to 254.5 and then to 254.
        let w = -(0.5 - 1.0 / 1_048_576.0);
        let q = IntQuantizer::fit(spec(8, false, false), &[-255.0, w], 0).unwrap();
        assert_eq!((q.scales()[0], q.zero_points()[0]), (1.0, 255));
        let mut codes = [0u32; 2];
        q.encode(&[-255.0, w], &mut codes).unwrap();
        assert_eq!(codes, [0, 255]);
    }

    #[test]
    fn per_channel_uses_one_scale_per_row() {
        // Rows [127, 1] and [4, -1]: scales 1 and 4/127; -1 / (4/127) = -31.75 -> -32.
        let data = [127.0, 1.0, 4.0, -1.0];
        let q = IntQuantizer::fit(spec(8, true, true), &data, 2).unwrap();
        assert_eq!(q.scales(), &[1.0, 4.0 / 127.0]);
        let mut codes = [0u32; 4];
        q.encode(&data, &mut codes).unwrap();
        assert_eq!(codes, [127, 1, 127, (-32i32 as u32) & 0xFF]);
        let mut out = [0f32; 4];
        q.decode(&codes, &mut out).unwrap();
        assert_eq!(out[3], -32.0 * (4.0f32 / 127.0));
    }

    #[test]
    fn round_trip_every_width_and_mode() {
        let data: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 20.0) * 0.013)
            .collect();
        for bits in 2..=8 {
            for (sym, pc) in [(true, false), (false, false), (true, true), (false, true)] {
                let q = IntQuantizer::fit(spec(bits, sym, pc), &data, 16).unwrap();
                let mut codes = vec![0u32; 64];
                q.encode(&data, &mut codes).unwrap();
                let mut vals = vec![0f32; 64];
                q.decode(&codes, &mut vals).unwrap();
                let mut again = vec![0u32; 64];
                q.encode(&vals, &mut again).unwrap();
                assert_eq!(codes, again, "bits {bits} sym {sym} per-channel {pc}");
                assert!(codes.iter().all(|&c| c < 1 << bits));
            }
        }
    }

    #[test]
    fn rejects_bad_widths_and_zero_tensor_is_exact() {
        assert!(IntQuantizer::fit(spec(9, true, false), &[1.0], 0).is_err());
        assert!(IntQuantizer::fit(spec(1, true, false), &[1.0], 0).is_err());
        let q = IntQuantizer::fit(spec(4, false, false), &[0.0; 3], 0).unwrap();
        let mut codes = [7u32; 3];
        q.encode(&[0.0; 3], &mut codes).unwrap();
        assert_eq!(codes, [0; 3]);
    }
}
