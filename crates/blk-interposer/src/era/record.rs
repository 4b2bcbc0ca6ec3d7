//! The tracking record: what dm-era's own metadata cannot say, kept beside
//! it on the metadata device, so that a question about the changes since an
//! era that spans a gap in tracking gets an error instead of a short list.
//!
//! dm-era answers "which blocks were written in eras >= E" only for the
//! writes it saw.  Writes made while it was not on the device (detached,
//! before it was attached after a boot, while the metadata was elsewhere)
//! are in no era at all.  The record says which device the metadata tracks
//! and since which era tracking has been continuous (the *epoch*), and how
//! each earlier epoch ended.  [`crate::Ops::era_changed`] answers only for
//! eras of the current, open epoch on the same device.
//!
//! # On-disk format (version 1)
//!
//! The last [`RESERVED`] bytes of the metadata device (its size rounded
//! down to 4 KiB) belong to the record; dm-era gets a dm-linear slice of
//! everything before them.  The record has two 4 KiB slots, at the start
//! of that area and 4 KiB after it.  Each slot, little-endian:
//!
//! ```text
//!   0..8     magic "BIERATRK"
//!   8..12    format version (1)
//!   12..16   crc32c of bytes 16..4096, with the seed and no final
//!            inversion, as dm's persistent-data checksums
//!   16..24   sequence number: the slot with the higher valid one is current
//!   24..28   length N of the JSON document that follows
//!   28..28+N the record as JSON (see [`TrackingRecord`]), then zeros
//! ```
//!
//! An update writes the other slot with the next sequence number and
//! flushes it, so a torn write leaves the previous record readable.  A slot
//! that does not check out is ignored; when neither does, the metadata has
//! no record, and no question about its eras is answered.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use crate::types::Sectors;

/// Bytes at the end of the metadata device kept for the record.
pub const RESERVED: u64 = 64 << 10;
/// Format version written and understood.
pub const FORMAT: u32 = 1;
/// How many ended epochs the record keeps, besides the current one.
pub const KEEP_EPOCHS: usize = 32;

const SLOT: usize = 4096;
const MAGIC: &[u8; 8] = b"BIERATRK";
const HEADER: usize = 28;

/// The device that an era metadata device tracks, as far as the host can
/// tell it apart from another one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// First sector on its disk (0 for a whole disk).
    pub start: u64,
    /// Partition number (0 for a whole disk).
    pub partition: u32,
    /// The disk's serial number, WWID or dm uuid, when it has one.
    pub serial: Option<String>,
}

impl DeviceIdentity {
    /// What differs from `now`, in words; `None` when they are the same
    /// device.
    pub fn differs(&self, now: &DeviceIdentity) -> Option<String> {
        let mut d = Vec::new();
        if self.sectors != now.sectors {
            d.push(format!("size {} -> {} sectors", self.sectors, now.sectors));
        }
        if (self.start, self.partition) != (now.start, now.partition) {
            d.push(format!(
                "partition {} at sector {} -> partition {} at sector {}",
                self.partition, self.start, now.partition, now.start
            ));
        }
        if self.serial != now.serial {
            d.push(format!(
                "disk serial {} -> {}",
                self.serial.as_deref().unwrap_or("none"),
                now.serial.as_deref().unwrap_or("none")
            ));
        }
        (!d.is_empty()).then(|| d.join(", "))
    }
}

/// How a tracking epoch ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "how")]
pub enum EpochEnd {
    /// It has not ended: dm-era is (or should be) on the device.  Found at
    /// attach, this means the last epoch ended without a word (a crash, a
    /// power cut, a removal behind our back).
    Open,
    /// `era detach` took dm-era off the device when this era was current.
    Detached {
        /// The era current at the detach.
        era: u32,
    },
    /// `era detach --shutdown` (the boot unit's stop, after the filesystem
    /// was unmounted) took dm-era off a device nobody held, when this era
    /// was current.  The next boot's attach (`era attach --at-boot`) goes
    /// on with this epoch if nothing can have written in between: another
    /// boot, and the device's first and last 64 KiB (where a mount, a new
    /// filesystem or a partition table writes) unchanged.
    Shutdown {
        /// The era current at the detach.
        era: u32,
        /// `/proc/sys/kernel/random/boot_id` of the boot that detached.
        boot_id: String,
        /// [`crate::host::Host::fingerprint`] of the device after the detach.
        fingerprint: String,
    },
}

