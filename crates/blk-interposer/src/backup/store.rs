//! The backup directory and the data path: copy pieces of a source (a
//! snapshot, or any file) into a new version, verify versions, restore
//! them.  Nothing here knows about device-mapper: the tests use temporary
//! files as the snapshot.
//!
//! # Layout
//!
//! ```text
//! DIR/lock               flock: one writer, or readers (verify, restore)
//! DIR/000001.full.img    sparse raw image of the whole device
//! DIR/000001.json        its manifest, written last
//! DIR/000002.delta       the changed pieces' data, one after the other
//! DIR/000002.json
//! ```
//!
//! A version exists once its manifest does.  Its data file is written as
//! `NAME.partial`, synced, read back and compared, and only then renamed;
//! the manifest follows the same way, then the directory is synced.  A run
//! that fails leaves at most files that the next run removes; it never
//! writes to an earlier version's files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{
    data_name, manifest_name, split, version_of, DataFile, Kind, Manifest, Piece, Previous, Source,
    FORMAT, PIECE_BYTES,
};
use super::Progress;
use crate::error::{Error, Result};

/// Reads and writes are aligned to this, so that a source opened with
/// `O_DIRECT` (a snapshot device, read past the page cache) works.
const ALIGN: usize = 4096;
/// The unit in which a full image skips zeros (leaves a hole).
const HOLE: usize = 64 << 10;

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data` in lower-case hex.
pub fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A buffer whose start is aligned for `O_DIRECT`.
struct Buf {
    raw: Vec<u8>,
    start: usize,
}

impl Buf {
    fn new() -> Self {
        let raw = vec![0u8; PIECE_BYTES as usize + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        Buf { raw, start }
    }

    fn get(&mut self, len: u64) -> &mut [u8] {
        &mut self.raw[self.start..self.start + len as usize]
    }
}

/// What a new version copies and records; [`BackupDir::stage`] adds the
/// pieces' checksums, the data file and the link to the previous version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVersion {
    /// What is copied, as the manifest will say.
    pub source: Source,
    /// For an incremental: the byte ranges `(offset, length)` to copy.
    /// Ignored for a full version, which copies `0..size`.
    pub ranges: Vec<(u64, u64)>,
}

/// A version of a backup directory as [`BackupDir::verify`] found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedVersion {
    /// Its number.
    pub version: u32,
    /// Full or incremental.
    pub kind: Kind,
    /// The version it builds on.
    pub previous: Option<u32>,
    /// Bytes of the device it holds.
    pub bytes: u64,
}

/// What [`BackupDir::verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The directory.
    pub dir: PathBuf,
    /// Every version checked, oldest first: its data file reads back with
    /// the checksums of its manifest, and its previous version exists with
    /// the manifest it was built on.
    pub versions: Vec<VerifiedVersion>,
    /// Bytes read and hashed.
    pub bytes_read: u64,
}

/// What [`BackupDir::restore`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The directory.
    pub dir: PathBuf,
    /// The version restored.
    pub version: u32,
    /// The versions applied, in order: a full one, then incrementals.
    pub applied: Vec<u32>,
    /// Where.
    pub target: PathBuf,
    /// The device size the image has.
    pub size: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
}

/// A backup directory, locked: exclusively to write a version, shared to
/// read (verify, restore).  The lock goes with the value.
#[derive(Debug)]
pub struct BackupDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl BackupDir {
    /// Open `path` to add a version, creating it if needed; takes the lock
    /// exclusively and removes what a failed run left (`*.partial`, a data
    /// file without its manifest).
    pub fn create(path: &Path) -> Result<Self> {
        fs::create_dir_all(path).map_err(|e| Error::BackupDir {
            dir: path.into(),
            what: format!("cannot be created ({e})"),
        })?;
        let d = Self::lock(path, FlockArg::LockExclusiveNonblock)?;
        d.clean()?;
        Ok(d)
    }

