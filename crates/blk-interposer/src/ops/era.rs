//! Changed-block tracking with dm-era on a live device: `era_attach`,
//! `era_checkpoint`, `era_changed`, `era_status`, `era_detach`.
//!
//! dm-era counts *eras*: every write marks its era block with the current
//! era, and a checkpoint starts the next one.  After `era_checkpoint`
//! returns era E, every block written from then on is in era E or later, so
//! `era_changed(dev, E)` lists (at least) every block written since the
//! checkpoint: what an incremental backup has to copy.

use std::path::Path;

use serde::Serialize;

use crate::dm::mapper::check_name;
use crate::dm::table::{Arg, TableLine};
use crate::dm::{DeviceMapper, InterposePath, Table};
use crate::era::meta::{MetaError, Metadata};
use crate::era::record::{self, EpochEnd, TrackingRecord};
use crate::era::{self, ChangedRange, Checkpoint, EraStatus, EraTable, GapReason};
use crate::error::{Error, Result};
use crate::host::{mapper_path, DeviceSpec, Host, Occupied};
use crate::kernel::{Kernel, State};
use crate::ops::{CreateReport, Ops};
use crate::types::{DevNo, Sectors};

/// What `era_attach` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraAttachReport {
    /// The interposer that was created.
    #[serde(flatten)]
    pub create: CreateReport,
    /// The metadata device, e.g. `/dev/vdd (254:48)`.
    pub metadata: String,
    /// Era block size in sectors.
    pub block_sectors: Sectors,
    /// Era block size in bytes.
    pub block_bytes: u64,
    /// Era blocks covering the device.
    pub nr_blocks: u64,
    /// The era being written now.
    pub era: u32,
    /// The dm-linear slice of the metadata device that dm-era uses (the
    /// rest holds the tracking record).
    pub metadata_slice: String,
    /// Tracking covers every write from this checkpoint on: `era changed
    /// --since` answers for it and later ones, and refuses earlier ones.
    pub tracked_since: Checkpoint,
    /// How the tracking before this attach ended, when the metadata had
    /// tracked before (the eras before `tracked_since` are a gap).
    pub previous: Option<String>,
    /// The attach went on with the epoch a clean shutdown ended (at boot):
    /// no gap.
    pub resumed: bool,
}

/// What [`Ops::era_attach_at_boot`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum EraBoot {
    /// dm-era was attached.
    Attached(Box<EraAttachReport>),
    /// dm-era was on the device already, with this metadata.
    Already {
        /// The dm-era device.
        name: String,
        /// The tracked device.
        device: String,
    },
}

/// What [`Ops::era_detach_at_shutdown`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraShutdown {
    /// The detach.
    #[serde(flatten)]
    pub remove: crate::RemoveReport,
    /// Why the next boot's attach cannot go on from here (the epoch ended
    /// as with `era detach`); `None` when it can.
    pub gap: Option<String>,
}

/// What `era_checkpoint` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraCheckpoint {
    /// The dm-era device.
    pub name: String,
    /// The tracked device.
    pub device: String,
    /// The era before the checkpoint.
    pub previous_era: u32,
    /// The era written from now on.
    pub era: u32,
    /// `era` with the tracking generation: pass it to `era_changed` later.
    /// No generation when the metadata has no tracking record (then
    /// `era_changed` refuses every question anyway).
    pub checkpoint: Checkpoint,
}

/// A dm-era interposer, as `era_status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraInfo {
    /// The dm-era device.
    pub name: String,
    /// The tracked device.
    pub device: String,
    /// Its number.
    pub dev: DevNo,
    /// The metadata device.
    pub metadata: String,
    /// Its number.
    pub metadata_dev: DevNo,
    /// Era block size in sectors.
    pub block_sectors: Sectors,
    /// Era block size in bytes.
    pub block_bytes: u64,
    /// What dm-era reports.
    #[serde(flatten)]
    pub status: EraStatus,
    /// The first checkpoint `era changed --since` answers for.
    pub tracked_since: Option<Checkpoint>,
    /// Why it answers for none, when it does not.
    pub gap: Option<GapReason>,
}

/// What changed since an era.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraChanges {
    /// The dm-era device.
    pub name: String,
    /// The tracked device.
    pub device: String,
    /// The checkpoint asked about.
    pub since: Checkpoint,
    /// The first era after the metadata snapshot that was read: writes from
    /// now on are in this era or later.
    pub era: u32,
    /// Era block size in sectors.
    pub block_sectors: Sectors,
    /// Era block size in bytes.
    pub block_bytes: u64,
    /// Era blocks of the device.
    pub nr_blocks: u32,
    /// How many era blocks changed.
    pub changed_blocks: u64,
    /// How many bytes they cover.
    pub changed_bytes: u64,
    /// The changed blocks as coalesced ranges, in blocks and in bytes.
    pub ranges: Vec<ChangedRange>,
}

/// A dm-era device found by name or by the device it tracks.
struct Found {
    name: String,
    table: EraTable,
    dev: Option<DevNo>,
}

/// The uuid prefix of the dm-linear slice of a metadata device that dm-era
/// gets: `INTERPOSER-ERAMETA-MAJ:MIN-NAME` (tracked device, era name).
pub const META_UUID_PREFIX: &str = "INTERPOSER-ERAMETA-";

/// Where a tracking record lives: the whole metadata device.
struct RecordAt {
    meta: DevNo,
    size: Sectors,
    /// The dm-linear slice dm-era uses, when there is one.
    slice: Option<String>,
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Put dm-era on the live `device`, its metadata on `metadata`, with
    /// era blocks of `block_bytes`; the interposer is named `name`, or
    /// `<kernel name>-era`.  The table is `0 SIZE era META
    /// [interpose]DEVICE BLOCK_SECTORS`, created like [`Ops::create`].
    ///
    /// Refused before anything is created: a block size dm-era refuses (not
    /// a multiple of 4 KiB), a metadata device that is the device, too
    /// small, or holding something else than dm-era metadata of this block
    /// size (dm-era metadata of the same block size is reused: the eras go
    /// on).
    ///
    /// ```no_run
    /// use std::path::Path;
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = blk_interposer::Ops::system()?;
    /// let r = ops.era_attach(Path::new("/dev/vdb1"), Path::new("/dev/vdd"), 64 << 10, None)?;
    /// println!("{} tracks {} in {} blocks, era {}", r.create.name, r.create.device, r.nr_blocks, r.era);
    /// # Ok(()) }
    /// ```
    pub fn era_attach(
        &self,
        device: &Path,
        metadata: &Path,
        block_bytes: u64,
        name: Option<&str>,
    ) -> Result<EraAttachReport> {
        self.era_attach_with(device, metadata, block_bytes, name, None)
    }

