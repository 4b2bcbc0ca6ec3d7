//! Shared bits of the VM test programs (`stamp-writer`, `hostile-ioctl`):
//! a seeded PRNG, aligned buffers for `O_DIRECT`, device numbers of paths.
//!
//! These programs run inside the test VM (see `xtask/src/initramfs.rs`) and
//! are driven by the scenarios under `tests/scenarios/reliability/`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use blk_interposer::DevNo;

/// xorshift64*: small, seeded, good enough to pick offsets and fill bytes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A zeroed buffer whose data starts at a `align`-byte boundary (`O_DIRECT`).
pub struct AlignedBuf {
    storage: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` bytes aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> Self {
        let storage = vec![0u8; len + align];
        let off = storage.as_ptr().align_offset(align);
        AlignedBuf { storage, off, len }
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.off..self.off + self.len]
    }

    /// The aligned bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.off..self.off + self.len]
    }
}

/// The device number of the block device at `path`.
pub fn devno_of(path: &Path) -> io::Result<DevNo> {
    let m = std::fs::metadata(path)?;
    if m.rdev() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a device", path.display()),
        ));
    }
    Ok(DevNo::from_dev_t(m.rdev()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_bounded() {
        let a: Vec<_> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<_> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut r = Rng::new(0);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn buffers_are_aligned() {
        for align in [512, 4096] {
            let b = AlignedBuf::new(1000, align);
            assert_eq!(b.as_slice().as_ptr() as usize % align, 0);
            assert_eq!(b.as_slice().len(), 1000);
        }
    }
}