    /// Open the existing backup directory `path` to read it.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::BackupDir {
                dir: path.into(),
                what: "does not exist or is not a directory".into(),
            });
        }
        Self::lock(path, FlockArg::LockSharedNonblock)
    }

    fn lock(path: &Path, how: FlockArg) -> Result<Self> {
        let lock = path.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&lock)
            .or_else(|_| File::open(&lock))
            .map_err(io_err(format!("cannot open {}", lock.display())))?;
        match Flock::lock(file, how) {
            Ok(l) => Ok(BackupDir {
                path: path.into(),
                _lock: l,
            }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::BackupBusy { dir: path.into() }),
            Err((_, e)) => Err(io_err(format!("cannot lock {}", lock.display()))(
                io::Error::from(e),
            )),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn names(&self) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.path)
            .map_err(io_err(format!("cannot list {}", self.path.display())))?;
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(io_err(format!("cannot list {}", self.path.display())))?;
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Remove what a failed run left: `*.partial`, and data files newer
    /// than the newest manifest.  Returns the names removed.
    fn clean(&self) -> Result<Vec<String>> {
        let newest = self.versions()?.last().copied().unwrap_or(0);
        let mut removed = Vec::new();
        for n in self.names()? {
            let Some(v) = version_of(&n) else { continue };
            if n.ends_with(".partial") || (v > newest && !n.ends_with(".json")) {
                let p = self.path.join(&n);
                fs::remove_file(&p).map_err(io_err(format!("cannot remove {}", p.display())))?;
                removed.push(n);
            }
        }
        Ok(removed)
    }

    /// The complete versions (those with a manifest), oldest first.
    pub fn versions(&self) -> Result<Vec<u32>> {
        Ok(self
            .names()?
            .iter()
            .filter(|n| n.ends_with(".json") && n.len() == "000000.json".len())
            .filter_map(|n| version_of(n))
            .collect())
    }

    /// Version `version`'s manifest and the SHA-256 of its file.
    pub fn manifest(&self, version: u32) -> Result<(Manifest, String)> {
        let p = self.path.join(manifest_name(version));
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::BackupNoVersion {
                    dir: self.path.clone(),
                    version: Some(version),
                })
            }
            Err(e) => return Err(io_err(format!("cannot read {}", p.display()))(e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.damaged(version, format!("its manifest is not readable ({e})")))?;
        if m.format != FORMAT || m.version != version {
            return Err(self.damaged(
                version,
                format!(
                    "its manifest says format {} version {} (expected format {FORMAT} version {version})",
                    m.format, m.version
                ),
            ));
        }
        Ok((m, sha256(&bytes)))
    }

    /// The newest version's manifest and its SHA-256.
    pub fn latest(&self) -> Result<Option<(Manifest, String)>> {
        match self.versions()?.last() {
            Some(&v) => self.manifest(v).map(Some),
            None => Ok(None),
        }
    }

    fn damaged(&self, version: u32, what: String) -> Error {
        Error::BackupDamaged {
            dir: self.path.clone(),
            version,
            what,
        }
    }

    /// Copy `new`'s pieces from `src` into the data file of the next
    /// version, sync it, read the pieces back from both `src` and the file
    /// and compare them with the checksums taken while copying.  Nothing is
    /// a version yet: [`Staged::commit`] writes the manifest; dropping the
    /// [`Staged`] removes the data file.
    pub fn stage<'a>(
        &'a self,
        new: &NewVersion,
        src: &File,
        progress: &mut dyn Progress,
    ) -> Result<Staged<'a>> {
        let newest = self.versions()?.last().copied();
        let full = new.source.kind == Kind::Full;
        // A full version needs nothing of the one before: it may follow a
        // damaged one (and then names no previous version).
        let previous = match newest.map(|v| self.manifest(v)).transpose() {
            Err(Error::BackupDamaged { .. }) if full => None,
            r => r?,
        };
        let version = newest.map_or(1, |v| v + 1);
        let ranges = match new.source.kind {
            Kind::Full => split(&[(0, new.source.size)], new.source.size),
            Kind::Incremental => {
                if previous.is_none() {
                    return Err(Error::BadRequest {
                        what: "an incremental backup needs a previous version".into(),
                    });
                }
                split(&new.ranges, new.source.size)
            }
        };
        let name = data_name(version, new.source.kind);
        let partial = self.path.join(format!("{name}.partial"));
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(io_err(format!("cannot create {}", partial.display())))?;
        let mut staged = Staged {
            dir: self,
            partial: Some(partial),
            manifest: Manifest {
                format: FORMAT,
                tool: format!("blk-interposer {}", env!("CARGO_PKG_VERSION")),
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                version,
                source: new.source.clone(),
                previous: previous.map(|(m, sha)| Previous {
                    version: m.version,
                    manifest_sha256: sha,
                }),
                pieces: Vec::new(),
                data: DataFile {
                    name,
                    bytes: 0,
                    sha256: String::new(),
                },
            },
        };
        if full {
            out.set_len(new.source.size)
                .map_err(io_err(format!("cannot size {}", staged.data_label())))?;
        }
        let (pieces, sha, bytes) = copy(src, &out, &ranges, full, progress)
            .map_err(|e| e.into_error(&new.source.device, &staged.data_label()))?;
        out.sync_all()
            .map_err(io_err(format!("cannot sync {}", staged.data_label())))?;
        verify_copy(src, &out, &pieces, full, progress)
            .map_err(|e| e.into_error(&new.source.device, &staged.data_label()))?;
        staged.manifest.pieces = pieces;
        staged.manifest.data.bytes = bytes;
        staged.manifest.data.sha256 = sha;
        Ok(staged)
    }

    /// Check every version (or, with `version`, those a restore of it
    /// reads): each data file against its manifest's checksums, each link
    /// to a previous version against that version's manifest.  Fails with
    /// the first damaged version.
    pub fn verify(
        &self,
        version: Option<u32>,
        progress: &mut dyn Progress,
    ) -> Result<VerifyReport> {
        let chain = match version {
            Some(v) => self.chain(v)?,
            None => {
                let all = self.versions()?;
                if all.is_empty() {
                    return Err(Error::BackupNoVersion {
                        dir: self.path.clone(),
                        version: None,
                    });
                }
                let mut c = Vec::new();
                for v in all {
                    let (m, _) = self.manifest(v)?;
                    self.check_link(&m)?;
                    c.push(m);
                }
                c
            }
        };
        let bytes_read = self.check_data(&chain, progress)?;
        Ok(VerifyReport {
            dir: self.path.clone(),
            versions: chain
                .iter()
                .map(|m| VerifiedVersion {
                    version: m.version,
                    kind: m.source.kind,
                    previous: m.previous.as_ref().map(|p| p.version),
                    bytes: m.copied_bytes(),
                })
                .collect(),
            bytes_read,
        })
    }

    /// Whether `m`'s previous version exists with the manifest `m` was
    /// built on, and copies the same device.
    fn check_link(&self, m: &Manifest) -> Result<Option<Manifest>> {
        let Some(p) = &m.previous else {
            return match m.source.kind {
                Kind::Full => Ok(None),
                Kind::Incremental => Err(self.damaged(
                    m.version,
                    "it is incremental but names no previous version".into(),
                )),
            };
        };
        let (prev, sha) = match self.manifest(p.version) {
            Ok(x) => x,
            Err(Error::BackupNoVersion { .. }) => {
                return Err(self.damaged(
                    m.version,
                    format!("the version it builds on, {}, is missing", p.version),
                ))
            }
            Err(e) => return Err(e),
        };
        if sha != p.manifest_sha256 {
            return Err(self.damaged(
                m.version,
                format!(
                    "version {}'s manifest is not the one it was built on (sha256 {sha}, recorded {})",
                    p.version, p.manifest_sha256
                ),
            ));
        }
        if m.source.kind == Kind::Incremental && prev.source.size != m.source.size {
            return Err(self.damaged(
                m.version,
                format!(
                    "its device size {} differs from version {}'s {}",
                    m.source.size, p.version, prev.source.size
                ),
            ));
        }
        Ok(Some(prev))
    }

    /// The versions a restore of `version` applies: the newest full one at
    /// or before it, then each incremental up to it; links checked.
    pub fn chain(&self, version: u32) -> Result<Vec<Manifest>> {
        let (mut m, _) = self.manifest(version)?;
        let mut chain = Vec::new();
        while m.source.kind == Kind::Incremental {
            let prev = self
                .check_link(&m)?
                .ok_or_else(|| self.damaged(m.version, "it names no previous version".into()))?;
            chain.push(m);
            m = prev;
        }
        chain.push(m);
        chain.reverse();
        Ok(chain)
    }

    fn data_path(&self, m: &Manifest) -> PathBuf {
        self.path.join(&m.data.name)
    }

    /// Read every data file of `chain` against its checksums.
    fn check_data(&self, chain: &[Manifest], progress: &mut dyn Progress) -> Result<u64> {
        progress.start("verify", chain.iter().map(|m| m.data.bytes).sum());
        let mut buf = Buf::new();
        let mut total = 0;
        for m in chain {
            let path = self.data_path(m);
            let f = File::open(&path).map_err(|e| {
                self.damaged(
                    m.version,
                    format!("its data file {} cannot be opened ({e})", path.display()),
                )
            })?;
            let len = f
                .metadata()
                .map_err(io_err(format!("cannot stat {}", path.display())))?
                .len();
            if len != m.data.bytes {
                return Err(self.damaged(
                    m.version,
                    format!(
                        "its data file {} has {len} bytes, the manifest says {}",
                        path.display(),
                        m.data.bytes
                    ),
                ));
            }
            let mut whole = Sha256::new();
            read_pieces(m, &f, &path, &mut buf, |p, pos, b| {
                whole.update(b);
                if sha256(b) != p.sha256 {
                    return Err(self.damaged(
                        m.version,
                        format!(
                            "{} bytes at offset {pos} of {} do not match their checksum (device offset {})",
                            p.length,
                            path.display(),
                            p.offset
                        ),
                    ));
                }
                total += p.length;
                progress.advance(p.length);
                Ok(())
            })?;
            if hex(&whole.finalize()) != m.data.sha256 {
                return Err(self.damaged(
                    m.version,
                    format!(
                        "{} does not match the checksum of its manifest",
                        path.display()
                    ),
                ));
            }
        }
        Ok(total)
    }

    /// Write version `version` (default: the newest) to `target`: the full
    /// version it builds on, then each incremental up to it, after checking
    /// all of them ([`BackupDir::verify`]).  A block device must be at least
    /// the device's size and not in use (it is opened with `O_EXCL`); it is
    /// written whole.  Any other path is made a sparse file of the device's
    /// size (an existing file is replaced).  The target is synced at the end.
    pub fn restore(
        &self,
        version: Option<u32>,
        target: &Path,
        progress: &mut dyn Progress,
    ) -> Result<RestoreReport> {
        let version = match version {
            Some(v) => v,
            None => *self
                .versions()?
                .last()
                .ok_or_else(|| Error::BackupNoVersion {
                    dir: self.path.clone(),
                    version: None,
                })?,
        };
        let inside = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .ok()
            .zip(self.path.canonicalize().ok())
            .is_some_and(|(parent, dir)| parent.starts_with(dir));
        if inside {
            return Err(Error::RestoreTarget {
                target: target.into(),
                what: "it is inside the backup directory; restore to a device or a file elsewhere"
                    .into(),
            });
        }
        let chain = self.chain(version)?;
        self.check_data(&chain, progress)?;
        let size = chain.last().map_or(0, |m| m.source.size);
        let (out, sparse) = open_target(target, size)?;
        let label = target.display().to_string();
        progress.start("restore", chain.iter().map(|m| m.data.bytes).sum());
        let mut buf = Buf::new();
        let mut written = 0;
        for m in &chain {
            let path = self.data_path(m);
            let f = File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
            let hole = sparse && m.source.kind == Kind::Full;
            read_pieces(m, &f, &path, &mut buf, |p, _, b| {
                written += write_piece(&out, b, p.offset, hole)
                    .map_err(io_err(format!("cannot write to {label}")))?;
                progress.advance(p.length);
                Ok(())
            })?;
        }
        out.sync_all()
            .map_err(io_err(format!("cannot sync {label}")))?;
        Ok(RestoreReport {
            dir: self.path.clone(),
            version,
            applied: chain.iter().map(|m| m.version).collect(),
            target: target.into(),
            size,
            bytes_written: written,
        })
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!(
                "cannot sync the directory {}",
                self.path.display()
            )))
    }
}