/// One stretch of continuous tracking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// Every write of this epoch is in this era or a later one.
    pub start_era: u32,
    /// How it ended.
    pub end: EpochEnd,
}

/// The record: the tracked device and its epochs, the current one last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingRecord {
    /// A random number drawn when dm-era's metadata was formatted: era
    /// numbers of another formatting (a wiped or another metadata device)
    /// mean other writes, and a checkpoint names its generation
    /// ([`crate::era::Checkpoint`]).
    pub generation: u64,
    /// The tracked device.
    pub device: DeviceIdentity,
    /// Era block size in sectors.
    pub block_sectors: u64,
    /// Epochs, oldest first; at most [`KEEP_EPOCHS`] + 1.
    pub epochs: Vec<Epoch>,
}

impl TrackingRecord {
    /// The epoch tracking is in now, if tracking is on.
    pub fn open_epoch(&self) -> Option<&Epoch> {
        self.epochs.last().filter(|e| e.end == EpochEnd::Open)
    }

    /// Go on with the last epoch, which ended with a clean shutdown: the
    /// caller has checked that nothing wrote since.
    pub fn resume(&mut self) {
        if let Some(e) = self.epochs.last_mut() {
            if matches!(e.end, EpochEnd::Shutdown { .. }) {
                e.end = EpochEnd::Open;
            }
        }
    }

    /// End the open epoch with a clean shutdown at `era` (see
    /// [`EpochEnd::Shutdown`]).
    pub fn end_shutdown(&mut self, era: u32, boot_id: String, fingerprint: String) {
        if let Some(e) = self.epochs.last_mut() {
            if e.end == EpochEnd::Open {
                e.end = EpochEnd::Shutdown {
                    era,
                    boot_id,
                    fingerprint,
                };
            }
        }
    }

    /// Start a new epoch at `start_era`; an epoch still open ended unseen.
    pub fn begin(&mut self, start_era: u32) {
        self.epochs.push(Epoch {
            start_era,
            end: EpochEnd::Open,
        });
        let extra = self.epochs.len().saturating_sub(KEEP_EPOCHS + 1);
        self.epochs.drain(..extra);
    }

    /// End the open epoch with a detach at `era`.
    pub fn end_detached(&mut self, era: u32) {
        if let Some(e) = self.epochs.last_mut() {
            if e.end == EpochEnd::Open {
                e.end = EpochEnd::Detached { era };
            }
        }
    }
}

/// A record as read, with the sequence number of its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The record.
    pub record: TrackingRecord,
    /// Its sequence number; the next write uses the next one.
    pub seq: u64,
}

/// A new generation number: random, from the kernel.
pub fn new_generation() -> io::Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Where the record area starts on a metadata device of `size`: also the
/// length of the slice dm-era gets.
pub fn area_start(size: Sectors) -> Sectors {
    let bytes = size.bytes() / SLOT as u64 * SLOT as u64;
    Sectors(bytes.saturating_sub(RESERVED) / 512)
}

/// Read the record of a metadata device of `size`; `Ok(None)` when neither
/// slot holds one.
pub fn read(f: &File, size: Sectors) -> io::Result<Option<Stored>> {
    let base = area_start(size).bytes();
    let mut best: Option<Stored> = None;
    for slot in 0..2u64 {
        let mut b = Aligned([0; SLOT]);
        f.read_exact_at(&mut b.0, base + slot * SLOT as u64)?;
        if let Some(s) = decode(&b.0) {
            if best.as_ref().is_none_or(|b| s.seq > b.seq) {
                best = Some(s);
            }
        }
    }
    Ok(best)
}

/// Write `record` with sequence number `seq` into the slot that does not
/// hold `seq - 1`, and flush it to the device.
pub fn write(f: &File, size: Sectors, record: &TrackingRecord, seq: u64) -> io::Result<()> {
    let b = encode(record, seq)?;
    let at = area_start(size).bytes() + (seq % 2) * SLOT as u64;
    f.write_all_at(&b.0, at)?;
    f.sync_data()
}

#[repr(C, align(4096))]
struct Aligned([u8; SLOT]);