    /// The boot unit's attach (`interposer-era@.service`, written by `era
    /// enable`): [`Ops::era_attach`] onto metadata that must hold the
    /// tracking record of `generation` (nothing is formatted: a blank or
    /// another disk at the metadata path is refused with
    /// [`Error::EraBootMetadata`]).  Tracking goes on with the epoch that
    /// the last boot's [`Ops::era_detach_at_shutdown`] ended cleanly, when
    /// nothing can have written since: this is another boot, the device is
    /// the same and not in use, and its [`Host::fingerprint`] is unchanged.
    /// Otherwise a new epoch begins (changes since an older checkpoint are
    /// a gap).  Already attached with this metadata: nothing to do.
    pub fn era_attach_at_boot(
        &self,
        device: &Path,
        metadata: &Path,
        block_bytes: u64,
        generation: u64,
    ) -> Result<EraBoot> {
        let meta = self.resolve_any(metadata)?;
        if let Ok(f) = self.find_era(&device.to_string_lossy()) {
            let at = self.record_at(&f);
            let gen = self.read_record(&at).map(|s| s.record.generation);
            if at.meta == meta && gen == Some(generation) {
                return Ok(EraBoot::Already {
                    device: self.era_device_label(&f),
                    name: f.name,
                });
            }
        }
        self.era_attach_with(device, metadata, block_bytes, None, Some(generation))
            .map(|r| EraBoot::Attached(Box::new(r)))
    }

    fn era_attach_with(
        &self,
        device: &Path,
        metadata: &Path,
        block_bytes: u64,
        name: Option<&str>,
        boot: Option<u64>,
    ) -> Result<EraAttachReport> {
        let dev = self.resolve_device(device)?;
        let meta = self.resolve_any(metadata)?;
        if meta == dev {
            return Err(Error::EraMetadataOnDevice {
                meta: metadata.display().to_string(),
                dev: device.display().to_string(),
            });
        }
        let size = self.host.sectors(dev)?;
        let block = era::block_sectors(block_bytes, size)?;
        let nr = era::nr_blocks(size, block);
        let need = era::metadata_bytes_needed(nr);
        let meta_size = self.host.sectors(meta)?;
        let slice_len = record::area_start(meta_size);
        let have = slice_len.bytes();
        let meta_label = self.device_label(meta);
        if have < need {
            return Err(Error::EraMetadataTooSmall {
                dev: meta_label,
                have: meta_size.bytes(),
                need: need + record::RESERVED,
                blocks: nr,
            });
        }
        // Nothing is written before what can be checked is: a metadata
        // device held by a dm table (another era's slice) would have two
        // dm-era targets writing one metadata, and a name in use would
        // fail the create after the record began a new epoch.
        if self.host.occupied(meta)? == Some(Occupied::InUse) {
            return Err(Error::EraMetadataInUse { dev: meta_label });
        }
        let file = self.host.open_direct(meta, true)?;
        let (start, stored) = self.check_fresh_metadata(&file, meta, metadata, block)?;
        let fresh = start.is_none();
        if let Some(generation) = boot {
            let why = match &stored {
                _ if fresh => Some("holds no dm-era metadata (blank)".to_string()),
                None => Some("holds no tracking record".to_string()),
                Some(s) if s.record.generation != generation => Some(format!(
                    "holds tracking generation {:016x}",
                    s.record.generation
                )),
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(Error::EraBootMetadata {
                    dev: meta_label,
                    why,
                    generation,
                });
            }
        }
        let start = start.unwrap_or(0);
        let identity = self.host.identity(dev)?;
        let name = match name {
            Some(n) => n.to_string(),
            None => format!(
                "{}-era",
                self.host.kernel_name(dev).map_or_else(
                    || dev.to_string().replace(':', "_"),
                    |n| n.replace('/', "!")
                )
            ),
        };
        for n in [name.clone(), format!("{name}-meta")] {
            if self.dm.devno(&n)?.is_some() {
                return Err(Error::DmExists { name: n });
            }
        }
        // The record first: an epoch that begins at an era no later than
        // the first one dm-era will write in (it only ever counts up).  If
        // the attach fails, the record shows an open epoch with no dm-era
        // on the device, which `era changed` refuses as a gap.
        let io = |what: &str| {
            let what = format!("cannot {what} the tracking record on {meta_label}");
            move |source| Error::Io { what, source }
        };
        let mut resumed = false;
        let (mut rec, seq, previous) = match stored {
            // dm-era's metadata goes on: so does its record, and at boot
            // the epoch a clean shutdown ended, when nothing wrote since.
            Some(s) if !fresh && s.record.block_sectors == block.0 => {
                let mut previous = describe_end(&s.record, &identity);
                if boot.is_some() {
                    match self.may_resume(&s.record, dev, &identity) {
                        Ok(()) => resumed = true,
                        Err(why) => {
                            previous = previous.map(|p| format!("{p}; it cannot go on: {why}"))
                        }
                    }
                }
                (s.record, s.seq, previous)
            }
            // dm-era formats the metadata: a new generation, whose eras
            // have nothing to do with those of an old record.
            other => (
                TrackingRecord {
                    generation: record::new_generation().map_err(io("draw a generation for"))?,
                    device: identity.clone(),
                    block_sectors: block.0,
                    epochs: Vec::new(),
                },
                other.map_or(0, |s| s.seq),
                None,
            ),
        };
        let previous = if resumed {
            rec.resume();
            None
        } else {
            rec.device = identity;
            rec.begin(start);
            previous
        };
        let tracked_from = rec.epochs.last().map_or(start, |e| e.start_era);
        record::write(&file, meta_size, &rec, seq + 1).map_err(io("write"))?;
        drop(file);

        let slice_name = format!("{name}-meta");
        check_name(&slice_name)?;
        let slice_table = Table {
            lines: vec![TableLine {
                start: Sectors(0),
                length: slice_len,
                target: "linear".into(),
                args: vec![Arg::Plain(meta.to_string()), Arg::Plain("0".into())],
            }],
        };
        let mut undo = Vec::new();
        let uuid = format!("{META_UUID_PREFIX}{dev}-{name}");
        let (slice, _, _) = match self.dm_live(&slice_name, &uuid, &slice_table, &mut undo) {
            Ok(x) => x,
            Err(e) => return Err(self.undo(e, undo)),
        };
        let table = Table {
            lines: vec![TableLine {
                start: Sectors(0),
                length: size,
                target: "era".into(),
                args: vec![
                    Arg::Plain(slice.to_string()),
                    Arg::Interpose(InterposePath::new(device)),
                    Arg::Plain(block.to_string()),
                ],
            }],
        };
        let create = match self.create(&name, &table) {
            Ok(c) => c,
            Err(e) => return Err(self.undo(e, undo)),
        };
        let era = self.era_status_of(&name)?.era;
        Ok(EraAttachReport {
            create,
            metadata: meta_label,
            metadata_slice: slice_name,
            block_sectors: block,
            block_bytes: block.bytes(),
            nr_blocks: nr,
            era,
            tracked_since: Checkpoint {
                era: tracked_from,
                generation: Some(rec.generation),
            },
            previous,
            resumed,
        })
    }