/// Read each piece of version `m` from its data file `f` (at `path`) in
/// order, and hand it to `each` with its position in the file.
fn read_pieces(
    m: &Manifest,
    f: &File,
    path: &Path,
    buf: &mut Buf,
    mut each: impl FnMut(&Piece, u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut at = 0;
    for p in &m.pieces {
        let pos = if m.source.kind == Kind::Full {
            p.offset
        } else {
            at
        };
        let b = buf.get(p.length);
        f.read_exact_at(b, pos)
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        each(p, pos, b)?;
        at += p.length;
    }
    Ok(())
}

/// A block device opened exclusively (and checked for size), or a file
/// made anew: `(file, sparse)`.
fn open_target(target: &Path, size: u64) -> Result<(File, bool)> {
    let label = target.display().to_string();
    let block = fs::metadata(target).is_ok_and(|m| m.file_type().is_block_device());
    if !block {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(target)
            .map_err(io_err(format!("cannot create {label}")))?;
        f.set_len(size)
            .map_err(io_err(format!("cannot size {label}")))?;
        return Ok((f, true));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_EXCL.bits())
        .open(target)
        .map_err(|e| Error::RestoreTarget {
            target: target.into(),
            what: if e.raw_os_error() == Some(nix::libc::EBUSY) {
                "it is in use (mounted, or held by dm, LVM or another program): unmount or release it first".into()
            } else {
                format!("it cannot be opened for writing ({e})")
            },
        })?;
    let have = f
        .seek(SeekFrom::End(0))
        .map_err(io_err(format!("cannot find the size of {label}")))?;
    if have < size {
        return Err(Error::RestoreTargetTooSmall {
            target: target.into(),
            have,
            need: size,
        });
    }
    Ok((f, false))
}

/// Write `data` at `offset`; with `hole`, skip its all-zero [`HOLE`]s
/// (the file reads zeros there already).  Returns the bytes written.
fn write_piece(out: &File, data: &[u8], offset: u64, hole: bool) -> io::Result<u64> {
    if !hole {
        out.write_all_at(data, offset)?;
        return Ok(data.len() as u64);
    }
    let mut n = 0;
    for (i, c) in data.chunks(HOLE).enumerate() {
        if c.iter().any(|&b| b != 0) {
            out.write_all_at(c, offset + (i * HOLE) as u64)?;
            n += c.len() as u64;
        }
    }
    Ok(n)
}

/// Where a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
    /// `(offset, length, read back from the source?)`
    Mismatch(u64, u64, bool),
}

