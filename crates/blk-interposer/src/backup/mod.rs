//! Backups of a live device: full, then incremental, into a directory of
//! versions that chain; verify and restore.
//!
//! [`Ops::backup`] takes an era checkpoint (when dm-era tracks the device),
//! then a snapshot, decides between full and incremental ([`plan`]), copies
//! from the snapshot into the next version of a [`BackupDir`], reads it
//! back, writes the manifest and removes the snapshot.  An incremental
//! copies the ranges [`Ops::era_changed`] lists since the previous
//! version's checkpoint; across a gap in tracking it is a full backup, and
//! the manifest says why ([`FullReason`]).
//!
//! The data path ([`BackupDir`]: stage, verify, restore, and
//! [`stream_full`]) works on plain files and does not need the kernel
//! module:
//!
//! ```
//! use std::io::Write;
//! use blk_interposer::backup::{BackupDir, Kind, NewVersion, Source};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let mut disk = tempfile::tempfile()?; // stands for a snapshot device
//! disk.write_all(&[7u8; 1 << 20])?;
//! let dir = BackupDir::create(&tmp.path().join("bk"))?;
//! let source = Source {
//!     device: "/dev/sdb1".into(),
//!     identity: Default::default(),
//!     size: 1 << 20,
//!     kind: Kind::Full,
//!     full_reason: None,
//!     checkpoint: None,
//!     block_bytes: None,
//!     group: None,
//! };
//! let full = NewVersion { source: source.clone(), ranges: vec![] };
//! let m = dir.stage(&full, &disk, &mut ())?.commit()?; // version 1
//! assert_eq!(m.data.name, "000001.full.img");
//! let incr = NewVersion {
//!     source: Source { kind: Kind::Incremental, ..source },
//!     ranges: vec![(4096, 8192)], // what era changed listed
//! };
//! dir.stage(&incr, &disk, &mut ())?.commit()?; // version 2: 8 KiB
//! assert_eq!(dir.verify(None, &mut ())?.versions.len(), 2);
//! let r = dir.restore(Some(2), &tmp.path().join("restored.img"), &mut ())?;
//! assert_eq!(r.applied, [1, 2]);
//! # Ok(()) }
//! ```
//!
//! The whole flow, on a host with the module loaded:
//!
//! ```no_run
//! use blk_interposer::backup::BackupRequest;
//! use blk_interposer::CowStore;
//! # fn main() -> Result<(), blk_interposer::Error> {
//! let ops = blk_interposer::Ops::system()?;
//! let req = BackupRequest::new("/dev/sdb1", "/backup/sdb1", CowStore::Devices(vec!["/dev/sdd".into()]));
//! let r = ops.backup(&req, &mut ())?;
//! println!("version {} ({}): {} of {} bytes", r.version, r.source.kind, r.copied_bytes, r.source.size);
//! if let Some(why) = &r.source.full_reason {
//!     println!("full: {why}");
//! }
//! # Ok(()) }
//! ```

pub mod manifest;
mod store;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use manifest::{FullReason, Kind, Manifest, Piece, Source};
pub use store::{
    sha256, stream_full, BackupDir, NewVersion, RestoreReport, Staged, VerifiedVersion,
    VerifyReport,
};

use crate::dm::DeviceMapper;
use crate::era::record::DeviceIdentity;
use crate::era::Checkpoint;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kernel::Kernel;
use crate::ops::{CowStore, EraChanges, Ops, SnapState, SnapshotRequest};
use crate::types::DevNo;

/// Progress of a long step, for a progress bar or a log.  `()` ignores it.
pub trait Progress {
    /// A phase begins (`"copy"`, `"verify"`, `"restore"`), of `total` bytes.
    fn start(&mut self, phase: &str, total: u64);
    /// `bytes` more are done.
    fn advance(&mut self, bytes: u64);
    /// Something worth telling the user now (why a backup is full).
    fn message(&mut self, _text: &str) {}
}

