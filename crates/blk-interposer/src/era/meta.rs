//! dm-era's on-disk metadata, read from userspace: the superblock, the
//! writeset tree, the era array and the writesets' bitsets.
//!
//! The layout is `drivers/md/dm-era-target.c` ("On disk metadata layout") on
//! top of `drivers/md/persistent-data`: 4 KiB blocks, little-endian, each
//! block with a crc32c checksum and its own block number.
//!
//! - superblock (block 0, or the clone that `take_metadata_snap` makes):
//!   `nr_blocks`, `current_era`, `writeset_tree_root`, `era_array_root`,
//!   `metadata_snap`;
//! - writeset tree: a one-level btree (`dm-btree.c`), key = era, value =
//!   `{ nr_bits: le32, root: le64 }`, the writesets archived by a
//!   checkpoint and not yet digested into the era array;
//! - era array: a `dm-array.c` array of `le32` eras, one per era block: a
//!   btree from array-block index to array block;
//! - a writeset: a `dm-bitset.c` bitset, that is an array of `le64` words.
//!
//! [`Metadata::written_since`] answers what `era_invalidate --written-since
//! ERA` answers (thin-provisioning-tools): the blocks whose era in the era
//! array is at least ERA, plus every block marked in an archived writeset of
//! an era at least ERA.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Size of a metadata block.
pub const BLOCK_SIZE: usize = 4096;
/// `SUPERBLOCK_MAGIC` of dm-era.
pub const SUPERBLOCK_MAGIC: u64 = 2126579579;
/// Checksum salt of the superblock.
pub const SUPERBLOCK_CSUM_XOR: u32 = 146538381;
/// Checksum salt of btree nodes (`dm-btree-spine.c`).
pub const BTREE_CSUM_XOR: u32 = 121107;
/// Checksum salt of array blocks (`dm-array.c`).
pub const ARRAY_CSUM_XOR: u32 = 595846735;
/// Metadata versions dm-era writes.
pub const VERSION: u32 = 1;

const INTERNAL_NODE: u32 = 1;
const LEAF_NODE: u32 = 2;
const NODE_HEADER: usize = 32;
const ARRAY_HEADER: usize = 24;
/// Deepest btree we follow; a 4 KiB btree of 2^32 keys is far shallower.
const MAX_DEPTH: usize = 16;

/// What can be wrong with the metadata (the caller names the device).
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Reading a block failed.
    #[error("cannot read metadata block {block}: {source}")]
    Io {
        /// The block.
        block: u64,
        /// Why.
        source: io::Error,
    },
    /// Block 0 is all zeros: dm-era never wrote there.
    #[error("block 0 is all zeros: there is no dm-era metadata (yet)")]
    Blank,
    /// The superblock magic is not dm-era's.
    #[error("bad superblock magic {found:#x} at block {block} (dm-era writes {SUPERBLOCK_MAGIC:#x}): not dm-era metadata")]
    BadMagic {
        /// The block.
        block: u64,
        /// The magic found.
        found: u64,
    },
    /// A block that does not check out.
    #[error("metadata block {block} ({kind}) is damaged: {what}")]
    Damaged {
        /// The block.
        block: u64,
        /// superblock, btree node, array block.
        kind: &'static str,
        /// What is wrong.
        what: String,
    },
    /// No metadata snapshot is held.
    #[error("the superblock records no metadata snapshot (send `take_metadata_snap` first)")]
    NoSnapshot,
}

type Result<T> = std::result::Result<T, MetaError>;

/// Reads 4 KiB metadata blocks.
pub trait BlockRead {
    /// Fill `buf` with block `block`.
    fn read_block(&self, block: u64, buf: &mut [u8; BLOCK_SIZE]) -> io::Result<()>;
}

impl BlockRead for File {
    fn read_block(&self, block: u64, buf: &mut [u8; BLOCK_SIZE]) -> io::Result<()> {
        // An aligned bounce buffer: the device is opened with O_DIRECT, so
        // that what dm-era wrote behind the page cache is what we read.
        #[repr(C, align(4096))]
        struct Aligned([u8; BLOCK_SIZE]);
        let mut a = Box::new(Aligned([0; BLOCK_SIZE]));
        self.read_exact_at(&mut a.0, block * BLOCK_SIZE as u64)?;
        buf.copy_from_slice(&a.0);
        Ok(())
    }
}

