//! The host's device nodes and sysfs, as a trait, so that orchestration tests
//! need neither real devices nor root.  [`System`] is the real one.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};

use crate::era::record::DeviceIdentity;
use crate::error::{Error, Result};
use crate::types::{DevNo, Sectors};

/// Device nodes and names on the host.
pub trait Host {
    /// Resolve a path (symlinks too, like `/dev/disk/by-id/...`) or a
    /// `MAJ:MIN` to a block device number; an error names the path when it
    /// is not a block device.
    fn resolve(&self, spec: &Path) -> Result<DevNo>;
    /// The kernel name of `dev` (`vdb`), if the kernel knows it.
    fn kernel_name(&self, dev: DevNo) -> Option<String>;
    /// Make sure `path` is a block node of `dev`; `true` when we made it
    /// (there is no udev to make it, as in a minimal VM).
    fn ensure_node(&self, path: &Path, dev: DevNo) -> Result<bool>;
    /// Remove `path` if it is a block node of `dev` (not a udev symlink);
    /// `true` when removed.
    fn remove_node(&self, path: &Path, dev: DevNo) -> Result<bool>;
    /// The size of `dev`.
    fn sectors(&self, dev: DevNo) -> Result<Sectors>;
    /// Open `dev` for reading (and with `write`, writing) what is on the
    /// disk itself, past the page cache (`O_DIRECT`), for metadata that a dm
    /// target writes and for our tracking record beside it.
    fn open_direct(&self, dev: DevNo, write: bool) -> Result<File>;
    /// What tells `dev` apart from another device of the same size (see
    /// [`DeviceIdentity`]).
    fn identity(&self, dev: DevNo) -> Result<DeviceIdentity>;
    /// Write zeros over the first `len` of the block device at `path`, and
    /// flush them (a COW store's header: dm-snapshot would take old
    /// contents for a snapshot to load).
    fn zero_start(&self, path: &Path, len: Sectors) -> Result<()>;
    /// What `dev` holds that writing over it would destroy: `Occupied::InUse`
    /// when someone has it open exclusively (mounted, a dm table, LVM),
    /// else what `blkid -p` finds on it (a filesystem, a PV, a partition
    /// table); `None` when it looks free or holds only an unused dm-snapshot
    /// COW header.
    fn occupied(&self, dev: DevNo) -> Result<Option<Occupied>>;
    /// Create the file `path` (it must not exist), preallocate `size` and
    /// attach it to a free loop device; returns the loop device.
    fn loop_create(&self, path: &Path, size: Sectors) -> Result<DevNo>;
    /// Detach loop device `dev` and remove its backing file; returns the
    /// file it removed.
    fn loop_remove(&self, dev: DevNo) -> Result<Option<PathBuf>>;
    /// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`).
    fn boot_id(&self) -> Result<String>;
    /// SHA-256 of the first and the last 64 KiB of `dev`, read past the
    /// page cache: where a mount (a filesystem's superblock), a new
    /// filesystem, LVM or a partition table write.  Unchanged from a clean
    /// shutdown to the next boot's attach is what lets tracking go on.
    fn fingerprint(&self, dev: DevNo) -> Result<String>;
}

impl<H: Host + ?Sized> Host for &H {
    fn resolve(&self, spec: &Path) -> Result<DevNo> {
        (**self).resolve(spec)
    }
    fn kernel_name(&self, dev: DevNo) -> Option<String> {
        (**self).kernel_name(dev)
    }
    fn ensure_node(&self, path: &Path, dev: DevNo) -> Result<bool> {
        (**self).ensure_node(path, dev)
    }
    fn remove_node(&self, path: &Path, dev: DevNo) -> Result<bool> {
        (**self).remove_node(path, dev)
    }
    fn sectors(&self, dev: DevNo) -> Result<Sectors> {
        (**self).sectors(dev)
    }
    fn open_direct(&self, dev: DevNo, write: bool) -> Result<File> {
        (**self).open_direct(dev, write)
    }
    fn identity(&self, dev: DevNo) -> Result<DeviceIdentity> {
        (**self).identity(dev)
    }
    fn zero_start(&self, path: &Path, len: Sectors) -> Result<()> {
        (**self).zero_start(path, len)
    }
    fn occupied(&self, dev: DevNo) -> Result<Option<Occupied>> {
        (**self).occupied(dev)
    }
    fn loop_create(&self, path: &Path, size: Sectors) -> Result<DevNo> {
        (**self).loop_create(path, size)
    }
    fn loop_remove(&self, dev: DevNo) -> Result<Option<PathBuf>> {
        (**self).loop_remove(dev)
    }
    fn boot_id(&self) -> Result<String> {
        (**self).boot_id()
    }
    fn fingerprint(&self, dev: DevNo) -> Result<String> {
        (**self).fingerprint(dev)
    }
}