impl CopyError {
    fn into_error(self, device: &str, data: &str) -> Error {
        match self {
            CopyError::Read(source) => Error::Io {
                what: format!("cannot read the snapshot of {device}"),
                source,
            },
            CopyError::Write(source) => Error::Io {
                what: format!("cannot write {data}"),
                source,
            },
            CopyError::Mismatch(offset, length, from_source) => Error::BackupCopyMismatch {
                device: device.into(),
                offset,
                length,
                what: if from_source {
                    "the snapshot".into()
                } else {
                    data.into()
                },
            },
        }
    }
}

/// Copy `ranges` of `src` into `out` (at their offsets with `full`, else
/// one after the other), hashing each piece and the whole output.
fn copy(
    src: &File,
    out: &File,
    ranges: &[(u64, u64)],
    full: bool,
    progress: &mut dyn Progress,
) -> Result<(Vec<Piece>, String, u64), CopyError> {
    progress.start("copy", ranges.iter().map(|r| r.1).sum());
    let mut buf = Buf::new();
    let mut whole = Sha256::new();
    let mut pieces = Vec::with_capacity(ranges.len());
    let mut at = 0;
    for &(offset, length) in ranges {
        let b = buf.get(length);
        src.read_exact_at(b, offset).map_err(CopyError::Read)?;
        whole.update(&*b);
        let (pos, hole) = if full { (offset, true) } else { (at, false) };
        write_piece(out, b, pos, hole).map_err(CopyError::Write)?;
        pieces.push(Piece {
            offset,
            length,
            sha256: sha256(b),
        });
        at += length;
        progress.advance(length);
    }
    let bytes = if full {
        ranges.last().map_or(0, |r| r.0 + r.1)
    } else {
        at
    };
    Ok((pieces, hex(&whole.finalize()), bytes))
}