    /// Whether the epoch that `rec` ended with a clean shutdown can go on
    /// at this attach of `dev`: else why not.
    fn may_resume(
        &self,
        rec: &TrackingRecord,
        dev: DevNo,
        identity: &record::DeviceIdentity,
    ) -> std::result::Result<(), String> {
        let Some(EpochEnd::Shutdown {
            boot_id,
            fingerprint,
            ..
        }) = rec.epochs.last().map(|e| &e.end)
        else {
            return Err("the last epoch did not end with a clean shutdown".into());
        };
        if let Some(what) = rec.device.differs(identity) {
            return Err(format!("the device changed ({what})"));
        }
        let now = self.host.boot_id().map_err(|e| e.to_string())?;
        if &now == boot_id {
            return Err("it ended in this boot: writes since are not tracked".into());
        }
        if self.host.occupied(dev).map_err(|e| e.to_string())? == Some(Occupied::InUse) {
            return Err("the device is in use (mounted?) before tracking began".into());
        }
        if &self.host.fingerprint(dev).map_err(|e| e.to_string())? != fingerprint {
            return Err(
                "the device's first or last 64 KiB changed since the shutdown (mounted or written elsewhere)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Block 0 of the metadata device must be zeros (dm-era formats it) or
    /// dm-era metadata with the same block size and our tracking record
    /// (dm-era reuses it).  The era a new epoch starts at: past every
    /// checkpoint of the epochs before (`None`: dm-era formats the metadata
    /// and counts from the start, in a new generation); and the record when
    /// there is one.
    fn check_fresh_metadata(
        &self,
        file: &std::fs::File,
        meta: DevNo,
        path: &Path,
        block: Sectors,
    ) -> Result<(Option<u32>, Option<record::Stored>)> {
        let foreign = |what: String| Error::EraMetadataForeign {
            dev: self.device_label(meta),
            dev_path: path.display().to_string(),
            what,
        };
        let stored = record::read(file, self.host.sectors(meta)?).map_err(|source| Error::Io {
            what: format!("cannot read {}", self.device_label(meta)),
            source,
        })?;
        match Metadata::open(file) {
            // Fresh metadata: dm-era formats it and starts counting.
            Err(MetaError::Blank) => Ok((None, stored)),
            Ok(md) if md.superblock.data_block_size as u64 == block.0 => match stored {
                // dm-era commits its superblock at every checkpoint, so no
                // checkpoint ever handed out is past the era it records; it
                // rolls over once more when it resumes, before any write.
                Some(s) => Ok((
                    Some(md.superblock.current_era.saturating_add(1)),
                    Some(s),
                )),
                None => Err(Error::EraMetadataNoRecord {
                    dev: self.device_label(meta),
                    dev_path: path.display().to_string(),
                }),
            },
            Ok(md) => Err(foreign(format!(
                "holds dm-era metadata for blocks of {} sectors, not {} (dm-era cannot change the block size)",
                md.superblock.data_block_size, block.0
            ))),
            Err(MetaError::BadMagic { .. }) => Err(foreign(
                "holds something that is not dm-era metadata (a filesystem?)".into(),
            )),
            Err(MetaError::Io { block: _, source }) => Err(Error::Io {
                what: format!("cannot read {}", self.device_label(meta)),
                source,
            }),
            Err(e) => Err(foreign(format!("holds damaged dm-era metadata ({e})"))),
        }
    }

    /// Start a new era on the dm-era interposer of `what` (`/dev/vdb1`,
    /// `vdb1`, or the dm name) and return it: every block written from now
    /// on is in that era or a later one.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = blk_interposer::Ops::system()?;
    /// let since = ops.era_checkpoint("vdb1")?.checkpoint; // keep it with the backup
    /// // ... writes ...
    /// let changes = ops.era_changed("vdb1", since)?;
    /// # Ok(()) }
    /// ```
    pub fn era_checkpoint(&self, what: &str) -> Result<EraCheckpoint> {
        let f = self.find_era(what)?;
        let before = self.era_status_of(&f.name)?.era;
        self.dm.message(&f.name, "checkpoint")?;
        let after = self.era_status_of(&f.name)?.era;
        let generation = self
            .read_record(&self.record_at(&f))
            .map(|s| s.record.generation);
        Ok(EraCheckpoint {
            device: self.era_device_label(&f),
            name: f.name,
            previous_era: before,
            era: after,
            checkpoint: Checkpoint {
                era: after,
                generation,
            },
        })
    }

    /// The byte ranges of the dm-era interposer of `what` written since
    /// checkpoint `since`: the same blocks `era_invalidate --written-since
    /// ERA --metadata-snapshot` lists.  Takes a metadata snapshot (which
    /// starts a new era), reads dm-era's metadata from the metadata device
    /// itself, and drops the snapshot again, also when reading fails.
    ///
    /// Never a short list: when tracking has a gap since `since` (dm-era
    /// was detached and attached again, the metadata was formatted anew or
    /// moved to another device, the device changed, or dm-era is not on
    /// the device's I/O path now), it fails with [`Error::EraGap`], which
    /// [`Error::is_tracking_gap`] tells apart: take a full backup then.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = blk_interposer::Ops::system()?;
    /// match ops.era_changed("/dev/vdb1", "3@3f9a1c02d4e5b6a7".parse().unwrap()) {
    ///     Ok(c) => {
    ///         for r in &c.ranges {
    ///             println!("copy {} bytes at offset {}", r.length, r.offset);
    ///         }
    ///     }
    ///     Err(e) if e.is_tracking_gap() => println!("full backup needed: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn era_changed(&self, what: &str, since: Checkpoint) -> Result<EraChanges> {
        let f = self.find_era(what)?;
        let covered = self
            .tracked_since(&f)
            .and_then(|(start, generation, before)| match since.generation {
                Some(asked) if asked != generation => Err(GapReason::OtherGeneration {
                    asked,
                    have: generation,
                }),
                _ if since.era < start => Err(before),
                _ => Ok(()),
            });
        if let Err(reason) = covered {
            return Err(Error::EraGap {
                dev: self.era_device_label(&f),
                since,
                reason,
            });
        }
        if self.era_status_of(&f.name)?.metadata_snap.is_some() {
            return Err(Error::EraSnapHeld { name: f.name });
        }
        let meta = self.record_at(&f).meta;
        let file = self.host.open_direct(meta, false)?;
        self.dm.message(&f.name, "take_metadata_snap")?;
        let read = (|| {
            let md = Metadata::open(&file)?;
            let snap = md.snapshot()?;
            let marked = md.written_since(&snap, since.era)?;
            Ok((snap, marked))
        })()
        .map_err(|source| Error::EraMetadata {
            dev: self.device_label(meta),
            source,
        });
        let dropped = self.dm.message(&f.name, "drop_metadata_snap");
        let (snap, marked) = match (read, dropped) {
            (Ok(r), Ok(_)) => r,
            (Err(e), Ok(_)) => return Err(e),
            (r, Err(drop)) => {
                return Err(Error::EraSnapLeft {
                    name: f.name,
                    before: r.err().map_or_else(String::new, |e| format!("{e}; ")),
                    drop: Box::new(drop),
                })
            }
        };
        let runs = era::meta::runs(&marked);
        let block = Sectors(u64::from(snap.data_block_size));
        let size = match f.dev {
            Some(d) => self.host.sectors(d)?,
            None => Sectors(u64::from(snap.nr_blocks) * block.0),
        };
        let ranges = era::byte_ranges(&runs, block, size);
        Ok(EraChanges {
            device: self.era_device_label(&f),
            name: f.name,
            since,
            era: snap.current_era,
            block_sectors: block,
            block_bytes: block.bytes(),
            nr_blocks: snap.nr_blocks,
            changed_blocks: runs.iter().map(|r| u64::from(r.end - r.start)).sum(),
            changed_bytes: ranges.iter().map(|r| r.length).sum(),
            ranges,
        })
    }

    /// The dm-era interposer of `what`: era, block size, metadata use.
    pub fn era_status(&self, what: &str) -> Result<EraInfo> {
        let f = self.find_era(what)?;
        let status = self.era_status_of(&f.name)?;
        let (tracked_since, gap) = match self.tracked_since(&f) {
            Ok((era, generation, _)) => (
                Some(Checkpoint {
                    era,
                    generation: Some(generation),
                }),
                None,
            ),
            Err(why) => (None, Some(why)),
        };
        let metadata_dev = self.record_at(&f).meta;
        Ok(EraInfo {
            tracked_since,
            gap,
            device: self.era_device_label(&f),
            dev: f.dev.unwrap_or_default(),
            metadata: self.device_label(metadata_dev),
            metadata_dev,
            block_sectors: f.table.block,
            block_bytes: f.table.block.bytes(),
            status,
            name: f.name,
        })
    }

    /// Take the dm-era interposer of `what` away ([`Ops::remove`]).  The
    /// metadata stays on its device.
    pub fn era_detach(&self, what: &str) -> Result<crate::RemoveReport> {
        self.era_detach_with(what, false).map(|s| s.remove)
    }

    /// The boot unit's stop, after the filesystem on the device was
    /// unmounted: [`Ops::era_detach`], and when nobody holds the device any
    /// more, the epoch ends as a clean shutdown that the next boot's
    /// [`Ops::era_attach_at_boot`] can go on from (see
    /// [`EpochEnd::Shutdown`]).  The device still in use (a `systemctl stop`
    /// while mounted) ends it as a detach: a gap.
    pub fn era_detach_at_shutdown(&self, what: &str) -> Result<EraShutdown> {
        self.era_detach_with(what, true)
    }

    fn era_detach_with(&self, what: &str, shutdown: bool) -> Result<EraShutdown> {
        let f = self.find_era(what)?;
        if let Some(dev) = f.dev {
            let on = self.kernel.status(dev)?.interposer;
            let by = on.and_then(|i| self.dm.name_of(i).ok().flatten());
            match by {
                Some(by) if by != f.name => return Err(Error::EraCovered { name: f.name, by }),
                _ => {}
            }
        }
        let era = self.era_status_of(&f.name)?.era;
        let report = self.remove(&f.name)?;
        // Writes from now on are tracked by nothing: the epoch ends here,
        // at a shutdown cleanly when nobody can write any more.
        let clean = shutdown.then(|| match f.dev {
            Some(dev) => self.clean_end(dev),
            None => Err("the device is gone".to_string()),
        });
        let gap = clean.as_ref().and_then(|c| c.as_ref().err().cloned());
        let at = self.record_at(&f);
        let ended = (|| {
            let file = self.host.open_direct(at.meta, true)?;
            let io = |source| Error::Io {
                what: format!(
                    "cannot update the tracking record on {}",
                    self.device_label(at.meta)
                ),
                source,
            };
            if let Some(mut s) = record::read(&file, at.size).map_err(io)? {
                match clean {
                    Some(Ok((boot_id, fingerprint))) => {
                        s.record.end_shutdown(era, boot_id, fingerprint)
                    }
                    _ => s.record.end_detached(era),
                }
                record::write(&file, at.size, &s.record, s.seq + 1).map_err(io)?;
            }
            Ok(())
        })();
        let slice = at.slice.map_or(Ok(()), |n| {
            let devno = self.dm.devno(&n)?;
            self.dm.remove(&n)?;
            if let Some(d) = devno {
                let _ = self.host.remove_node(&mapper_path(&n), d);
            }
            Ok(())
        });
        ended.and(slice).map(|()| EraShutdown {
            remove: report,
            gap,
        })
    }

    /// This boot's id and the fingerprint of `dev`, when nobody holds it:
    /// what a clean shutdown records.
    fn clean_end(&self, dev: DevNo) -> std::result::Result<(String, String), String> {
        if self.host.occupied(dev).map_err(|e| e.to_string())? == Some(Occupied::InUse) {
            return Err("the device is still in use (mounted?), so writes after the detach would not be tracked".into());
        }
        let boot_id = self.host.boot_id().map_err(|e| e.to_string())?;
        let fingerprint = self.host.fingerprint(dev).map_err(|e| e.to_string())?;
        Ok((boot_id, fingerprint))
    }

    /// The metadata device (and its size) that holds the record of `f`:
    /// behind our dm-linear slice, or the era table's metadata device itself.
    fn record_at(&self, f: &Found) -> RecordAt {
        let own = |meta: DevNo| RecordAt {
            meta,
            size: self.host.sectors(meta).unwrap_or(Sectors(0)),
            slice: None,
        };
        let Ok(Some(name)) = self.dm.name_of(f.table.metadata) else {
            return own(f.table.metadata);
        };
        let ours = matches!(self.dm.uuid(&name), Ok(Some(u)) if u.starts_with(META_UUID_PREFIX));
        let under = self
            .dm
            .table(&name)
            .ok()
            .and_then(|t| match t.lines.as_slice() {
                [l] if l.target == "linear" && l.params().ends_with(" 0") => {
                    t.plain_args().next().and_then(|a| a.parse::<DevNo>().ok())
                }
                _ => None,
            });
        match under {
            Some(meta) if ours => RecordAt {
                slice: Some(name),
                ..own(meta)
            },
            _ => own(f.table.metadata),
        }
    }

    /// The record behind `at`, if it reads.
    fn read_record(&self, at: &RecordAt) -> Option<record::Stored> {
        let file = self.host.open_direct(at.meta, false).ok()?;
        record::read(&file, at.size).ok().flatten()
    }

    /// The first era that tracking covers without a gap up to now, its
    /// generation, and the reason that applies to eras before it; or why it
    /// covers none.
    fn tracked_since(&self, f: &Found) -> std::result::Result<(u32, u64, GapReason), GapReason> {
        let Some(rec) = self.read_record(&self.record_at(f)).map(|s| s.record) else {
            return Err(GapReason::NoRecord);
        };
        let Some(epoch) = rec.open_epoch() else {
            return Err(match rec.epochs.last().map(|e| &e.end) {
                Some(EpochEnd::Detached { era } | EpochEnd::Shutdown { era, .. }) => {
                    GapReason::Ended { era: *era }
                }
                _ => GapReason::NoRecord,
            });
        };
        let Some(dev) = f.dev else {
            return Err(GapReason::NotInPath {
                now: "the device it tracks is not interposed".into(),
            });
        };
        let now = self
            .host
            .identity(dev)
            .map_err(|e| GapReason::DeviceChanged {
                what: format!("cannot tell: {e}"),
            })?;
        if let Some(what) = rec.device.differs(&now) {
            return Err(GapReason::DeviceChanged { what });
        }
        self.in_path(f, dev)?;
        let n = rec.epochs.len();
        let previous = match n.checked_sub(2).map(|i| &rec.epochs[i].end) {
            Some(EpochEnd::Detached { era }) => format!("after `era detach` at era {era}"),
            Some(EpochEnd::Shutdown { era, .. }) => {
                format!("after a shutdown at era {era} that the next attach could not go on from")
            }
            Some(EpochEnd::Open) => {
                "after tracking ended without a detach: a crash, a power cut or a reboot".into()
            }
            None => "when it was first attached".into(),
        };
        Ok((
            epoch.start_era,
            rec.generation,
            GapReason::Restarted {
                start: epoch.start_era,
                previous,
            },
        ))
    }

    /// dm-era of `f` must be on `dev`'s I/O path now: `dev` attached to it,
    /// or to a dm device stacked on it (a snapshot-origin).
    fn in_path(&self, f: &Found, dev: DevNo) -> std::result::Result<(), GapReason> {
        let era_dev = self.dm.devno(&f.name).ok().flatten();
        let status = self
            .kernel
            .status(dev)
            .map_err(|e| GapReason::NotInPath { now: e.to_string() })?;
        let top = match (status.state, status.interposer) {
            (State::Attached, Some(i)) => i,
            (State::Gone, _) => {
                return Err(GapReason::NotInPath {
                    now: "the device is gone".into(),
                })
            }
            _ => {
                return Err(GapReason::NotInPath {
                    now: "the device is on no interposer".into(),
                })
            }
        };
        let mut todo = vec![top];
        let mut seen = Vec::new();
        while let Some(d) = todo.pop() {
            if Some(d) == era_dev {
                return Ok(());
            }
            if seen.contains(&d) || seen.len() > 64 {
                continue;
            }
            seen.push(d);
            todo.extend(self.dm.deps(d).unwrap_or_default());
        }
        let name = self
            .dm
            .name_of(top)
            .ok()
            .flatten()
            .unwrap_or_else(|| top.to_string());
        Err(GapReason::NotInPath {
            now: format!(
                "the device is attached to `{name}`, which does not stack on `{}`",
                f.name
            ),
        })
    }

    fn era_device_label(&self, f: &Found) -> String {
        f.dev
            .map_or_else(|| f.table.origin.to_string(), |d| self.device_label(d))
    }

    fn era_status_of(&self, name: &str) -> Result<EraStatus> {
        let status = self.dm.status(name)?;
        EraStatus::parse(&status).ok_or_else(|| Error::EraStatus {
            name: name.to_string(),
            status,
        })
    }

    /// The era table of dm device `name`, or the target type it has instead.
    fn era_table(&self, name: &str) -> Result<std::result::Result<EraTable, String>> {
        let table = self.dm.table(name)?;
        Ok(match table.lines.as_slice() {
            [l] if l.target == "era" => {
                EraTable::parse(&l.params()).ok_or_else(|| l.target.clone())
            }
            [l, ..] => Err(l.target.clone()),
            [] => Err("table-less".into()),
        })
    }

    /// By dm name, or by the device (`/dev/vdb1`, `vdb1`, `MAJ:MIN`) whose
    /// lower device an era table uses.
    fn find_era(&self, what: &str) -> Result<Found> {
        let by_name = matches!(DeviceSpec::parse(Path::new(what)), DeviceSpec::Name(_));
        if by_name && self.dm.devno(what)?.is_some() {
            let table = self.era_table(what)?.map_err(|target| Error::NotEra {
                name: what.to_string(),
                target,
            })?;
            let dev = self
                .kernel
                .list()?
                .into_iter()
                .find(|s| s.lower.devno == table.origin)
                .map(|s| s.dev);
            return Ok(Found {
                name: what.to_string(),
                table,
                dev,
            });
        }
        let no_era = || Error::NoEra {
            what: what.to_string(),
        };
        let dev = match self.resolve_any(Path::new(what)) {
            Ok(d) => d,
            Err(Error::NoSuchName { .. }) => return Err(no_era()),
            Err(e) => return Err(e),
        };
        let lower = match self.kernel.status(dev) {
            Ok(s) => s.lower.devno,
            Err(Error::NoLower { .. }) => return Err(no_era()),
            Err(e) => return Err(e),
        };
        for d in self.dm.list()? {
            if let Ok(Ok(table)) = self.era_table(&d.name) {
                if table.origin == lower {
                    return Ok(Found {
                        name: d.name,
                        table,
                        dev: Some(dev),
                    });
                }
            }
        }
        Err(no_era())
    }
}

/// How the epoch before the one that begins now ended, in words, when the
/// record had one.
fn describe_end(rec: &TrackingRecord, now: &record::DeviceIdentity) -> Option<String> {
    let last = rec.epochs.last()?;
    let mut s = match &last.end {
        EpochEnd::Detached { era } => format!("tracking ended with `era detach` at era {era}"),
        EpochEnd::Shutdown { era, .. } => {
            format!("tracking ended with a clean shutdown at era {era}")
        }
        EpochEnd::Open => format!(
            "tracking since era {} ended without a detach (a crash, a power cut or a reboot)",
            last.start_era
        ),
    };
    if let Some(what) = rec.device.differs(now) {
        s.push_str(&format!("; the metadata tracked another device ({what})"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::era::meta::image;
    use crate::era::record::DeviceIdentity;
    use crate::ops::mock::{Mock, DEV, META, OTHER};

    fn ops(m: &Mock) -> Ops<&Mock, &Mock, &Mock> {
        Ops::new(m, m, m)
    }

    /// A mock whose metadata device holds `img`.
    fn with_image(img: &[u8]) -> (Mock, PathBuf) {
        let m = Mock::new();
        // vdb: 512 MiB; vdc: 64 KiB, too small for any metadata; vdd: 64 MiB
        m.sizes.borrow_mut().extend([
            (DEV, Sectors(1 << 20)),
            (OTHER, Sectors(128)),
            (META, Sectors(1 << 17)),
        ]);
        let p = std::env::temp_dir().join(format!(
            "bi-era-{}-{}",
            std::process::id(),
            IMAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&p, img).unwrap();
        // As big as vdd, sparse: the tracking record lives at its end.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(Sectors(1 << 17).bytes()).unwrap();
        *m.image.borrow_mut() = Some(p.clone());
        (m, p)
    }

    /// Change the tracking record in the image at `p` (vdd).
    fn edit_record(p: &Path, f: impl FnOnce(&mut TrackingRecord)) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .unwrap();
        let size = Sectors(1 << 17);
        let mut s = record::read(&file, size).unwrap().expect("a record");
        f(&mut s.record);
        record::write(&file, size, &s.record, s.seq + 1).unwrap();
    }

    /// A record as `era attach` writes it, for metadata made before.
    fn seed_record(p: &Path, generation: u64, start: u32) {
        let file = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        let rec = TrackingRecord {
            generation,
            device: DeviceIdentity {
                sectors: 1 << 20,
                serial: Some(format!("mock-{DEV}")),
                ..DeviceIdentity::default()
            },
            block_sectors: 128,
            epochs: vec![record::Epoch {
                start_era: start,
                end: EpochEnd::Open,
            }],
        };
        record::write(&file, Sectors(1 << 17), &rec, 1).unwrap();
    }

    static IMAGES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    use std::path::PathBuf;

    fn attach(m: &Mock, block: u64) -> Result<EraAttachReport> {
        ops(m).era_attach(Path::new("/dev/vdb"), Path::new("/dev/vdd"), block, None)
    }

    #[test]
    fn attach_builds_the_era_table_and_reports_the_era() {
        let (m, p) = with_image(&image::blank(1));
        let r = attach(&m, 64 << 10).unwrap();
        assert_eq!(r.create.name, "vdb-era");
        assert_eq!(r.metadata_slice, "vdb-era-meta");
        // dm-era gets vdd less its last 64 KiB, through a dm-linear slice.
        assert_eq!(
            m.tables.borrow()["vdb-era-meta"].to_string(),
            "0 130944 linear 254:48 0\n"
        );
        assert_eq!(
            m.uuids.borrow()["vdb-era-meta"],
            "INTERPOSER-ERAMETA-254:16-vdb-era"
        );
        assert_eq!(r.create.table, "0 1048576 era 253:0 252:0 128\n");
        assert_eq!(
            (r.block_sectors, r.nr_blocks, r.era),
            (Sectors(128), 8192, 1)
        );
        assert_eq!((r.tracked_since.era, r.previous.as_deref()), (0, None));
        // A second attach finds it interposed, before touching the record.
        let record = |p: &Path| {
            let f = std::fs::File::open(p).unwrap();
            record::read(&f, Sectors(1 << 17)).unwrap().unwrap()
        };
        let before = record(&p);
        let e = attach(&m, 64 << 10).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(
            record(&p),
            before,
            "the refused attach left the record alone"
        );
        // A metadata device that someone holds (another era's slice).
        m.occupied
            .borrow_mut()
            .insert(META, crate::host::Occupied::InUse);
        let e = ops(&m)
            .era_attach(
                Path::new("/dev/vdb"),
                Path::new("/dev/vdd"),
                64 << 10,
                Some("other"),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the metadata device /dev/vdd is in use"),
            "{e}"
        );
        assert_eq!(record(&p), before);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn attach_refuses_bad_block_size_small_or_foreign_metadata() {
        let (m, p) = with_image(&image::blank(1));
        let e = attach(&m, 1000).unwrap_err().to_string();
        assert!(e.contains("multiple of 4 KiB"), "{e}");
        let e = ops(&m)
            .era_attach(Path::new("/dev/vdb"), Path::new("/dev/vdc"), 4096, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "the metadata device /dev/vdc is too small for dm-era: it has 65536 bytes"
            ),
            "{e}"
        );
        let e = ops(&m)
            .era_attach(Path::new("/dev/vdb"), Path::new("/dev/vdb"), 4096, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the device it tracks"), "{e}");
        std::fs::remove_file(p).unwrap();
        let mut ext4 = image::blank(1);
        ext4[100] = 0x53;
        let (m, p) = with_image(&ext4);
        let e = attach(&m, 64 << 10).unwrap_err().to_string();
        assert!(
            e.contains("not dm-era metadata") && e.contains("dd if=/dev/zero of=/dev/vdd"),
            "{e}"
        );
        std::fs::remove_file(p).unwrap();
        // dm-era metadata of another block size (the image uses 128 sectors).
        let (m, p) = with_image(&image::with_snapshot(&[0; 4], 1, &[]));
        let e = attach(&m, 4096).unwrap_err().to_string();
        assert!(e.contains("blocks of 128 sectors, not 8"), "{e}");
        // The same block size, but no tracking record: nothing says since
        // when its eras cover every write.
        let e = attach(&m, 64 << 10).unwrap_err().to_string();
        assert!(
            e.contains("no tracking record") && e.contains("dd if=/dev/zero of=/dev/vdd"),
            "{e}"
        );
        seed_record(&p, 7, 1);
        let r = attach(&m, 64 << 10).unwrap();
        assert_eq!(
            (r.tracked_since.to_string(), r.previous.as_deref()),
            (
                "3@0000000000000007".to_string(),
                Some("tracking since era 1 ended without a detach (a crash, a power cut or a reboot)")
            ),
            "reused: the eras go on, the generation stays, a new epoch at the current era"
        );
        assert!(m
            .calls()
            .iter()
            .all(|c| !c.starts_with("dm_create") || c.contains("vdb-era")));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn checkpoint_and_changed_by_path_name_or_dm_name() {
        let mut eras = vec![0u32; 8192];
        eras[10] = 2;
        eras[11] = 3;
        eras[8191] = 1;
        let (m, p) = with_image(&image::with_snapshot(&eras, 4, &[12, 40]));
        seed_record(&p, 0xa1, 1);
        attach(&m, 64 << 10).unwrap();
        // As if tracking had been continuous since era 1 (the image's eras).
        edit_record(&p, |r| r.epochs.last_mut().unwrap().start_era = 1);
        let c = ops(&m).era_checkpoint("vdb").unwrap();
        assert_eq!((c.name.as_str(), c.previous_era, c.era), ("vdb-era", 1, 2));
        assert_eq!(c.checkpoint.to_string(), "2@00000000000000a1");
        assert_eq!(c.device, "/dev/vdb");
        let ch = ops(&m).era_changed("/dev/vdb", c.checkpoint).unwrap();
        let blocks: Vec<(u32, u32)> = ch.ranges.iter().map(|r| (r.begin, r.end)).collect();
        assert_eq!(blocks, [(10, 13), (40, 41)]);
        assert_eq!((ch.changed_blocks, ch.changed_bytes), (4, 4 * 65536));
        assert_eq!(
            (ch.ranges[0].offset, ch.ranges[1].offset),
            (655360, 40 * 65536)
        );
        assert_eq!(ch.era, 5, "the era the snapshot superblock records");
        let msgs: Vec<String> = m
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("dm_message"))
            .collect();
        assert_eq!(
            msgs,
            [
                "dm_message vdb-era checkpoint",
                "dm_message vdb-era take_metadata_snap",
                "dm_message vdb-era drop_metadata_snap"
            ]
        );
        assert_eq!(m.eras.borrow()["vdb-era"].1, None, "snapshot dropped");
        let since4 = "4".parse().unwrap();
        assert_eq!(
            ops(&m)
                .era_changed("vdb-era", since4)
                .unwrap()
                .changed_blocks,
            2
        );
        let s = ops(&m).era_status("vdb-era").unwrap();
        assert_eq!(
            (s.status.era, s.metadata_dev, s.block_bytes),
            (4, META, 65536)
        );
        assert_eq!(s.tracked_since.unwrap().to_string(), "1@00000000000000a1");
        // A snapshot-origin stacked on top takes the device's bios: refused.
        m.dms
            .borrow_mut()
            .push(("snap-vdb-origin".into(), DevNo::new(253, 9), true));
        let saved = m.lowers.borrow()[&DEV].interposer;
        m.lowers.borrow_mut().get_mut(&DEV).unwrap().interposer = Some(DevNo::new(253, 9));
        let e = ops(&m).era_detach("vdb").unwrap_err().to_string();
        assert!(
            e.starts_with("`snap-vdb-origin` is stacked on `vdb-era`"),
            "{e}"
        );
        // While the origin does not stack on era, era misses the writes.
        let e = ops(&m).era_changed("vdb", since4).unwrap_err();
        assert!(e.is_tracking_gap());
        assert!(
            e.to_string()
                .contains("attached to `snap-vdb-origin`, which does not stack on `vdb-era`"),
            "{e}"
        );
        // Stacked on era, it is in the path.
        m.deps
            .borrow_mut()
            .insert(DevNo::new(253, 9), vec![DevNo::new(253, 1)]);
        assert!(ops(&m).era_changed("vdb", since4).is_ok());
        m.lowers.borrow_mut().get_mut(&DEV).unwrap().interposer = saved;
        let r = ops(&m).era_detach("vdb").unwrap();
        assert_eq!((r.name.as_str(), r.dev), ("vdb-era", DEV));
        assert!(
            m.calls().iter().any(|c| c == "dm_remove vdb-era-meta"),
            "the slice goes with it"
        );
        let e = ops(&m).era_checkpoint("vdb").unwrap_err().to_string();
        assert!(
            e.contains("has no dm-era interposer; attach one with `interposer era attach vdb"),
            "{e}"
        );
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn changed_drops_the_snapshot_when_reading_fails_and_refuses_a_held_one() {
        let (m, p) = with_image(&image::blank(1));
        attach(&m, 64 << 10).unwrap();
        let one = "1".parse().unwrap();
        let e = ops(&m).era_changed("vdb", one).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read the dm-era metadata on /dev/vdd: block 0 is all zeros"),
            "{e}"
        );
        assert_eq!(
            m.eras.borrow()["vdb-era"].1,
            None,
            "dropped after the error"
        );
        m.eras.borrow_mut().get_mut("vdb-era").unwrap().1 = Some(9);
        let e = ops(&m).era_changed("vdb", one).unwrap_err().to_string();
        assert!(
            e.contains("already holds a metadata snapshot")
                && e.contains("dmsetup message vdb-era 0 drop_metadata_snap"),
            "{e}"
        );
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_gap_in_tracking_is_an_error_never_a_short_list() {
        let (m, p) = with_image(&image::with_snapshot(&[0; 8192], 4, &[12]));
        seed_record(&p, 0xa1, 1);
        let r = attach(&m, 64 << 10).unwrap();
        assert_eq!(r.tracked_since.to_string(), "6@00000000000000a1");
        let gap = |since: &str| {
            let e = ops(&m)
                .era_changed("vdb", since.parse().unwrap())
                .unwrap_err();
            assert!(e.is_tracking_gap(), "{e}");
            e.to_string()
        };
        // Before this attach nothing says every write was tracked.
        // Not even the era that was current when it ended (5, the image's).
        let e = gap("5@00000000000000a1");
        assert!(
            e.starts_with("cannot list the changes of /dev/vdb since era 5@00000000000000a1: tracking began again at era 6 (after tracking ended without a detach: a crash, a power cut or a reboot)")
                && e.ends_with("take a full backup (and a new checkpoint)"),
            "{e}"
        );
        assert!(gap("5").contains("tracking began again at era 6"));
        // Another formatting of the metadata.
        assert!(gap("9@00000000000000b2")
            .contains("generation 00000000000000b2, the metadata is of 00000000000000a1"));
        assert!(ops(&m)
            .era_changed("vdb", "6@00000000000000a1".parse().unwrap())
            .is_ok());
        // The device changed under the metadata (a resize, another disk).
        m.identities.borrow_mut().insert(
            DEV,
            DeviceIdentity {
                sectors: 1 << 21,
                ..Mock::new().identity(DEV).unwrap()
            },
        );
        assert!(gap("6").contains("size 1048576 -> 2097152 sectors"));
        m.identities.borrow_mut().clear();
        // Detached: nothing tracks; attached again: a new epoch.
        ops(&m).era_detach("vdb").unwrap();
        let at = m.calls().len();
        let e = attach(&m, 64 << 10).unwrap();
        assert!(m.calls()[at..]
            .iter()
            .any(|c| c.starts_with("dm_create vdb-era-meta")));
        assert!(
            e.previous
                .unwrap()
                .starts_with("tracking ended with `era detach` at era"),
            "the report says why earlier checkpoints are refused"
        );
        // The era current at the detach (the mock's status says 1; the
        // image's metadata says 5): refused, the new epoch starts past it.
        assert!(gap("5@00000000000000a1").contains("after `era detach` at era"));
        // A raw era table (interposer create) has no record: refused.
        let (m2, p2) = with_image(&image::blank(1));
        ops(&m2)
            .create(
                "vdb-raw",
                &"0 1048576 era 254:48 [interpose]/dev/vdb 128"
                    .parse()
                    .unwrap(),
            )
            .unwrap();
        let e = ops(&m2)
            .era_changed("vdb", "1".parse().unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("no tracking record"), "{e}");
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(p2).unwrap();
    }

    fn boot_attach(m: &Mock, generation: u64) -> Result<EraBoot> {
        ops(m).era_attach_at_boot(
            Path::new("/dev/vdb"),
            Path::new("/dev/vdd"),
            64 << 10,
            generation,
        )
    }

    fn attached(b: EraBoot) -> EraAttachReport {
        match b {
            EraBoot::Attached(r) => *r,
            other => panic!("not attached: {other:?}"),
        }
    }

    #[test]
    fn a_clean_shutdown_and_the_next_boot_attach_are_no_gap() {
        let (m, p) = with_image(&image::with_snapshot(&[0; 8192], 4, &[12]));
        seed_record(&p, 0xa1, 1);
        let first = attach(&m, 64 << 10).unwrap();
        assert_eq!(first.tracked_since.to_string(), "6@00000000000000a1");
        // Already attached with this metadata: the unit's start does nothing.
        assert!(
            matches!(boot_attach(&m, 0xa1).unwrap(), EraBoot::Already { name, .. } if name == "vdb-era")
        );
        // Shutdown with the filesystem unmounted: a clean end.
        let s = ops(&m).era_detach_at_shutdown("vdb").unwrap();
        assert_eq!(s.gap, None);
        assert!(m.calls().contains(&"fingerprint 254:16".to_string()));
        // The same boot: writes since the detach are not tracked.
        let r = attached(boot_attach(&m, 0xa1).unwrap());
        assert!(!r.resumed);
        assert!(r
            .previous
            .unwrap()
            .ends_with("it cannot go on: it ended in this boot: writes since are not tracked"));
        // (The mock's metadata stays at era 5, so a new epoch starts at 6
        // again: the epochs in the record tell a new one from a resumed one.)
        let epochs = || {
            let f = std::fs::File::open(&p).unwrap();
            record::read(&f, Sectors(1 << 17))
                .unwrap()
                .unwrap()
                .record
                .epochs
        };
        let n = epochs().len();
        assert!(matches!(epochs()[n - 2].end, EpochEnd::Shutdown { .. }));
        assert_eq!(epochs()[n - 1].end, EpochEnd::Open);
        // Next boot, device unchanged: the epoch goes on, no gap.
        ops(&m).era_detach_at_shutdown("vdb").unwrap();
        *m.boot.borrow_mut() = Some("boot-2".into());
        let r = attached(boot_attach(&m, 0xa1).unwrap());
        assert!(r.resumed, "{r:?}");
        assert_eq!(r.previous, None);
        assert_eq!(epochs().len(), n, "the same epoch goes on");
        assert_eq!(epochs()[n - 1].end, EpochEnd::Open);
        assert!(ops(&m).era_changed("vdb", r.tracked_since).is_ok());
        // Each way of writing between the shutdown and the boot's attach.
        // A mount (or a write over the head or tail of the device), and a
        // device held open when the unit starts.
        let tries = [
            ("boot-4", true, "first or last 64 KiB changed"),
            ("boot-5", false, "in use (mounted?) before tracking began"),
        ];
        for (boot, written, why) in tries {
            ops(&m).era_detach_at_shutdown("vdb").unwrap();
            *m.boot.borrow_mut() = Some(boot.into());
            if written {
                m.fingerprints.borrow_mut().insert(DEV, "mounted".into());
            } else {
                m.occupied.borrow_mut().insert(DEV, Occupied::InUse);
            }
            let r = attached(boot_attach(&m, 0xa1).unwrap());
            assert!(!r.resumed, "{why}");
            assert!(r.previous.as_deref().unwrap_or("").contains(why), "{r:?}");
            let e = epochs();
            assert!(matches!(e[e.len() - 2].end, EpochEnd::Shutdown { .. }));
            assert_eq!(e[e.len() - 1].end, EpochEnd::Open, "a new epoch");
            m.fingerprints.borrow_mut().clear();
            m.occupied.borrow_mut().clear();
        }
        // Stopped while the filesystem is mounted: a detach, not a clean
        // shutdown (the next boot cannot go on).
        m.occupied.borrow_mut().insert(DEV, Occupied::InUse);
        let s = ops(&m).era_detach_at_shutdown("vdb").unwrap();
        assert!(s.gap.unwrap().contains("still in use"));
        assert!(matches!(
            epochs().last().unwrap().end,
            EpochEnd::Detached { .. }
        ));
        m.occupied.borrow_mut().clear();
        *m.boot.borrow_mut() = Some("boot-6".into());
        assert!(!attached(boot_attach(&m, 0xa1).unwrap()).resumed);
        // Another generation at the metadata path: refused, nothing written.
        ops(&m).era_detach("vdb").unwrap();
        let before = std::fs::read(&p).unwrap();
        let creates = || {
            m.calls()
                .iter()
                .filter(|c| c.starts_with("dm_create"))
                .count()
        };
        let made = creates();
        let e = boot_attach(&m, 0xb2).unwrap_err();
        assert!(
            e.to_string().starts_with("the metadata device /dev/vdd holds tracking generation 00000000000000a1; `era enable` recorded tracking generation 00000000000000b2"),
            "{e}"
        );
        assert!(
            std::fs::read(&p).unwrap() == before,
            "the metadata was written"
        );
        assert_eq!(creates(), made, "nothing was created");
        std::fs::remove_file(p).unwrap();
        // Blank metadata (a fresh disk at the path) is never formatted at boot.
        let (m, p) = with_image(&image::blank(1));
        let e = boot_attach(&m, 0xa1).unwrap_err();
        assert!(
            e.to_string().contains("holds no dm-era metadata (blank)"),
            "{e}"
        );
        assert!(!m.calls().iter().any(|c| c.starts_with("dm_create")));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_fresh_format_draws_a_new_generation() {
        let (m, p) = with_image(&image::blank(1));
        seed_record(&p, 0xa1, 3);
        // Block 0 zeroed but the old record still there: dm-era formats
        // anew and counts from 1 again, so the old checkpoints must not pass.
        let r = attach(&m, 64 << 10).unwrap();
        assert_ne!(r.tracked_since.generation, Some(0xa1));
        let e = ops(&m)
            .era_changed("vdb", "7@00000000000000a1".parse().unwrap())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("tracking generation 00000000000000a1"),
            "{e}"
        );
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_dm_device_that_is_not_era_is_named() {
        let (m, p) = with_image(&image::blank(1));
        ops(&m)
            .create(
                "vdb-lin",
                &"0 1048576 linear [interpose]/dev/vdb 0".parse().unwrap(),
            )
            .unwrap();
        let e = ops(&m).era_checkpoint("vdb-lin").unwrap_err().to_string();
        assert_eq!(
            e,
            "`vdb-lin` is a linear device, not dm-era (see `dmsetup table vdb-lin`)"
        );
        let e = ops(&m).era_checkpoint("/dev/vdb").unwrap_err().to_string();
        assert!(e.starts_with("/dev/vdb has no dm-era interposer"), "{e}");
        std::fs::remove_file(p).unwrap();
    }
}