/// How a command line names a device; every verb classifies its device
/// arguments with [`DeviceSpec::parse`] and resolves them with
/// [`crate::Ops::resolve_device`] or [`crate::Ops::resolve_any`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `MAJ:MIN`.
    DevNo(DevNo),
    /// A path (anything with a `/`): `/dev/vdb`, a `/dev/disk/by-*` symlink.
    Path(PathBuf),
    /// A bare name: a kernel name (`vdb1`, that is `/dev/vdb1`) or a dm
    /// name (`vdb1-era`, `/dev/mapper/vdb1-era`).
    Name(String),
}

impl DeviceSpec {
    /// Classify `what`: `MAJ:MIN`, a path with a `/`, or a bare name.
    pub fn parse(what: &Path) -> DeviceSpec {
        match what.to_str() {
            Some(s) => match s.parse::<DevNo>() {
                Ok(d) => DeviceSpec::DevNo(d),
                Err(_) if s.contains('/') || s.is_empty() => DeviceSpec::Path(what.into()),
                Err(_) => DeviceSpec::Name(s.to_string()),
            },
            None => DeviceSpec::Path(what.into()),
        }
    }

    /// What can be checked with neither the module nor device-mapper: a
    /// path must exist and be a block device.  Verbs run it on every device
    /// argument before they open the control device, so that a wrong path
    /// is not reported as a module that does not load.
    pub fn check(&self, host: &impl Host) -> Result<()> {
        match self {
            DeviceSpec::Path(p) => host.resolve(p).map(drop),
            DeviceSpec::DevNo(_) | DeviceSpec::Name(_) => Ok(()),
        }
    }
}

/// What a device holds ([`Host::occupied`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Occupied {
    /// Open exclusively by someone: mounted, used by a dm table, LVM.
    InUse,
    /// What blkid found: `a filesystem (ext4)`, `a signature (LVM2_member)`,
    /// `a partition table (gpt)`.
    Holds(String),
}

impl std::fmt::Display for Occupied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Occupied::InUse => {
                f.write_str("is in use (mounted, or held by dm, LVM or another program)")
            }
            Occupied::Holds(what) => write!(f, "holds {what} (blkid -p)"),
        }
    }
}

