//! dm-era for changed-block tracking: its table and status lines, block
//! sizes, how much metadata it needs, and ([`meta`]) its on-disk metadata.
//!
//! The orchestration (attach, checkpoint, changed, detach) is in
//! [`crate::ops`]; see [`crate::Ops::era_changed`].

pub mod boot;
pub mod meta;
pub mod record;

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::types::{DevNo, Sectors};

/// A point in the changed-block tracking of a device, as `era checkpoint`
/// prints it: `ERA@GENERATION` (`12@3f9a1c02d4e5b6a7`).  The generation
/// ties the era to one formatting of the dm-era metadata, so that an era
/// of a wiped or replaced metadata device is refused instead of answered
/// from other writes.  A bare `ERA` is accepted and checked against
/// everything but that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// dm-era's era.
    pub era: u32,
    /// The tracking generation ([`record::TrackingRecord::generation`]).
    pub generation: Option<u64>,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.generation {
            Some(g) => write!(f, "{}@{g:016x}", self.era),
            None => write!(f, "{}", self.era),
        }
    }
}

/// As its text, `ERA@GENERATION`.
impl Serialize for Checkpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From its text, `ERA@GENERATION` (a backup manifest keeps it so).
impl<'de> serde::Deserialize<'de> for Checkpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a checkpoint: give what `interposer era checkpoint` printed, ERA@GENERATION (e.g. 12@3f9a1c02d4e5b6a7), or a bare era")
        };
        let (era, generation) = match s.split_once('@') {
            Some((e, g)) if g.len() == 16 => {
                (e, Some(u64::from_str_radix(g, 16).map_err(|_| bad())?))
            }
            Some(_) => return Err(bad()),
            None => (s, None),
        };
        Ok(Checkpoint {
            era: era.parse().map_err(|_| bad())?,
            generation,
        })
    }
}

/// Why tracking does not cover the eras a question asks about
/// ([`crate::Error::EraGap`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "gap")]
pub enum GapReason {
    /// The metadata has no (readable) tracking record.
    NoRecord,
    /// Tracking ended (`era detach`) and has not begun again.
    Ended {
        /// The era current at the detach.
        era: u32,
    },
    /// Tracking began again at `start` (an attach after a detach, a boot, a
    /// crash); writes before that were not tracked.
    Restarted {
        /// The first era of the current epoch.
        start: u32,
        /// How the epoch before it ended, in words.
        previous: String,
    },
    /// The metadata was attached to another device since, or the device
    /// changed (size, partition, disk).
    DeviceChanged {
        /// What differs.
        what: String,
    },
    /// The checkpoint belongs to another formatting of the metadata.
    OtherGeneration {
        /// The checkpoint's generation.
        asked: u64,
        /// The metadata's.
        have: u64,
    },
    /// dm-era is not on the device's I/O path now: its writes bypass it.
    NotInPath {
        /// Where the device's bios go instead.
        now: String,
    },
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GapReason::NoRecord => f.write_str(
                "its metadata has no tracking record (a raw era table from `interposer create`, or an older interposer), so nothing says since when every write was tracked",
            ),
            GapReason::Ended { era } => write!(f, "tracking ended at era {era} (`era detach`) and has not begun again"),
            GapReason::Restarted { start, previous } => write!(
                f,
                "tracking began again at era {start} ({previous}); writes before that were not tracked"
            ),
            GapReason::DeviceChanged { what } => {
                write!(f, "the device is not the one the metadata tracked ({what})")
            }
            GapReason::OtherGeneration { asked, have } => write!(
                f,
                "the checkpoint is of tracking generation {asked:016x}, the metadata is of {have:016x} (formatted anew, or another metadata device)"
            ),
            GapReason::NotInPath { now } => write!(
                f,
                "dm-era is not on the device's I/O path now ({now}), so writes bypass it"
            ),
        }
    }
}

/// dm-era's smallest block: 8 sectors (`MIN_BLOCK_SIZE`); every block size
/// is a multiple of it.
pub const MIN_BLOCK: Sectors = Sectors(8);
/// dm-era keeps at most 2^31 - 1 blocks (`valid_nr_blocks`).
pub const MAX_BLOCKS: u64 = (1 << 31) - 1;

/// The block size in sectors for `bytes`, checked the way `era_ctr` checks
/// it: a non-zero multiple of 4 KiB, and few enough blocks for `device`.
pub fn block_sectors(bytes: u64, device: Sectors) -> Result<Sectors> {
    let bad = |why: String| Err(Error::EraBlockSize { bytes, why });
    if bytes == 0 || !bytes.is_multiple_of(MIN_BLOCK.0 * 512) {
        return bad("dm-era needs a multiple of 4 KiB, e.g. 64k".into());
    }
    let s = Sectors(bytes / 512);
    let n = nr_blocks(device, s);
    if n > MAX_BLOCKS {
        return bad(format!(
            "{n} blocks for {} sectors, dm-era takes at most {MAX_BLOCKS}; use a bigger block size",
            device.0
        ));
    }
    Ok(s)
}

/// How many era blocks cover `device` (the last one may be partial).
pub fn nr_blocks(device: Sectors, block: Sectors) -> u64 {
    device.0.div_ceil(block.0.max(1))
}