impl Progress for () {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// What [`Ops::backup`] should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRequest {
    /// The live device.
    pub device: PathBuf,
    /// The backup directory (made if missing).
    pub dir: PathBuf,
    /// The COW store of the snapshot, as for [`Ops::snapshot_create`].
    pub cow: CowStore,
    /// A full backup even when an incremental one is possible.
    pub full: bool,
    /// Keep the snapshot after a successful run (the report names it);
    /// remove it with [`Ops::snapshot_remove`].
    pub keep_snapshot: bool,
    /// The snapshot group's name; default `backup-<kernel name>`.
    pub name: Option<String>,
    /// Let the COW devices be overwritten though blkid finds something.
    pub overwrite: bool,
}

impl BackupRequest {
    /// Back up `device` into `dir`, incremental when it can be.
    pub fn new(device: impl Into<PathBuf>, dir: impl Into<PathBuf>, cow: CowStore) -> Self {
        BackupRequest {
            device: device.into(),
            dir: dir.into(),
            cow,
            full: false,
            keep_snapshot: false,
            name: None,
            overwrite: false,
        }
    }
}

/// What [`Ops::backup_group`] should do: several devices at one point in
/// time, each into its own directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBackupRequest {
    /// Each live device and its backup directory.
    pub members: Vec<(PathBuf, PathBuf)>,
    /// The COW store of the snapshots, as for [`Ops::snapshot_create`].
    pub cow: CowStore,
    /// Full backups even when incremental ones are possible.
    pub full: bool,
    /// Keep the snapshot group after a successful run.
    pub keep_snapshot: bool,
    /// The snapshot group's name; default `backup-<kname>-<kname>...`.
    pub name: Option<String>,
    /// Let the COW devices be overwritten though blkid finds something.
    pub overwrite: bool,
}

/// What [`Ops::backup`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The backup directory.
    pub dir: PathBuf,
    /// The version written.
    pub version: u32,
    /// What it copied and why so, as its manifest says (the fields sit at
    /// the top level of the JSON).
    #[serde(flatten)]
    pub source: Source,
    /// The version it builds on.
    pub previous: Option<u32>,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Pieces (of at most 4 MiB) copied and checksummed.
    pub pieces: usize,
    /// The data file.
    pub data: PathBuf,
    /// The manifest.
    pub manifest: PathBuf,
    /// The snapshot group, when kept.
    pub snapshot: Option<String>,
    /// The kept snapshot's device.
    pub snapshot_path: Option<PathBuf>,
}

/// What [`Ops::backup_stream`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// The device.
    pub device: String,
    /// Bytes written (its size).
    pub size: u64,
    /// SHA-256 of the image.
    pub sha256: String,
}

/// Full or incremental, and what to copy: the decision of a backup run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Full or incremental.
    pub kind: Kind,
    /// Why full.
    pub full_reason: Option<FullReason>,
    /// For an incremental, the changes since the previous checkpoint.
    pub changes: Option<EraChanges>,
}

