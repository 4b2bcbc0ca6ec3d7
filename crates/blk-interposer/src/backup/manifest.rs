//! The manifest of one backup version: `NNNNNN.json` beside its data file.
//!
//! It says what was copied (the device, its identity and size, the byte
//! ranges with a SHA-256 per piece), from which point of changed-block
//! tracking (the era checkpoint taken before the snapshot), and which
//! version it builds on (the previous manifest's number and SHA-256).  A
//! version exists once its manifest does: the manifest is written last.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::era::record::DeviceIdentity;
use crate::era::Checkpoint;

/// The manifest format written and understood.
pub const FORMAT: u32 = 1;

/// The largest piece a range is split into for its checksum: 4 MiB, also
/// the size of one read from the snapshot.
pub const PIECE_BYTES: u64 = 4 << 20;

/// A full image or the changes since the previous version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `NNNNNN.full.img`: a sparse raw image of the whole device.
    Full,
    /// `NNNNNN.delta`: the changed ranges' data, one after the other.
    Incremental,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        })
    }
}

/// Why a version is a full one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "why")]
pub enum FullReason {
    /// The directory holds no version yet.
    First,
    /// Asked for (`--full`).
    Forced,
    /// No dm-era tracks the device: nothing lists its changes.
    NoTracking,
    /// The previous version has no checkpoint (it was taken without
    /// tracking), so there is nothing to list the changes since.
    NoCheckpoint,
    /// The device is not the one the previous version copied.
    DeviceChanged {
        /// What differs.
        what: String,
    },
    /// Tracking has a gap since the previous version's checkpoint
    /// ([`crate::Error::EraGap`]).
    Gap {
        /// The gap, as the error said it.
        message: String,
    },
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullReason::First => f.write_str("the first backup in this directory"),
            FullReason::Forced => f.write_str("asked for (--full)"),
            FullReason::NoTracking => f.write_str(
                "no changed-block tracking: attach dm-era (`interposer era attach DEV --metadata META_DEV`) to make the next backup incremental",
            ),
            FullReason::NoCheckpoint => {
                f.write_str("the previous backup was taken without tracking (it has no checkpoint)")
            }
            FullReason::DeviceChanged { what } => {
                write!(f, "the device is not the one the previous backup copied ({what})")
            }
            FullReason::Gap { message } => write!(f, "a gap in tracking: {message}"),
        }
    }
}

/// A piece of the device, at most [`PIECE_BYTES`], with its checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Byte offset on the device.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
}

/// The version a version builds on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Its number.
    pub version: u32,
    /// SHA-256 of its manifest file, as it was when this one was written.
    pub manifest_sha256: String,
}

/// The data file of a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its name in the backup directory (`000001.full.img`, `000002.delta`).
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// SHA-256 of its whole contents (holes read as zeros).
    pub sha256: String,
}

/// What a version copied, and why this way: the part of a manifest known
/// before the copy ([`crate::backup::NewVersion`] has it too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The device as named when it was copied (`/dev/sdb1`).
    pub device: String,
    /// What tells the device apart from another one.
    pub identity: DeviceIdentity,
    /// The device's size in bytes.
    pub size: u64,
    /// Full or incremental.
    pub kind: Kind,
    /// Why it is full; `None` for an incremental.
    pub full_reason: Option<FullReason>,
    /// The era checkpoint taken before the snapshot: the next version
    /// copies what changed since.  `None` without tracking.
    pub checkpoint: Option<Checkpoint>,
    /// The era block size the changed ranges came in, for an incremental.
    pub block_bytes: Option<u64>,
    /// The devices snapshotted at the same point in time as this one, in
    /// one run of a group backup ([`crate::Ops::backup_group`]), this one
    /// among them; `None` for a backup of one device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<String>>,
}

/// One backup version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The program and version that wrote it (`blk-interposer 0.1.0`).
    pub tool: String,
    /// When it was written, in seconds since the epoch.
    pub created: u64,
    /// Its number: 1, 2, ...
    pub version: u32,
    /// What it copied (its fields sit at the top level of the JSON).
    #[serde(flatten)]
    pub source: Source,
    /// The version it builds on (an incremental's base, a full one's
    /// predecessor in the directory).
    pub previous: Option<Previous>,
    /// The copied pieces, in device order.
    pub pieces: Vec<Piece>,
    /// The data file.
    pub data: DataFile,
}

impl Manifest {
    /// Bytes of the device the pieces cover.
    pub fn copied_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.length).sum()
    }
}

/// `000042.json`.
pub fn manifest_name(version: u32) -> String {
    format!("{version:06}.json")
}

/// `000042.full.img` or `000042.delta`.
pub fn data_name(version: u32, kind: Kind) -> String {
    match kind {
        Kind::Full => format!("{version:06}.full.img"),
        Kind::Incremental => format!("{version:06}.delta"),
    }
}

/// The version number of a file name of ours (`000042.json`,
/// `000042.delta.partial`), if it is one.
pub fn version_of(name: &str) -> Option<u32> {
    let (num, _) = name.split_once('.')?;
    (num.len() == 6 && num.bytes().all(|b| b.is_ascii_digit()))
        .then(|| num.parse().ok())
        .flatten()
}

/// Byte ranges, sorted and merged, split into pieces of at most
/// [`PIECE_BYTES`] that do not reach past `size`.
pub fn split(ranges: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(o, l)| (o.min(size), o.saturating_add(l).min(size)))
        .filter(|(b, e)| b < e)
        .collect();
    sorted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (b, e) in sorted {
        match merged.last_mut() {
            Some(last) if b <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((b, e)),
        }
    }
    let mut out = Vec::new();
    for (mut b, e) in merged {
        while b < e {
            let l = (e - b).min(PIECE_BYTES);
            out.push((b, l));
            b += l;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(manifest_name(7), "000007.json");
        assert_eq!(data_name(7, Kind::Full), "000007.full.img");
        assert_eq!(data_name(12, Kind::Incremental), "000012.delta");
        assert_eq!(version_of("000012.delta.partial"), Some(12));
        assert_eq!(version_of("lock"), None);
        assert_eq!(version_of("12.json"), None);
    }

    #[test]
    fn ranges_are_merged_clipped_and_split() {
        let m = PIECE_BYTES;
        assert_eq!(
            split(
                &[(8192, 4096), (0, 4096), (4096, 4096), (3 * m, 10 * m)],
                4 * m + 512
            ),
            [(0, 12288), (3 * m, m), (4 * m, 512)]
        );
        assert_eq!(
            split(&[(0, 2 * m + 1)], 3 * m),
            [(0, m), (m, m), (2 * m, 1)]
        );
        assert!(split(&[(10, 0), (5 * m, 1)], m).is_empty());
    }

    #[test]
    fn reasons_read_well_and_serialize_tagged() {
        let r = FullReason::Gap {
            message: "tracking began again at era 6".into(),
        };
        assert_eq!(
            r.to_string(),
            "a gap in tracking: tracking began again at era 6"
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"why":"gap","message":"tracking began again at era 6"}"#
        );
        assert!(FullReason::NoTracking.to_string().contains("era attach"));
    }
}