/// The real host.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl Host for System {
    fn resolve(&self, spec: &Path) -> Result<DevNo> {
        if let Some(d) = spec.to_str().and_then(|s| s.parse::<DevNo>().ok()) {
            return Ok(d);
        }
        let real = spec.canonicalize().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::PathNotFound { path: spec.into() },
            _ => Error::Resolve {
                path: spec.into(),
                source,
            },
        })?;
        let meta = real.metadata().map_err(|source| Error::Resolve {
            path: spec.into(),
            source,
        })?;
        if !meta.file_type().is_block_device() {
            return Err(Error::NotBlockDevice { path: spec.into() });
        }
        Ok(DevNo::from_dev_t(meta.rdev()))
    }

    fn kernel_name(&self, dev: DevNo) -> Option<String> {
        crate::sysfs::kernel_name(dev)
    }

    fn ensure_node(&self, path: &Path, dev: DevNo) -> Result<bool> {
        match path.metadata() {
            Ok(m) if m.file_type().is_block_device() && DevNo::from_dev_t(m.rdev()) == dev => {
                return Ok(false)
            }
            Ok(_) => {
                return Err(Error::Io {
                    what: format!(
                        "{} exists but is not the block device {dev}",
                        path.display()
                    ),
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    what: format!("cannot stat {}", path.display()),
                    source,
                })
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: format!("cannot create {}", dir.display()),
                source,
            })?;
        }
        mknod(
            path,
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o600),
            dev.to_dev_t() as _,
        )
        .map_err(|e| Error::Io {
            what: format!("cannot create the device node {} ({dev})", path.display()),
            source: io::Error::from(e),
        })?;
        Ok(true)
    }

    fn remove_node(&self, path: &Path, dev: DevNo) -> Result<bool> {
        match path.symlink_metadata() {
            Ok(m) if m.file_type().is_block_device() && DevNo::from_dev_t(m.rdev()) == dev => {
                std::fs::remove_file(path).map_err(|source| Error::Io {
                    what: format!("cannot remove {}", path.display()),
                    source,
                })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn sectors(&self, dev: DevNo) -> Result<Sectors> {
        let path = format!("/sys/dev/block/{dev}/size");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            what: format!("cannot read the size of {dev} from {path}"),
            source,
        })?;
        text.trim().parse().map_err(|_| Error::Io {
            what: format!("{path} holds `{}`, not a size", text.trim()),
            source: io::Error::from(io::ErrorKind::InvalidData),
        })
    }

    fn open_direct(&self, dev: DevNo, write: bool) -> Result<File> {
        let path = match crate::sysfs::kernel_name(dev) {
            Some(n) => Path::new("/dev").join(n),
            None => PathBuf::from(format!("/dev/block/{dev}")),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
            .open(&path)
            .map_err(|source| Error::Io {
                what: format!("cannot open {}", path.display()),
                source,
            })?;
        match file.metadata() {
            Ok(m) if m.file_type().is_block_device() && DevNo::from_dev_t(m.rdev()) == dev => {
                Ok(file)
            }
            _ => Err(Error::NotBlockDevice { path }),
        }
    }
    fn identity(&self, dev: DevNo) -> Result<DeviceIdentity> {
        crate::sysfs::identity(Path::new("/sys"), dev, self.sectors(dev)?)
    }
    fn boot_id(&self) -> Result<String> {
        const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
        std::fs::read_to_string(BOOT_ID)
            .map(|s| s.trim().to_string())
            .map_err(|source| Error::Io {
                what: format!("cannot read {BOOT_ID}"),
                source,
            })
    }
    fn fingerprint(&self, dev: DevNo) -> Result<String> {
        use sha2::{Digest, Sha256};
        use std::os::unix::fs::FileExt;
        #[repr(C, align(4096))]
        struct Buf([u8; 64 << 10]);
        let file = self.open_direct(dev, false)?;
        let bytes = self.sectors(dev)?.bytes() / 4096 * 4096;
        let mut buf = Box::new(Buf([0; 64 << 10]));
        let mut sha = Sha256::new();
        for at in [0, bytes.saturating_sub(64 << 10)] {
            let len = usize::try_from(bytes.min(64 << 10)).unwrap_or(0);
            file.read_exact_at(&mut buf.0[..len], at)
                .map_err(|source| Error::Io {
                    what: format!("cannot read {dev} for its fingerprint"),
                    source,
                })?;
            sha.update(&buf.0[..len]);
        }
        Ok(sha.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
    fn zero_start(&self, path: &Path, len: Sectors) -> Result<()> {
        use std::io::Write;
        let what = || format!("cannot zero the start of {}", path.display());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| Error::Io {
                what: what(),
                source,
            })?;
        let zeros = vec![0u8; usize::try_from(len.bytes()).unwrap_or(usize::MAX)];
        f.write_all(&zeros)
            .and_then(|()| f.sync_all())
            .map_err(|source| Error::Io {
                what: what(),
                source,
            })
    }

    fn occupied(&self, dev: DevNo) -> Result<Option<Occupied>> {
        let path = match crate::sysfs::kernel_name(dev) {
            Some(n) => Path::new("/dev").join(n),
            None => PathBuf::from(format!("/dev/block/{dev}")),
        };
        // O_EXCL on a block device: EBUSY while anyone holds it exclusively.
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_EXCL.bits())
            .open(&path)
        {
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                return Ok(Some(Occupied::InUse))
            }
            Err(source) => {
                return Err(Error::Io {
                    what: format!("cannot open {}", path.display()),
                    source,
                })
            }
            Ok(_) => {}
        }
        let out = std::process::Command::new("blkid")
            .args(["-p", "-o", "export"])
            .arg(&path)
            .output()
            .map_err(|source| Error::Io {
                what: format!(
                    "cannot run `blkid -p {}` (is util-linux installed?)",
                    path.display()
                ),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        Ok(match (field("TYPE"), field("PTTYPE")) {
            // The COW header an earlier snapshot left (ours, or any dm
            // snapshot's whose device is gone: one in use failed O_EXCL
            // above): worthless without its origin, and every nightly
            // backup that reuses its COW device finds one.
            (Some(t), _) if t == "DM_snapshot_cow" => None,
            (Some(t), _) if field("USAGE").as_deref() == Some("filesystem") => {
                Some(Occupied::Holds(format!("a filesystem ({t})")))
            }
            (Some(t), _) => Some(Occupied::Holds(format!("a signature ({t})"))),
            (None, Some(pt)) => Some(Occupied::Holds(format!("a partition table ({pt})"))),
            (None, None) => None,
        })
    }
    fn loop_create(&self, path: &Path, size: Sectors) -> Result<DevNo> {
        let io_err = |what: String| move |source| Error::Io { what, source };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_err(format!(
                "cannot create the COW file {}",
                path.display()
            )))?;
        let len = i64::try_from(size.bytes()).unwrap_or(i64::MAX);
        let allocated = nix::fcntl::posix_fallocate(&file, 0, len)
            .map_err(io::Error::from)
            .map_err(io_err(format!(
                "cannot preallocate {} bytes for {} (is the filesystem full?)",
                size.bytes(),
                path.display()
            )));
        drop(file);
        let attached = allocated.and_then(|()| losetup(&["--find", "--show"], path));
        let loop_path = match attached {
            Ok(out) => PathBuf::from(out.trim()),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        match self.resolve(&loop_path) {
            Ok(dev) => Ok(dev),
            Err(e) => {
                let _ = losetup(&["--detach"], &loop_path);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    fn loop_remove(&self, dev: DevNo) -> Result<Option<PathBuf>> {
        let backing = std::fs::read_to_string(format!("/sys/dev/block/{dev}/loop/backing_file"))
            .ok()
            .map(|s| PathBuf::from(s.trim_end()));
        let name = self.kernel_name(dev).ok_or_else(|| Error::Io {
            what: format!("loop device {dev} is gone"),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        losetup(&["--detach"], &Path::new("/dev").join(name))?;
        match backing {
            Some(file) => match std::fs::remove_file(&file) {
                Ok(()) => Ok(Some(file)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io {
                    what: format!("cannot remove the COW file {}", file.display()),
                    source,
                }),
            },
            None => Ok(None),
        }
    }
}

/// Run `losetup ARGS PATH`; its standard output.
fn losetup(args: &[&str], path: &Path) -> Result<String> {
    let what = || format!("losetup {} {}", args.join(" "), path.display());
    let out = std::process::Command::new("losetup")
        .args(args)
        .arg(path)
        .output()
        .map_err(|source| Error::Io {
            what: format!("cannot run `{}` (is util-linux installed?)", what()),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Io {
            what: format!(
                "`{}` failed: {}",
                what(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            source: io::Error::other("losetup failed"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `/dev/mapper/<name>`.
pub fn mapper_path(name: &str) -> PathBuf {
    Path::new("/dev/mapper").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_devno_and_rejects_files() {
        assert_eq!(System.resolve(Path::new("7:3")).unwrap(), DevNo::new(7, 3));
        let e = System.resolve(Path::new("/proc/self/status")).unwrap_err();
        assert_eq!(e.to_string(), "/proc/self/status is not a block device");
        let e = System.resolve(Path::new("/nonexistent/x")).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/x does not exist");
    }

    #[test]
    fn device_specs_are_told_apart_without_the_kernel() {
        let spec = |s: &str| DeviceSpec::parse(Path::new(s));
        assert_eq!(spec("254:16"), DeviceSpec::DevNo(DevNo::new(254, 16)));
        assert_eq!(spec("/dev/vdb"), DeviceSpec::Path("/dev/vdb".into()));
        assert_eq!(
            spec("/dev/disk/by-id/virtio-x"),
            DeviceSpec::Path("/dev/disk/by-id/virtio-x".into())
        );
        assert_eq!(spec("./vdb"), DeviceSpec::Path("./vdb".into()));
        assert_eq!(spec("vdb1"), DeviceSpec::Name("vdb1".into()));
        assert_eq!(spec("vdb1-era"), DeviceSpec::Name("vdb1-era".into()));
        let e = spec("/etc/passwd").check(&System).unwrap_err();
        assert_eq!(e.to_string(), "/etc/passwd is not a block device");
        let e = spec("/nonexistent").check(&System).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent does not exist");
        assert!(spec("vdb-lin").check(&System).is_ok(), "names need dm");
        assert!(spec("7:3").check(&System).is_ok());
    }

    #[test]
    fn remove_node_leaves_other_files() {
        assert!(!System
            .remove_node(Path::new("/proc/self/status"), DevNo::new(1, 1))
            .unwrap());
    }
}