impl BlockRead for [u8] {
    fn read_block(&self, block: u64, buf: &mut [u8; BLOCK_SIZE]) -> io::Result<()> {
        let start = usize::try_from(block)
            .ok()
            .and_then(|b| b.checked_mul(BLOCK_SIZE))
            .filter(|s| s + BLOCK_SIZE <= self.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..start + BLOCK_SIZE]);
        Ok(())
    }
}

impl BlockRead for Vec<u8> {
    fn read_block(&self, block: u64, buf: &mut [u8; BLOCK_SIZE]) -> io::Result<()> {
        self.as_slice().read_block(block, buf)
    }
}

/// crc32c (Castagnoli) as the kernel's `crc32c(seed, ...)`: no final
/// inversion.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    crc32c_raw(seed, data)
}

fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// `dm_bm_checksum` over everything after the checksum field of a block.
pub fn block_checksum(block: &[u8; BLOCK_SIZE], xor: u32) -> u32 {
    crc32c_raw(!0, &block[4..]) ^ xor
}

/// Write the checksum of `block` into its first four bytes (for building
/// test images).
pub fn seal(block: &mut [u8; BLOCK_SIZE], xor: u32) {
    let c = block_checksum(block, xor);
    block[..4].copy_from_slice(&c.to_le_bytes());
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// The fields of a dm-era superblock that userspace needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Where it was read from.
    pub location: u64,
    /// Era block size in 512-byte sectors.
    pub data_block_size: u32,
    /// Metadata block size in sectors (8).
    pub metadata_block_size: u32,
    /// Number of era blocks.
    pub nr_blocks: u32,
    /// The era being written when this superblock was committed.
    pub current_era: u32,
    /// The writeset of `current_era` (`nr_bits`, root).
    pub current_writeset: (u32, u64),
    /// Root of the tree of archived writesets.
    pub writeset_tree_root: u64,
    /// Root of the era array.
    pub era_array_root: u64,
    /// Where the metadata snapshot's superblock is; 0 for none.
    pub metadata_snap: u64,
}

impl Superblock {
    /// Parse and check the superblock in `b`, read from block `location`.
    pub fn parse(b: &[u8; BLOCK_SIZE], location: u64) -> Result<Superblock> {
        let damaged = |what: String| MetaError::Damaged {
            block: location,
            kind: "superblock",
            what,
        };
        let magic = le64(b, 32);
        if magic != SUPERBLOCK_MAGIC {
            if location == 0 && b.iter().all(|&x| x == 0) {
                return Err(MetaError::Blank);
            }
            return Err(MetaError::BadMagic {
                block: location,
                found: magic,
            });
        }
        check_block(b, location, SUPERBLOCK_CSUM_XOR, 8, "superblock")?;
        let version = le32(b, 40);
        if version != VERSION {
            return Err(damaged(format!(
                "metadata version {version}, only {VERSION} is known"
            )));
        }
        let sb = Superblock {
            location,
            data_block_size: le32(b, 172),
            metadata_block_size: le32(b, 176),
            nr_blocks: le32(b, 180),
            current_era: le32(b, 184),
            current_writeset: (le32(b, 188), le64(b, 192)),
            writeset_tree_root: le64(b, 200),
            era_array_root: le64(b, 208),
            metadata_snap: le64(b, 216),
        };
        if sb.metadata_block_size != (BLOCK_SIZE / 512) as u32 {
            return Err(damaged(format!(
                "metadata block size {} sectors, dm-era uses 8",
                sb.metadata_block_size
            )));
        }
        if sb.data_block_size == 0 {
            return Err(damaged("era block size 0".into()));
        }
        Ok(sb)
    }

