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

use crate::dm::table::{Arg, TableLine};
use crate::dm::{DeviceMapper, InterposePath, Table};
use crate::era::meta::{MetaError, Metadata};
use crate::era::{self, ChangedRange, EraStatus, EraTable};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kernel::Kernel;
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
    /// The era written from now on: pass it to `era_changed` later.
    pub era: u32,
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
}

/// What changed since an era.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraChanges {
    /// The dm-era device.
    pub name: String,
    /// The tracked device.
    pub device: String,
    /// The era asked about.
    pub since: u32,
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
        let dev = self.host.resolve(device)?;
        let meta = self.host.resolve(metadata)?;
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
        let have = self.host.sectors(meta)?.bytes();
        let meta_label = self.device_label(meta);
        if have < need {
            return Err(Error::EraMetadataTooSmall {
                dev: meta_label,
                have,
                need,
                blocks: nr,
            });
        }
        self.check_fresh_metadata(meta, metadata, block)?;
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
        let table = Table {
            lines: vec![TableLine {
                start: Sectors(0),
                length: size,
                target: "era".into(),
                args: vec![
                    Arg::Plain(meta.to_string()),
                    Arg::Interpose(InterposePath::new(device)),
                    Arg::Plain(block.to_string()),
                ],
            }],
        };
        let create = self.create(&name, &table)?;
        let era = self.era_status_of(&name)?.era;
        Ok(EraAttachReport {
            create,
            metadata: meta_label,
            block_sectors: block,
            block_bytes: block.bytes(),
            nr_blocks: nr,
            era,
        })
    }

    /// Block 0 of the metadata device must be zeros (dm-era formats it) or
    /// dm-era metadata with the same block size (dm-era reuses it).
    fn check_fresh_metadata(&self, meta: DevNo, path: &Path, block: Sectors) -> Result<()> {
        let foreign = |what: String| Error::EraMetadataForeign {
            dev: self.device_label(meta),
            dev_path: path.display().to_string(),
            what,
        };
        let file = self.host.open_direct(meta)?;
        match Metadata::open(&file) {
            Err(MetaError::Blank) => Ok(()),
            Ok(md) if md.superblock.data_block_size as u64 == block.0 => Ok(()),
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
    /// let since = ops.era_checkpoint("vdb1")?.era;
    /// // ... writes ...
    /// let changes = ops.era_changed("vdb1", since)?;
    /// # Ok(()) }
    /// ```
    pub fn era_checkpoint(&self, what: &str) -> Result<EraCheckpoint> {
        let f = self.find_era(what)?;
        let before = self.era_status_of(&f.name)?.era;
        self.dm.message(&f.name, "checkpoint")?;
        let after = self.era_status_of(&f.name)?.era;
        Ok(EraCheckpoint {
            device: self.era_device_label(&f),
            name: f.name,
            previous_era: before,
            era: after,
        })
    }

    /// The byte ranges of the dm-era interposer of `what` written in era
    /// `since` or later: the same blocks `era_invalidate --written-since
    /// SINCE --metadata-snapshot` lists.  Takes a metadata snapshot (which
    /// starts a new era), reads dm-era's metadata from the metadata device
    /// itself, and drops the snapshot again, also when reading fails.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = blk_interposer::Ops::system()?;
    /// let c = ops.era_changed("/dev/vdb1", 3)?;
    /// for r in &c.ranges {
    ///     println!("copy {} bytes at offset {}", r.length, r.offset);
    /// }
    /// println!("next time: --since {}", c.era);
    /// # Ok(()) }
    /// ```
    pub fn era_changed(&self, what: &str, since: u32) -> Result<EraChanges> {
        let f = self.find_era(what)?;
        if self.era_status_of(&f.name)?.metadata_snap.is_some() {
            return Err(Error::EraSnapHeld { name: f.name });
        }
        let file = self.host.open_direct(f.table.metadata)?;
        self.dm.message(&f.name, "take_metadata_snap")?;
        let read = (|| {
            let md = Metadata::open(&file)?;
            let snap = md.snapshot()?;
            let marked = md.written_since(&snap, since)?;
            Ok((snap, marked))
        })()
        .map_err(|source| Error::EraMetadata {
            dev: self.device_label(f.table.metadata),
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
        Ok(EraInfo {
            device: self.era_device_label(&f),
            dev: f.dev.unwrap_or_default(),
            metadata: self.device_label(f.table.metadata),
            metadata_dev: f.table.metadata,
            block_sectors: f.table.block,
            block_bytes: f.table.block.bytes(),
            status,
            name: f.name,
        })
    }

    /// Take the dm-era interposer of `what` away ([`Ops::remove`]).  The
    /// metadata stays on its device.
    pub fn era_detach(&self, what: &str) -> Result<crate::RemoveReport> {
        let f = self.find_era(what)?;
        if let Some(dev) = f.dev {
            let on = self.kernel.status(dev)?.interposer;
            let by = on.and_then(|i| self.dm.name_of(i).ok().flatten());
            match by {
                Some(by) if by != f.name => return Err(Error::EraCovered { name: f.name, by }),
                _ => {}
            }
        }
        self.remove(&f.name)
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
        let by_device = what.starts_with('/') || what.parse::<DevNo>().is_ok();
        if !by_device && self.dm.devno(what)?.is_some() {
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
        let path = if by_device {
            Path::new(what).to_path_buf()
        } else {
            Path::new("/dev").join(what)
        };
        let no_era = || Error::NoEra {
            what: what.to_string(),
        };
        let dev = match self.host.resolve(&path) {
            Ok(d) => d,
            Err(Error::Resolve { .. }) if !by_device => return Err(no_era()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::era::meta::image;
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
        *m.image.borrow_mut() = Some(p.clone());
        (m, p)
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
        assert_eq!(r.create.table, "0 1048576 era 254:48 252:0 128\n");
        assert_eq!(
            (r.block_sectors, r.nr_blocks, r.era),
            (Sectors(128), 8192, 1)
        );
        // A second attach finds it interposed.
        let e = attach(&m, 64 << 10).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
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
        assert!(attach(&m, 64 << 10).is_ok(), "same block size: reused");
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
        attach(&m, 64 << 10).unwrap();
        let c = ops(&m).era_checkpoint("vdb").unwrap();
        assert_eq!((c.name.as_str(), c.previous_era, c.era), ("vdb-era", 1, 2));
        assert_eq!(c.device, "/dev/vdb");
        let ch = ops(&m).era_changed("/dev/vdb", 2).unwrap();
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
        assert_eq!(ops(&m).era_changed("vdb-era", 4).unwrap().changed_blocks, 2);
        let s = ops(&m).era_status("vdb-era").unwrap();
        assert_eq!(
            (s.status.era, s.metadata_dev, s.block_bytes),
            (4, META, 65536)
        );
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
        m.lowers.borrow_mut().get_mut(&DEV).unwrap().interposer = saved;
        let r = ops(&m).era_detach("vdb").unwrap();
        assert_eq!((r.name.as_str(), r.dev), ("vdb-era", DEV));
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
        let e = ops(&m).era_changed("vdb", 1).unwrap_err().to_string();
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
        let e = ops(&m).era_changed("vdb", 1).unwrap_err().to_string();
        assert!(
            e.contains("already holds a metadata snapshot")
                && e.contains("dmsetup message vdb-era 0 drop_metadata_snap"),
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