fn encode(record: &TrackingRecord, seq: u64) -> io::Result<Box<Aligned>> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    if json.len() > SLOT - HEADER {
        return Err(io::Error::other(format!(
            "the tracking record takes {} bytes, a slot holds {}",
            json.len(),
            SLOT - HEADER
        )));
    }
    let mut b = Box::new(Aligned([0; SLOT]));
    b.0[..8].copy_from_slice(MAGIC);
    b.0[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    b.0[16..24].copy_from_slice(&seq.to_le_bytes());
    b.0[24..28].copy_from_slice(&(json.len() as u32).to_le_bytes());
    b.0[HEADER..HEADER + json.len()].copy_from_slice(&json);
    let crc = crate::era::meta::crc32c(!0, &b.0[16..]);
    b.0[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(b)
}

fn decode(b: &[u8; SLOT]) -> Option<Stored> {
    let le32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    if &b[..8] != MAGIC || le32(8) != FORMAT {
        return None;
    }
    if le32(12) != crate::era::meta::crc32c(!0, &b[16..]) {
        return None;
    }
    let seq = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
    let len = le32(24) as usize;
    let json = b.get(HEADER..HEADER.checked_add(len)?)?;
    let record = serde_json::from_slice(json).ok()?;
    Some(Stored { record, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> TrackingRecord {
        TrackingRecord {
            generation: 0x3f9a_1c02_d4e5_b6a7,
            device: DeviceIdentity {
                sectors: 65536,
                start: 2048,
                partition: 1,
                serial: Some("QM00002".into()),
            },
            block_sectors: 128,
            epochs: vec![Epoch {
                start_era: 1,
                end: EpochEnd::Open,
            }],
        }
    }

    fn image(size: Sectors) -> (File, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!(
            "bi-record-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(size.bytes()).unwrap();
        (f, p)
    }

    #[test]
    fn the_area_is_the_last_64k_of_whole_4k_blocks() {
        assert_eq!(area_start(Sectors(131072)), Sectors(131072 - 128));
        // 7 sectors past a 4 KiB boundary are not used.
        assert_eq!(area_start(Sectors(131079)), Sectors(131072 - 128));
        assert_eq!(area_start(Sectors(64)), Sectors(0));
    }

    #[test]
    fn round_trip_and_the_newer_slot_wins() {
        let size = Sectors(8192);
        let (f, p) = image(size);
        assert_eq!(read(&f, size).unwrap(), None, "zeros hold no record");
        let mut r = rec();
        write(&f, size, &r, 1).unwrap();
        assert_eq!(read(&f, size).unwrap().unwrap().record, r);
        r.end_detached(7);
        r.begin(9);
        write(&f, size, &r, 2).unwrap();
        let s = read(&f, size).unwrap().unwrap();
        assert_eq!((s.seq, &s.record), (2, &r));
        assert_eq!(s.record.open_epoch().unwrap().start_era, 9);
        assert_eq!(
            s.record.epochs[0].end,
            EpochEnd::Detached { era: 7 },
            "the first epoch ended with a detach"
        );
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_torn_or_corrupt_slot_falls_back_to_the_other() {
        let size = Sectors(8192);
        let (f, p) = image(size);
        let r1 = rec();
        write(&f, size, &r1, 1).unwrap();
        let mut r2 = rec();
        r2.end_detached(3);
        write(&f, size, &r2, 2).unwrap();
        // Flip one byte of the JSON in slot 0 (seq 2).
        let at = area_start(size).bytes() + 40;
        let mut byte = [0u8];
        f.read_exact_at(&mut byte, at).unwrap();
        f.write_all_at(&[byte[0] ^ 0x20], at).unwrap();
        let s = read(&f, size).unwrap().unwrap();
        assert_eq!((s.seq, s.record), (1, r1), "slot 1 still holds seq 1");
        // Both damaged: no record at all, never a guess.
        let at = area_start(size).bytes() + SLOT as u64 + 40;
        f.read_exact_at(&mut byte, at).unwrap();
        f.write_all_at(&[byte[0] ^ 0x20], at).unwrap();
        assert_eq!(read(&f, size).unwrap(), None);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn epochs_are_bounded_and_identity_differences_are_named() {
        let mut r = rec();
        for e in 0..100 {
            r.end_detached(e);
            r.begin(e + 1);
        }
        assert_eq!(r.epochs.len(), KEEP_EPOCHS + 1);
        assert_eq!(r.open_epoch().unwrap().start_era, 100);
        let mut now = r.device.clone();
        assert_eq!(r.device.differs(&now), None);
        now.sectors += 8;
        now.serial = None;
        assert_eq!(
            r.device.differs(&now).unwrap(),
            "size 65536 -> 65544 sectors, disk serial QM00002 -> none"
        );
        let json = serde_json::to_vec(&r).unwrap();
        assert!(json.len() < SLOT - HEADER, "{} bytes", json.len());
    }
}