    /// Write this superblock into a zeroed block (for tests and tools that
    /// build images); the checksum and block number included.
    pub fn write(&self, b: &mut [u8; BLOCK_SIZE]) {
        b[8..16].copy_from_slice(&self.location.to_le_bytes());
        b[32..40].copy_from_slice(&SUPERBLOCK_MAGIC.to_le_bytes());
        b[40..44].copy_from_slice(&VERSION.to_le_bytes());
        b[172..176].copy_from_slice(&self.data_block_size.to_le_bytes());
        b[176..180].copy_from_slice(&self.metadata_block_size.to_le_bytes());
        b[180..184].copy_from_slice(&self.nr_blocks.to_le_bytes());
        b[184..188].copy_from_slice(&self.current_era.to_le_bytes());
        b[188..192].copy_from_slice(&self.current_writeset.0.to_le_bytes());
        b[192..200].copy_from_slice(&self.current_writeset.1.to_le_bytes());
        b[200..208].copy_from_slice(&self.writeset_tree_root.to_le_bytes());
        b[208..216].copy_from_slice(&self.era_array_root.to_le_bytes());
        b[216..224].copy_from_slice(&self.metadata_snap.to_le_bytes());
        seal(b, SUPERBLOCK_CSUM_XOR);
    }
}

/// The checksum and the self-reference (`blocknr` at `blocknr_off`).
fn check_block(
    b: &[u8; BLOCK_SIZE],
    location: u64,
    xor: u32,
    blocknr_off: usize,
    kind: &'static str,
) -> Result<()> {
    let damaged = |what: String| MetaError::Damaged {
        block: location,
        kind,
        what,
    };
    let blocknr = le64(b, blocknr_off);
    if blocknr != location {
        return Err(damaged(format!("it says it is block {blocknr}")));
    }
    let (want, have) = (block_checksum(b, xor), le32(b, 0));
    if want != have {
        return Err(damaged(format!(
            "checksum {have:#010x}, computed {want:#010x}"
        )));
    }
    Ok(())
}

/// A metadata device (or image) being read.
pub struct Metadata<'a, R: BlockRead + ?Sized> {
    src: &'a R,
    /// The superblock at block 0.
    pub superblock: Superblock,
}

impl<'a, R: BlockRead + ?Sized> Metadata<'a, R> {
    /// Read and check the superblock at block 0.
    pub fn open(src: &'a R) -> Result<Self> {
        let b = read(src, 0)?;
        Ok(Metadata {
            src,
            superblock: Superblock::parse(&b, 0)?,
        })
    }

    /// The superblock of the metadata snapshot (`take_metadata_snap`).
    pub fn snapshot(&self) -> Result<Superblock> {
        let at = self.superblock.metadata_snap;
        if at == 0 {
            return Err(MetaError::NoSnapshot);
        }
        Superblock::parse(&read(self.src, at)?, at)
    }