/// Decide between a full and an incremental backup.  `full` forces a
/// full one; `previous` is the newest version, `tracked` whether a checkpoint was taken now,
/// `identity` the device now; `changed` lists the changes since a
/// checkpoint.  A tracking gap ([`Error::is_tracking_gap`]) makes it full;
/// any other error of `changed` is returned.
pub fn plan(
    previous: Option<&Manifest>,
    full: bool,
    tracked: bool,
    identity: &DeviceIdentity,
    size: u64,
    changed: impl FnOnce(Checkpoint) -> Result<EraChanges>,
) -> Result<Plan> {
    let full_because = |r| {
        Ok(Plan {
            kind: Kind::Full,
            full_reason: Some(r),
            changes: None,
        })
    };
    if full {
        return full_because(FullReason::Forced);
    }
    let Some(prev) = previous else {
        return full_because(FullReason::First);
    };
    if !tracked {
        return full_because(FullReason::NoTracking);
    }
    let Some(since) = prev.source.checkpoint else {
        return full_because(FullReason::NoCheckpoint);
    };
    let differs = prev.source.identity.differs(identity).or_else(|| {
        (prev.source.size != size).then(|| format!("size {} -> {size} bytes", prev.source.size))
    });
    if let Some(what) = differs {
        return full_because(FullReason::DeviceChanged { what });
    }
    match changed(since) {
        Ok(c) => Ok(Plan {
            kind: Kind::Incremental,
            full_reason: None,
            changes: Some(c),
        }),
        Err(e) if e.is_tracking_gap() => full_because(FullReason::Gap {
            message: e.to_string(),
        }),
        Err(e) => Err(e),
    }
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Back up a live device into a directory of versions: the first run
    /// (and `--full`, and any run after a gap in tracking) writes a full
    /// sparse image, later runs only what changed since the previous
    /// run's checkpoint.
    ///
    /// In order: lock the directory (removing a failed run's leftovers);
    /// take an era checkpoint if dm-era tracks the device (before the
    /// snapshot: every write after the snapshot's point in time is in its
    /// era or later); snapshot the device; decide ([`plan`]); copy from the
    /// snapshot (4 MiB `O_DIRECT` reads), sync, read back and compare;
    /// check the snapshot is still valid; write the manifest; remove the
    /// snapshot (also when a step failed; kept on success with
    /// [`BackupRequest::keep_snapshot`]).  Earlier versions are never
    /// written to.
    pub fn backup(&self, req: &BackupRequest, progress: &mut dyn Progress) -> Result<BackupReport> {
        let group = GroupBackupRequest {
            members: vec![(req.device.clone(), req.dir.clone())],
            cow: req.cow.clone(),
            full: req.full,
            keep_snapshot: req.keep_snapshot,
            name: req.name.clone(),
            overwrite: req.overwrite,
        };
        let mut reports = self.backup_group(&group, progress)?;
        Ok(reports.remove(0))
    }

    /// The members of a group backup of `devices` into `dir`: each device
    /// gets the subdirectory named by its kernel name (`DIR/sdb1`,
    /// `DIR/sdc1`; `MAJ_MIN` when it has none).  A device named twice is
    /// refused.
    pub fn backup_group_members(
        &self,
        devices: &[PathBuf],
        dir: &Path,
    ) -> Result<Vec<(PathBuf, PathBuf)>> {
        let mut seen = Vec::new();
        devices
            .iter()
            .map(|d| {
                let dev = self.resolve_device(d)?;
                if seen.contains(&dev) {
                    return Err(Error::BadRequest {
                        what: format!("{} is named twice", d.display()),
                    });
                }
                seen.push(dev);
                let k = self
                    .host
                    .kernel_name(dev)
                    .unwrap_or_else(|| dev.to_string().replace(':', "_"));
                Ok((d.clone(), dir.join(k)))
            })
            .collect()
    }

    /// Back up several live devices at one point in time, each into its
    /// own directory of versions: one snapshot group of all of them (see
    /// [`Ops::snapshot_create`]), each device full or incremental on its
    /// own terms ([`plan`]), as [`Ops::backup`] does for one.  Every
    /// device's copy is staged and read back, and the snapshots checked,
    /// before any version is committed; each manifest names the group
    /// ([`Source::group`]).  The reports are in the order of the members.
    ///
    /// ```no_run
    /// use blk_interposer::{CowStore, GroupBackupRequest};
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = blk_interposer::Ops::system()?;
    /// let devices = ["/dev/sdb1".into(), "/dev/sdc1".into()];
    /// let req = GroupBackupRequest {
    ///     // /backup/db/sdb1 and /backup/db/sdc1
    ///     members: ops.backup_group_members(&devices, "/backup/db".as_ref())?,
    ///     cow: CowStore::Devices(vec!["/dev/sdd".into()]), // split between them
    ///     full: false,
    ///     keep_snapshot: false,
    ///     name: None,
    ///     overwrite: false,
    /// };
    /// for r in ops.backup_group(&req, &mut ())? {
    ///     println!("{}: version {} ({})", r.source.device, r.version, r.source.kind);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn backup_group(
        &self,
        req: &GroupBackupRequest,
        progress: &mut dyn Progress,
    ) -> Result<Vec<BackupReport>> {
        struct Member {
            dir: BackupDir,
            dev: DevNo,
            device: String,
            identity: DeviceIdentity,
            size: u64,
            previous: Option<(Manifest, String)>,
            checkpoint: Option<Checkpoint>,
        }
        if req.members.is_empty() {
            return Err(Error::BadRequest {
                what: "a backup needs at least one device".into(),
            });
        }
        let mut members = Vec::new();
        for (device, dir) in &req.members {
            let dir = BackupDir::create(dir)?;
            let dev = self.resolve_device(device)?;
            // `--full` is the way on after a damaged newest version.
            let previous = match dir.latest() {
                Err(Error::BackupDamaged { .. }) if req.full => None,
                r => r?,
            };
            // The checkpoint before the snapshot: every write after its
            // point in time is in its era or later.
            let checkpoint = match self.era_checkpoint(&dev.to_string()) {
                Ok(c) => Some(c.checkpoint),
                Err(Error::NoEra { .. }) => None,
                Err(e) => return Err(e),
            };
            members.push(Member {
                dir,
                dev,
                device: device.display().to_string(),
                identity: self.host.identity(dev)?,
                size: self.host.sectors(dev)?.bytes(),
                previous,
                checkpoint,
            });
        }
        let devices: Vec<PathBuf> = req.members.iter().map(|(d, _)| d.clone()).collect();
        let group = (devices.len() > 1).then(|| members.iter().map(|m| m.device.clone()).collect());
        let devnos: Vec<DevNo> = members.iter().map(|m| m.dev).collect();
        let name = self.backup_snapshot(
            &devnos,
            req.name.as_deref(),
            &req.cow,
            req.overwrite,
            &devices,
        )?;
        let run = (|| {
            let mut staged = Vec::new();
            for m in &members {
                let p = plan(
                    m.previous.as_ref().map(|(m, _)| m),
                    req.full,
                    m.checkpoint.is_some(),
                    &m.identity,
                    m.size,
                    |since| self.era_changed(&m.dev.to_string(), since),
                )?;
                if let Some(r) = &p.full_reason {
                    progress.message(&format!("{}: full backup: {r}", m.device));
                }
                let new = NewVersion {
                    source: Source {
                        device: m.device.clone(),
                        identity: m.identity.clone(),
                        size: m.size,
                        kind: p.kind,
                        full_reason: p.full_reason,
                        checkpoint: m.checkpoint,
                        block_bytes: p.changes.as_ref().map(|c| c.block_bytes),
                        group: group.clone(),
                    },
                    ranges: p
                        .changes
                        .map(|c| c.ranges.iter().map(|r| (r.offset, r.length)).collect())
                        .unwrap_or_default(),
                };
                let (src, path) = self.open_snapshot(&name, m.dev)?;
                staged.push((m.dir.stage(&new, &src, progress)?, path));
            }
            self.check_snapshot(&name)?;
            staged
                .into_iter()
                .map(|(s, path)| Ok((s.commit()?, path)))
                .collect::<Result<Vec<_>>>()
        })();
        let committed = match run {
            Ok(x) => x,
            Err(e) => return Err(self.drop_snapshot(e, &name)),
        };
        let kept = req.keep_snapshot;
        if !kept {
            self.snapshot_remove(&name)
                .map_err(|e| Error::BackupSnapshotLeft {
                    version: committed[0].0.version,
                    name: name.clone(),
                    source: Box::new(e),
                })?;
        }
        Ok(committed
            .into_iter()
            .zip(&req.members)
            .map(|((m, path), (_, dir))| BackupReport {
                dir: dir.clone(),
                version: m.version,
                copied_bytes: m.copied_bytes(),
                pieces: m.pieces.len(),
                previous: m.previous.map(|p| p.version),
                data: dir.join(&m.data.name),
                manifest: dir.join(manifest::manifest_name(m.version)),
                snapshot: kept.then(|| name.clone()),
                snapshot_path: path.filter(|_| kept),
                source: m.source,
            })
            .collect())
    }

    /// Stream a full raw image of `device` to `out` from a snapshot (taken
    /// and removed here), for a tool that keeps its own versions (restic,
    /// borg: `interposer backup DEV --stdout | restic backup --stdin`).
    pub fn backup_stream(
        &self,
        device: &Path,
        cow: &CowStore,
        name: Option<&str>,
        out: &mut dyn Write,
        progress: &mut dyn Progress,
    ) -> Result<StreamReport> {
        let dev = self.resolve_device(device)?;
        let size = self.host.sectors(dev)?.bytes();
        let name = self.backup_snapshot(&[dev], name, cow, false, &[device.to_path_buf()])?;
        let run = (|| {
            let (src, _) = self.open_snapshot(&name, dev)?;
            let sha = stream_full(&src, size, out, progress)?;
            self.check_snapshot(&name)?;
            Ok(sha)
        })();
        let sha = run.map_err(|e| self.drop_snapshot(e, &name))?;
        self.snapshot_remove(&name)?;
        Ok(StreamReport {
            device: device.display().to_string(),
            size,
            sha256: sha,
        })
    }

    /// Snapshot `devices` as group `name` (default `backup-<kname>`, for
    /// several `backup-<kname>-<kname>...`).
    fn backup_snapshot(
        &self,
        devs: &[DevNo],
        name: Option<&str>,
        cow: &CowStore,
        overwrite: bool,
        devices: &[PathBuf],
    ) -> Result<String> {
        let name = name.map_or_else(
            || {
                let k: Vec<String> = devs
                    .iter()
                    .map(|&dev| {
                        self.host
                            .kernel_name(dev)
                            .unwrap_or_else(|| dev.to_string().replace(':', "_"))
                    })
                    .collect();
                format!("backup-{}", k.join("-"))
            },
            str::to_string,
        );
        let req = SnapshotRequest {
            overwrite,
            ..SnapshotRequest::new(&name, devices.to_vec(), cow.clone())
        };
        self.snapshot_create(&req)?;
        Ok(name)
    }

    /// The snapshot device of `dev` in group `name`, opened for `O_DIRECT`
    /// reads.
    fn open_snapshot(&self, name: &str, dev: DevNo) -> Result<(std::fs::File, Option<PathBuf>)> {
        let g = self.snapshot_info(name)?;
        let not_found = || Error::SnapshotNotFound {
            name: name.to_string(),
        };
        let m = g
            .devices
            .iter()
            .find(|m| m.dev == dev)
            .ok_or_else(not_found)?;
        let snap = m.snapshot.as_deref().ok_or_else(not_found)?;
        let snap_dev = self.dm.devno(snap)?.ok_or_else(|| Error::DmNotFound {
            name: snap.to_string(),
        })?;
        Ok((
            self.host.open_direct(snap_dev, false)?,
            m.snapshot_path.clone(),
        ))
    }

    /// Fail unless every snapshot of group `name` is still valid.
    fn check_snapshot(&self, name: &str) -> Result<()> {
        let g = self.snapshot_info(name)?;
        match g.devices.iter().find(|m| m.state != SnapState::Valid) {
            Some(m) => Err(Error::BackupSnapshotInvalid {
                name: name.to_string(),
                reason: m.reason.clone().unwrap_or_else(|| "state unknown".into()),
            }),
            None => Ok(()),
        }
    }

    /// Remove snapshot group `name` after `error`; what removing leaves
    /// behind is added to the error.
    fn drop_snapshot(&self, error: Error, name: &str) -> Error {
        match self.snapshot_remove(name) {
            Ok(_) => error,
            Err(e) => Error::UndoFailed {
                error: Box::new(error),
                leftovers: vec![format!("snapshot group {name} ({e})")],
            },
        }
    }
}

#[cfg(test)]
mod tests;