/// Bytes of metadata dm-era needs for `nr` blocks, with room for what it
/// keeps twice: the era array (`le32` per block), two live writesets and
/// the ones archived until digested, and the copies that transactions and a
/// metadata snapshot hold.  An estimate on the safe side.
pub fn metadata_bytes_needed(nr: u64) -> u64 {
    let array_blocks = nr.div_ceil(1018);
    let bitset_blocks = nr.div_ceil(509 * 64);
    let blocks = 64 + 2 * array_blocks + 8 * bitset_blocks;
    blocks * meta::BLOCK_SIZE as u64
}

/// A parsed dm-era table line's arguments: `META ORIGIN BLOCK_SECTORS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EraTable {
    /// The metadata device.
    pub metadata: DevNo,
    /// The origin (our lower device).
    pub origin: DevNo,
    /// Era block size in sectors.
    pub block: Sectors,
}

impl EraTable {
    /// Parse the params of an `era` table line, as `dmsetup table` shows them.
    pub fn parse(params: &str) -> Option<EraTable> {
        let mut it = params.split_whitespace();
        let t = EraTable {
            metadata: it.next()?.parse().ok()?,
            origin: it.next()?.parse().ok()?,
            block: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(t)
    }
}

/// dm-era's status: `<metadata block size> <used>/<total> <current era>
/// <held metadata root | ->`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EraStatus {
    /// Metadata blocks in use.
    pub metadata_used: u64,
    /// Metadata blocks in all.
    pub metadata_total: u64,
    /// The era being written now.
    pub era: u32,
    /// The block of the metadata snapshot, while one is held.
    pub metadata_snap: Option<u64>,
}

impl EraStatus {
    /// Parse the params of dm-era's status line.
    pub fn parse(params: &str) -> Option<EraStatus> {
        let mut it = params.split_whitespace();
        let _block = it.next()?;
        let (used, total) = it.next()?.split_once('/')?;
        let era = it.next()?.parse().ok()?;
        let snap = match it.next()? {
            "-" => None,
            s => Some(s.parse().ok()?),
        };
        Some(EraStatus {
            metadata_used: used.parse().ok()?,
            metadata_total: total.parse().ok()?,
            era,
            metadata_snap: snap,
        })
    }
}

/// One changed range: era blocks `begin..end`, and the bytes they cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ChangedRange {
    /// First era block.
    pub begin: u32,
    /// One past the last era block.
    pub end: u32,
    /// Byte offset on the device.
    pub offset: u64,
    /// Bytes (the last block of the device may be partial).
    pub length: u64,
}

impl fmt::Display for ChangedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blocks {}..{}  bytes {}+{}",
            self.begin, self.end, self.offset, self.length
        )
    }
}

/// Era-block runs as byte ranges of a device of `device` sectors with
/// blocks of `block` sectors.
pub fn byte_ranges(runs: &[Range<u32>], block: Sectors, device: Sectors) -> Vec<ChangedRange> {
    let bs = block.bytes();
    runs.iter()
        .map(|r| {
            let offset = u64::from(r.start) * bs;
            let end = (u64::from(r.end) * bs).min(device.bytes());
            ChangedRange {
                begin: r.start,
                end: r.end,
                offset,
                length: end.saturating_sub(offset),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_follow_era_ctr() {
        assert_eq!(
            block_sectors(65536, Sectors(1 << 20)).unwrap(),
            Sectors(128)
        );
        assert_eq!(block_sectors(12288, Sectors(1 << 20)).unwrap(), Sectors(24));
        for bad in [0, 512, 6144] {
            let e = block_sectors(bad, Sectors(1 << 20))
                .unwrap_err()
                .to_string();
            assert!(e.contains("multiple of 4 KiB"), "{e}");
        }
        let e = block_sectors(4096, Sectors(1 << 40))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use a bigger block size"), "{e}");
    }

    #[test]
    fn parses_table_and_status() {
        assert_eq!(
            EraTable::parse("254:48 252:0 128"),
            Some(EraTable {
                metadata: DevNo::new(254, 48),
                origin: DevNo::new(252, 0),
                block: Sectors(128)
            })
        );
        assert_eq!(EraTable::parse("254:48 252:0"), None);
        let s = EraStatus::parse("8 12/16384 5 -").unwrap();
        assert_eq!((s.metadata_used, s.era, s.metadata_snap), (12, 5, None));
        assert_eq!(
            EraStatus::parse("8 30/16384 7 17").unwrap().metadata_snap,
            Some(17)
        );
        assert_eq!(EraStatus::parse("Error"), None);
    }

    #[test]
    fn ranges_in_bytes_stop_at_the_device_end() {
        // 1000 sectors, 128-sector blocks: block 7 holds only 104 sectors.
        let r = byte_ranges(&[0..2, 7..8], Sectors(128), Sectors(1000));
        assert_eq!((r[0].offset, r[0].length), (0, 2 * 65536));
        assert_eq!((r[1].offset, r[1].length), (7 * 65536, 104 * 512));
        assert_eq!(nr_blocks(Sectors(1000), Sectors(128)), 8);
    }

    #[test]
    fn metadata_need_grows_with_blocks() {
        assert!(metadata_bytes_needed(4096) < 1 << 20);
        assert!(metadata_bytes_needed(1 << 30) > 8 << 30);
    }
}