    /// Every (key, value) of a one-level btree rooted at `root`, in key order.
    fn btree(&self, root: u64, value_size: usize) -> Result<BTreeMap<u64, Vec<u8>>> {
        let mut out = BTreeMap::new();
        self.walk(root, value_size, 0, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        at: u64,
        value_size: usize,
        depth: usize,
        out: &mut BTreeMap<u64, Vec<u8>>,
    ) -> Result<()> {
        let damaged = |what: String| MetaError::Damaged {
            block: at,
            kind: "btree node",
            what,
        };
        if depth > MAX_DEPTH {
            return Err(damaged("the btree is deeper than any dm-era btree".into()));
        }
        let b = read(self.src, at)?;
        check_block(&b, at, BTREE_CSUM_XOR, 8, "btree node")?;
        let flags = le32(&b, 4);
        let nr = le32(&b, 16) as usize;
        let max = le32(&b, 20) as usize;
        let vsize = le32(&b, 24) as usize;
        let leaf = match flags {
            INTERNAL_NODE => false,
            LEAF_NODE => true,
            f => return Err(damaged(format!("flags {f:#x}: neither internal nor leaf"))),
        };
        let want = if leaf { value_size } else { 8 };
        if vsize != want {
            return Err(damaged(format!("value size {vsize}, expected {want}")));
        }
        if nr > max || NODE_HEADER + max * (8 + vsize) > BLOCK_SIZE {
            return Err(damaged(format!("{nr} of {max} entries do not fit")));
        }
        let values = NODE_HEADER + 8 * max;
        for i in 0..nr {
            let key = le64(&b, NODE_HEADER + 8 * i);
            let v = &b[values + i * vsize..values + (i + 1) * vsize];
            if leaf {
                out.insert(key, v.to_vec());
            } else {
                self.walk(le64(v, 0), value_size, depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// The `nr` values of `value_size` bytes of the dm-array at `root`, each
    /// passed to `f` with its index.
    fn array(
        &self,
        root: u64,
        value_size: usize,
        nr: u64,
        mut f: impl FnMut(u64, &[u8]),
    ) -> Result<()> {
        let per_block = ((BLOCK_SIZE - ARRAY_HEADER) / value_size) as u64;
        let blocks = self.btree(root, 8)?;
        for (index, loc) in blocks {
            let at = le64(&loc, 0);
            let b = read(self.src, at)?;
            check_block(&b, at, ARRAY_CSUM_XOR, 16, "array block")?;
            let damaged = |what: String| MetaError::Damaged {
                block: at,
                kind: "array block",
                what,
            };
            let (max, n, vsize) = (le32(&b, 4) as u64, le32(&b, 8) as u64, le32(&b, 12));
            if vsize as usize != value_size || max != per_block || n > max {
                return Err(damaged(format!(
                    "{n} of {max} entries of {vsize} bytes, expected {per_block} of {value_size}"
                )));
            }
            let first = index * per_block;
            for i in 0..n {
                let idx = first + i;
                if idx >= nr {
                    break;
                }
                let off = ARRAY_HEADER + (i as usize) * value_size;
                f(idx, &b[off..off + value_size]);
            }
        }
        Ok(())
    }

    /// The archived writesets of the metadata at `sb`: era → (nr_bits, root).
    pub fn writesets(&self, sb: &Superblock) -> Result<BTreeMap<u32, (u32, u64)>> {
        Ok(self
            .btree(sb.writeset_tree_root, 12)?
            .into_iter()
            .map(|(era, v)| (era as u32, (le32(&v, 0), le64(&v, 4))))
            .collect())
    }

    /// The era blocks written in era `since` or later, as one bool per block,
    /// from the metadata at `sb` (normally [`Metadata::snapshot`]): the era
    /// array, and the archived writesets of eras `since` and later.
    pub fn written_since(&self, sb: &Superblock, since: u32) -> Result<Vec<bool>> {
        let nr = sb.nr_blocks as u64;
        let mut marked = vec![false; sb.nr_blocks as usize];
        self.array(sb.era_array_root, 4, nr, |i, v| {
            if le32(v, 0) >= since {
                marked[i as usize] = true;
            }
        })?;
        for (era, (nr_bits, root)) in self.writesets(sb)? {
            if era < since {
                continue;
            }
            let bits = u64::from(nr_bits).min(nr);
            self.array(root, 8, bits.div_ceil(64), |w, v| {
                let word = le64(v, 0);
                for bit in 0..64 {
                    let i = w * 64 + bit;
                    if i < bits && word & (1 << bit) != 0 {
                        marked[i as usize] = true;
                    }
                }
            })?;
        }
        Ok(marked)
    }
}

fn read<R: BlockRead + ?Sized>(src: &R, block: u64) -> Result<[u8; BLOCK_SIZE]> {
    let mut b = [0u8; BLOCK_SIZE];
    src.read_block(block, &mut b)
        .map_err(|source| MetaError::Io { block, source })?;
    Ok(b)
}

/// Runs of marked blocks as `begin..end` (end exclusive), the way
/// `era_invalidate` prints them.
pub fn runs(marked: &[bool]) -> Vec<std::ops::Range<u32>> {
    let mut out: Vec<std::ops::Range<u32>> = Vec::new();
    for (i, _) in marked.iter().enumerate().filter(|(_, &m)| m) {
        let i = i as u32;
        match out.last_mut() {
            Some(r) if r.end == i => r.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Builders of metadata images, for tests: the blocks dm-era would write.
#[cfg(test)]
pub(crate) mod image {
    use super::*;

    /// An image of `n` zeroed blocks.
    pub fn blank(n: usize) -> Vec<u8> {
        vec![0; n * BLOCK_SIZE]
    }

    fn block(img: &mut [u8], at: u64) -> &mut [u8; BLOCK_SIZE] {
        let s = at as usize * BLOCK_SIZE;
        (&mut img[s..s + BLOCK_SIZE]).try_into().unwrap()
    }

    /// A btree leaf at `at` holding `entries` (key, value bytes).
    pub fn leaf(img: &mut [u8], at: u64, value_size: usize, entries: &[(u64, Vec<u8>)]) {
        let b = block(img, at);
        let max = (BLOCK_SIZE - NODE_HEADER) / (8 + value_size);
        b[4..8].copy_from_slice(&LEAF_NODE.to_le_bytes());
        b[8..16].copy_from_slice(&at.to_le_bytes());
        b[16..20].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(max as u32).to_le_bytes());
        b[24..28].copy_from_slice(&(value_size as u32).to_le_bytes());
        for (i, (k, v)) in entries.iter().enumerate() {
            b[NODE_HEADER + 8 * i..][..8].copy_from_slice(&k.to_le_bytes());
            let off = NODE_HEADER + 8 * max + i * value_size;
            b[off..off + value_size].copy_from_slice(v);
        }
        seal(b, BTREE_CSUM_XOR);
    }

    /// An internal btree node at `at` pointing at `children` (first key, block).
    pub fn internal(img: &mut [u8], at: u64, children: &[(u64, u64)]) {
        let entries: Vec<(u64, Vec<u8>)> = children
            .iter()
            .map(|(k, c)| (*k, c.to_le_bytes().to_vec()))
            .collect();
        leaf(img, at, 8, &entries);
        let b = block(img, at);
        b[4..8].copy_from_slice(&INTERNAL_NODE.to_le_bytes());
        seal(b, BTREE_CSUM_XOR);
    }

    /// An array block at `at` with `values` (each `value_size` bytes).
    pub fn array_block(img: &mut [u8], at: u64, value_size: usize, values: &[Vec<u8>]) {
        let b = block(img, at);
        let max = (BLOCK_SIZE - ARRAY_HEADER) / value_size;
        b[4..8].copy_from_slice(&(max as u32).to_le_bytes());
        b[8..12].copy_from_slice(&(values.len() as u32).to_le_bytes());
        b[12..16].copy_from_slice(&(value_size as u32).to_le_bytes());
        b[16..24].copy_from_slice(&at.to_le_bytes());
        for (i, v) in values.iter().enumerate() {
            b[ARRAY_HEADER + i * value_size..][..value_size].copy_from_slice(v);
        }
        seal(b, ARRAY_CSUM_XOR);
    }

    /// A superblock at `at`.
    pub fn superblock(img: &mut [u8], sb: &Superblock) {
        sb.write(block(img, sb.location));
    }

    /// A whole image with a metadata snapshot at block 1: `nr_blocks` era
    /// blocks of 128 sectors, the era array (`eras`, one per block) and one
    /// archived writeset of era `ws_era` with `ws_bits` set.  Live
    /// superblock at 0 says `current_era` `era + 1`.
    pub fn with_snapshot(eras: &[u32], ws_era: u32, ws_bits: &[u32]) -> Vec<u8> {
        let nr = eras.len() as u32;
        let mut img = blank(64);
        // era array: root leaf at 2 -> array blocks 3, 20, 21, ... (1018 eras each)
        let per = (BLOCK_SIZE - ARRAY_HEADER) / 4;
        let mut refs = Vec::new();
        for (i, chunk) in eras.chunks(per).enumerate() {
            let at = if i == 0 { 3 } else { 19 + i as u64 };
            let vals: Vec<Vec<u8>> = chunk.iter().map(|e| e.to_le_bytes().to_vec()).collect();
            array_block(&mut img, at, 4, &vals);
            refs.push((i as u64, at.to_le_bytes().to_vec()));
        }
        assert!(refs.len() <= 40, "enough for 40 * 1018 blocks");
        leaf(&mut img, 2, 8, &refs);
        // writeset bitset: root leaf at 8 -> array block 9 (u64 words)
        let words = (nr as usize).div_ceil(64);
        let mut w = vec![0u64; words];
        for &b in ws_bits {
            w[b as usize / 64] |= 1 << (b % 64);
        }
        let vals: Vec<Vec<u8>> = w.iter().map(|x| x.to_le_bytes().to_vec()).collect();
        array_block(&mut img, 9, 8, &vals);
        leaf(&mut img, 8, 8, &[(0, 9u64.to_le_bytes().to_vec())]);
        // writeset tree at 10: era -> {nr_bits, root}
        let mut v = nr.to_le_bytes().to_vec();
        v.extend_from_slice(&8u64.to_le_bytes());
        leaf(&mut img, 10, 12, &[(ws_era as u64, v)]);
        let snap = Superblock {
            location: 1,
            data_block_size: 128,
            metadata_block_size: 8,
            nr_blocks: nr,
            current_era: ws_era + 1,
            current_writeset: (nr, 0),
            writeset_tree_root: 10,
            era_array_root: 2,
            metadata_snap: 0,
        };
        superblock(&mut img, &snap);
        superblock(
            &mut img,
            &Superblock {
                location: 0,
                metadata_snap: 1,
                ..snap
            },
        );
        img
    }
}

#[cfg(test)]
mod tests {
    use super::image::*;
    use super::*;

    #[test]
    fn crc32c_matches_the_reference() {
        // The standard check value of CRC-32C, and the kernel's form of it.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn reads_the_snapshot_like_era_invalidate() {
        // 2000 blocks: era array spans two array blocks.
        let mut eras = vec![0u32; 2000];
        eras[5] = 3;
        eras[6] = 4;
        eras[7] = 2;
        eras[1500] = 5;
        let img = with_snapshot(&eras, 6, &[7, 8, 1999]);
        let md = Metadata::open(&img).unwrap();
        assert_eq!(md.superblock.metadata_snap, 1);
        let snap = md.snapshot().unwrap();
        assert_eq!((snap.nr_blocks, snap.data_block_size), (2000, 128));
        assert_eq!(md.writesets(&snap).unwrap()[&6], (2000, 8));
        let since = |e| runs(&md.written_since(&snap, e).unwrap());
        assert_eq!(since(4), vec![6..9, 1500..1501, 1999..2000]);
        assert_eq!(since(3), vec![5..9, 1500..1501, 1999..2000]);
        assert_eq!(since(6), vec![7..9, 1999..2000]);
        assert_eq!(since(7), vec![]);
        assert_eq!(since(0).len(), 1, "era 0 and later: every block");
    }

    #[test]
    fn follows_internal_nodes() {
        let mut img = with_snapshot(&[1, 2, 3, 4], 9, &[]);
        // Re-root the era array: internal node 12 -> leaf 2.
        internal(&mut img, 12, &[(0, 2)]);
        let md = Metadata::open(&img).unwrap();
        let mut snap = md.snapshot().unwrap();
        snap.era_array_root = 12;
        assert_eq!(runs(&md.written_since(&snap, 3).unwrap()), vec![2..4]);
    }

    #[test]
    fn damage_is_named() {
        let img = blank(2);
        assert!(matches!(Metadata::open(&img), Err(MetaError::Blank)));
        let mut img = with_snapshot(&[1], 1, &[]);
        img[40] = 0; // ext4? no: junk in the magic
        img[33] ^= 0xff;
        let e = Metadata::open(&img).err().unwrap();
        assert!(e.to_string().contains("bad superblock magic"), "{e}");
        let mut img = with_snapshot(&[1], 1, &[]);
        img[3 * BLOCK_SIZE + 100] ^= 1; // an era in the array block
        let md = Metadata::open(&img).unwrap();
        let e = md
            .written_since(&md.snapshot().unwrap(), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("block 3 (array block) is damaged: checksum"),
            "{e}"
        );
        let short = img[..BLOCK_SIZE].to_vec();
        let e = Metadata::open(&short).unwrap().snapshot().err().unwrap();
        assert!(
            e.to_string().starts_with("cannot read metadata block 1"),
            "{e}"
        );
        let mut img = with_snapshot(&[1], 1, &[]);
        let mut b: [u8; BLOCK_SIZE] = img[..BLOCK_SIZE].try_into().unwrap();
        b[216..224].copy_from_slice(&0u64.to_le_bytes());
        seal(&mut b, SUPERBLOCK_CSUM_XOR);
        img[..BLOCK_SIZE].copy_from_slice(&b);
        let e = Metadata::open(&img).unwrap().snapshot().err().unwrap();
        assert!(matches!(e, MetaError::NoSnapshot));
    }

    #[test]
    fn runs_coalesce() {
        let m = |v: &[u32], n| {
            let mut b = vec![false; n];
            for &i in v {
                b[i as usize] = true;
            }
            runs(&b)
        };
        assert_eq!(m(&[], 4), vec![]);
        assert_eq!(m(&[0, 1, 2, 3], 4), vec![0..4]);
        assert_eq!(m(&[0, 2, 3, 9], 10), vec![0..1, 2..4, 9..10]);
    }
}