/// Read every piece back from `src` and from `out` (past the page cache
/// where the kernel lets us drop it) and compare with the checksums taken
/// while copying.
fn verify_copy(
    src: &File,
    out: &File,
    pieces: &[Piece],
    full: bool,
    progress: &mut dyn Progress,
) -> Result<(), CopyError> {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    // Best effort: a source opened with O_DIRECT has no cached pages, and a
    // file system that ignores the advice only makes the check weaker.
    let _ = posix_fadvise(out, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    let _ = posix_fadvise(src, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    progress.start("verify", pieces.iter().map(|p| p.length).sum());
    let mut buf = Buf::new();
    let mut at = 0;
    for p in pieces {
        let b = buf.get(p.length);
        src.read_exact_at(b, p.offset).map_err(CopyError::Read)?;
        if sha256(b) != p.sha256 {
            return Err(CopyError::Mismatch(p.offset, p.length, true));
        }
        let pos = if full { p.offset } else { at };
        out.read_exact_at(b, pos).map_err(CopyError::Write)?;
        if sha256(b) != p.sha256 {
            return Err(CopyError::Mismatch(p.offset, p.length, false));
        }
        at += p.length;
        progress.advance(p.length);
    }
    Ok(())
}

/// A version whose data file is written and verified, but which has no
/// manifest yet.  Dropped without [`Staged::commit`], it removes its file.
#[derive(Debug)]
pub struct Staged<'a> {
    dir: &'a BackupDir,
    partial: Option<PathBuf>,
    manifest: Manifest,
}

impl Staged<'_> {
    /// The manifest it will write.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn data_label(&self) -> String {
        self.partial
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string())
    }

    /// Make it a version: rename the data file, write the manifest (as a
    /// `.partial` file, synced, renamed), sync the directory.
    pub fn commit(mut self) -> Result<Manifest> {
        let dir = &self.dir.path;
        let data = dir.join(&self.manifest.data.name);
        if let Some(p) = &self.partial {
            fs::rename(p, &data).map_err(io_err(format!("cannot rename {}", p.display())))?;
        }
        self.partial = None;
        let name = manifest_name(self.manifest.version);
        let tmp = dir.join(format!("{name}.partial"));
        let mut text = serde_json::to_vec_pretty(&self.manifest)
            .map_err(io::Error::from)
            .map_err(io_err("cannot encode the manifest"))?;
        text.push(b'\n');
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(&name))
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&data);
            return Err(io_err(format!(
                "cannot write {}",
                dir.join(&name).display()
            ))(e));
        }
        self.dir.sync_dir()?;
        Ok(self.manifest.clone())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.partial.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Stream a full raw image of `size` bytes of `src` to `out` (a pipe into
/// restic or borg); returns its SHA-256.  No holes: a pipe has none.
pub fn stream_full(
    src: &File,
    size: u64,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<String> {
    progress.start("copy", size);
    let mut buf = Buf::new();
    let mut whole = Sha256::new();
    for (offset, length) in split(&[(0, size)], size) {
        let b = buf.get(length);
        src.read_exact_at(b, offset)
            .map_err(io_err("cannot read the snapshot"))?;
        whole.update(&*b);
        out.write_all(b)
            .map_err(io_err("cannot write the image to standard output"))?;
        progress.advance(length);
    }
    out.flush()
        .map_err(io_err("cannot write the image to standard output"))?;
    Ok(hex(&whole.finalize()))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
