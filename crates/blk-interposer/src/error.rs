//! The one error type of the library.  Each message names the problem and,
//! where there is one, the fix.
//!
//! Device fields are labels ready to print, like `/dev/vdb (254:16)`.

use std::io;
use std::path::PathBuf;

use crate::types::Version;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/blk-interposer` does not exist.
    #[error("{path} does not exist: load the kernel module with `modprobe blk_interposer`")]
    ModuleNotLoaded {
        /// The control device path.
        path: PathBuf,
    },
    /// `/dev/blk-interposer` does not exist and `modprobe blk_interposer` did
    /// not make it.
    #[error("{path} does not exist and `modprobe blk_interposer` failed: {detail}; {}", cause.remedy())]
    ModuleLoad {
        /// The control device path.
        path: PathBuf,
        /// What modprobe (or the kernel log) said.
        detail: String,
        /// What it means.
        cause: ModuleLoadCause,
    },
    /// The control device exists but could not be opened.
    #[error("cannot open {path}{hint}", hint = if source.kind() == io::ErrorKind::PermissionDenied { " (run as root)" } else { "" })]
    ControlOpen {
        /// The control device path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// EPERM.
    #[error("{op}: permission denied: run as root (needs CAP_SYS_ADMIN)")]
    PermissionDenied {
        /// The command.
        op: &'static str,
    },
    /// EINVAL with a kernel version of another major.
    #[error("the blk_interposer module speaks ABI {kernel}, this tool speaks {ours}: install matching versions of the module and the tool")]
    VersionMismatch {
        /// Version the module wrote back.
        kernel: Version,
        /// Version we were built with.
        ours: Version,
    },
    /// ENOTTY.
    #[error("{op}: the blk_interposer module does not know this command (module ABI {kernel}, ours {ours}): update the module")]
    UnknownCommand {
        /// The command.
        op: &'static str,
        /// Version the module wrote back (0.0.0 if none).
        kernel: Version,
        /// Version we were built with.
        ours: Version,
    },
    /// ENOENT on LOWER_REMOVE/ATTACH/STATUS: no lower device.
    #[error("{dev} has no lower device: nothing is interposed there (create one with `interposer create`)")]
    NoLower {
        /// The device.
        dev: String,
    },
    /// ENOENT on DETACH.
    #[error("{dev} is not attached to an interposer")]
    NotAttached {
        /// The device.
        dev: String,
    },
    /// ENXIO / ENODEV.
    #[error("{op}: device {dev} does not exist")]
    NoSuchDevice {
        /// The command.
        op: &'static str,
        /// The device.
        dev: String,
    },
    /// EEXIST on LOWER_CREATE (the library reuses the lower device).
    #[error("{dev} already has a lower device")]
    LowerExists {
        /// The device.
        dev: String,
    },
    /// EBUSY on LOWER_CREATE: the hook could not be placed.
    #[error("cannot interpose {dev}: the module cannot hook submit_bio_noacct(), which another ftrace direct trampoline (a BPF fentry/fexit program, for one) or a livepatch already holds; see dmesg, and detach that first")]
    HookBusy {
        /// The device.
        dev: String,
    },
    /// EOPNOTSUPP on LOWER_CREATE: `kernel.ftrace_enabled` is 0, so the
    /// hook would never be called and every bio would pass it silently.
    #[error("cannot interpose {dev}: function tracing is switched off (sysctl kernel.ftrace_enabled is 0), so the hook would never run and the device's writes would bypass the interposer; switch it on with `sysctl kernel.ftrace_enabled=1` (while anything is interposed the module keeps it on)")]
    FtraceOff {
        /// The device.
        dev: String,
    },
    /// EMEDIUMTYPE on LOWER_CREATE: a DAX-capable or zoned device.
    #[error("cannot interpose {dev}: it is a DAX-capable or a zoned device (see /sys/block/*/queue/dax and zoned); a filesystem mounted with -o dax reads and writes without bios, which no interposer sees, and zoned devices need zone-aware targets: use dm directly on such a device before it is in use")]
    WrongMedium {
        /// The device.
        dev: String,
    },
    /// EEXIST on ATTACH.
    #[error("{dev} is already interposed{}", match by { Some(n) => format!(" by {n}; remove it first with `interposer remove {n}`"), None => "; see `interposer ls`".to_string() })]
    AlreadyAttached {
        /// The device.
        dev: String,
        /// The dm name of the interposer, when known.
        by: Option<String>,
    },
    /// EBUSY on LOWER_REMOVE.
    #[error("the lower device of {dev} is busy: it is attached or open (by a dm table?); remove what uses it first")]
    LowerBusy {
        /// The device.
        dev: String,
    },
    /// EBUSY on ATTACH.
    #[error("cannot attach {dev}: its filesystem is frozen by someone else (thaw it with `fsfreeze -u MOUNTPOINT`) or the interposer {interposer} is busy")]
    AttachBusy {
        /// The device.
        dev: String,
        /// The interposer.
        interposer: String,
    },
    /// ELOOP on ATTACH.
    #[error("cannot attach {dev} to {interposer}: the interposer is the device itself, its own lower device, or would make a loop through another interposer")]
    Loop {
        /// The device.
        dev: String,
        /// The interposer.
        interposer: String,
    },
    /// ENOSPC on ATTACH.
    #[error("cannot attach {dev}: the interposer {interposer} is smaller than the device; make the table cover the whole device (`blockdev --getsz`)")]
    InterposerTooSmall {
        /// The device.
        dev: String,
        /// The interposer.
        interposer: String,
    },
    /// EMEDIUMTYPE on ATTACH or SWITCH: the interposer's logical blocks are
    /// larger than the device's.
    #[error("cannot attach {dev} to {interposer}: the interposer has {interposer_block} logical blocks, the device {dev_block}; the device's users (its filesystem, O_DIRECT) send I/O aligned to the device's blocks, which the interposer would fail. Build the table from devices and targets whose logical block size (`blockdev --getss`) is at most the device's")]
    BlockSizeTooLarge {
        /// The device.
        dev: String,
        /// The interposer.
        interposer: String,
        /// The device's logical block size, e.g. `512-byte`.
        dev_block: String,
        /// The interposer's logical block size, e.g. `4096-byte`.
        interposer_block: String,
    },
    /// EAGAIN.
    #[error("{op}: the device is busy switching; try again")]
    TryAgain {
        /// The command.
        op: &'static str,
    },
    /// Any other errno from the control device.
    #[error("{op} failed: {errno}")]
    Ioctl {
        /// The command.
        op: &'static str,
        /// The errno.
        errno: nix::errno::Errno,
    },
    /// A request the library refuses before it reaches the kernel.
    #[error("bad request: {what}")]
    BadRequest {
        /// What was wrong.
        what: String,
    },
    /// The kernel answered something that breaks the ABI.
    #[error("{op}: unexpected answer from the module: {what}")]
    BadReply {
        /// The command.
        op: &'static str,
        /// What was wrong.
        what: String,
    },

    /// A dm table line that does not parse.
    #[error("table line {line}: {what}")]
    TableSyntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// No `[interpose]DEV` in the table.
    #[error("the table has no [interpose]DEV argument; write the interposed device as `[interpose]/dev/sdX` where the target needs it, e.g. `0 SIZE linear [interpose]/dev/sdX 0`")]
    NoInterpose,
    /// Two different interposed devices.
    #[error("the table interposes two devices, {first} and {second}; one interposer interposes one device: create one per device")]
    TwoInterposed {
        /// The first one.
        first: String,
        /// The other one.
        second: String,
    },
    /// A plain argument would send bios back into the interposer.
    #[error("table argument `{arg}` {why} {dev}: its bios would loop back into the interposer; write `[interpose]{dev}` to reach the device beneath it")]
    TableLoops {
        /// The argument as written.
        arg: String,
        /// "is" or "is stacked on".
        why: &'static str,
        /// The interposed device.
        dev: String,
    },
    /// A path that is not a block device.
    #[error("{path} is not a block device")]
    NotBlockDevice {
        /// The path as given.
        path: PathBuf,
    },
    /// A path that does not exist.
    #[error("{path} does not exist")]
    PathNotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// A bare name that is neither a kernel name nor a dm name.
    #[error("`{name}` names no device: there is neither /dev/{name} nor a device-mapper device of that name (see `interposer ls`)")]
    NoSuchName {
        /// The name as given.
        name: String,
    },
    /// A path that cannot be resolved.
    #[error("cannot resolve {path}")]
    Resolve {
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An invalid dm name.
    #[error("invalid device-mapper name `{name}`: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        why: &'static str,
    },

    /// No dm device of that name.
    #[error(
        "there is no device-mapper device named `{name}` (see `interposer ls` or `dmsetup ls`)"
    )]
    DmNotFound {
        /// The name.
        name: String,
    },
    /// `remove` of an attached interposer that is suspended.
    #[error("interposer `{name}` is suspended and holds the bios it took, which taking it off now would strand; resume it first with `dmsetup resume {name}`")]
    InterposerSuspended {
        /// The dm name.
        name: String,
    },
    /// A dm device of that name exists.
    #[error(
        "a device-mapper device named `{name}` already exists; pick another name or remove it"
    )]
    DmExists {
        /// The name.
        name: String,
    },
    /// A dm device that interposes nothing.
    #[error(
        "`{name}` is a device-mapper device but not an interposer; use `dmsetup remove {name}`"
    )]
    NotAnInterposer {
        /// The name.
        name: String,
    },
    /// `/dev/mapper/control` missing or unusable.
    #[error("cannot use device-mapper: {what} ({})", if what.contains("Permission denied") { "run as root" } else { "is dm_mod loaded? `modprobe dm_mod`" })]
    DmUnavailable {
        /// What the devicemapper library said.
        what: String,
    },
    /// A device-mapper ioctl failed.
    #[error("device-mapper {op} `{name}` failed: {what}")]
    Dm {
        /// The operation ("create", "load", ...).
        op: &'static str,
        /// The dm name or device.
        name: String,
        /// What the kernel or the library said.
        what: String,
        /// The errno, when there is one.
        errno: Option<nix::errno::Errno>,
    },
    /// Another I/O failure (mknod, sysfs).
    #[error("{what}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// An era block size dm-era would refuse.
    #[error("invalid era block size of {bytes} bytes: {why}")]
    EraBlockSize {
        /// The size asked for.
        bytes: u64,
        /// Why it is refused.
        why: String,
    },
    /// The metadata device is too small for dm-era.
    #[error("the metadata device {dev} is too small for dm-era: it has {have} bytes, {blocks} era blocks need about {need}; use a bigger metadata device or a bigger --block-size")]
    EraMetadataTooSmall {
        /// The metadata device.
        dev: String,
        /// Its size in bytes.
        have: u64,
        /// About what is needed.
        need: u64,
        /// Era blocks of the device.
        blocks: u64,
    },
    /// The metadata device holds something dm-era would refuse or destroy.
    #[error("the metadata device {dev} {what}; if it may be overwritten, wipe its first 4 KiB: `dd if=/dev/zero of={dev_path} bs=4k count=1 oflag=direct`")]
    EraMetadataForeign {
        /// The metadata device.
        dev: String,
        /// Its path.
        dev_path: String,
        /// What it holds.
        what: String,
    },
    /// The metadata device is the tracked device itself.
    #[error("the metadata device {meta} is {dev} itself, the device it tracks; put the metadata on another device")]
    EraMetadataOnDevice {
        /// The metadata device.
        meta: String,
        /// The tracked device.
        dev: String,
    },
    /// The dm-era metadata could not be read.
    #[error("cannot read the dm-era metadata on {dev}: {source}")]
    EraMetadata {
        /// The metadata device.
        dev: String,
        /// What went wrong.
        source: crate::era::meta::MetaError,
    },
    /// The metadata device is held by someone (another dm-era's slice, a
    /// mount): two writers would destroy each other's metadata.
    #[error("the metadata device {dev} is in use (by another dm-era, a dm table or a mount); give each tracked device its own metadata device")]
    EraMetadataInUse {
        /// The metadata device.
        dev: String,
    },
    /// dm-era metadata without our tracking record: nothing says since
    /// when its eras cover every write.
    #[error("the metadata device {dev} holds dm-era metadata but no tracking record (written by `interposer create` with a raw era table, by an older interposer, or damaged), so its eras cannot be trusted to cover every write; wipe it to start tracking afresh (the next backup must be a full one): `dd if=/dev/zero of={dev_path} bs=4k count=1 oflag=direct`")]
    EraMetadataNoRecord {
        /// The metadata device.
        dev: String,
        /// The path as given.
        dev_path: String,
    },
    /// `era attach --at-boot` found metadata that is not the one `era
    /// enable` recorded: nothing was formatted or written.
    #[error("the metadata device {dev} {why}; `era enable` recorded tracking generation {generation:016x} there, so this is not its metadata (another disk at that path?) and nothing was written to it; check the device, then `interposer era disable` and `era enable` again (the next backup must be a full one)")]
    EraBootMetadata {
        /// The metadata device.
        dev: String,
        /// What it holds instead.
        why: String,
        /// The generation `era enable` recorded.
        generation: u64,
    },
    /// `era enable` of a filesystem that cannot be unmounted before the
    /// boot unit stops.
    #[error("{dev} holds {mountpoint}, which is unmounted only after every unit has stopped: tracking it across reboots needs an initramfs hook, which interposer does not have yet; use `era attach` (each boot begins a new epoch: the first backup after a boot is a full one)")]
    EraEnableSystemMount {
        /// The device.
        dev: String,
        /// Its mount point (`/`, `/usr`).
        mountpoint: String,
    },
    /// `era enable`/`era disable` could not set up the boot unit.
    #[error("cannot {what}: {why}")]
    EraUnit {
        /// What was being done.
        what: String,
        /// Why it failed.
        why: String,
    },
    /// A COW device that holds something, or is in use: a snapshot would
    /// overwrite it.
    #[error("the COW store {cow} {what}; `snapshot create` would overwrite it: give an empty device{}", if *yes_helps { ", or --yes if what it holds may be destroyed" } else { " (a device in use is never taken)" })]
    CowOccupied {
        /// The COW device as given.
        cow: String,
        /// What is there.
        what: String,
        /// Whether `--yes` (SnapshotRequest::overwrite) would take it.
        yes_helps: bool,
    },
    /// A question about the changes since an era that tracking does not
    /// cover without a gap: the answer could be short.  A backup tool
    /// matches this variant (or [`Error::is_tracking_gap`]) and takes a
    /// full backup.
    #[error("cannot list the changes of {dev} since era {since}: {reason}; a list could miss writes, so take a full backup (and a new checkpoint)")]
    EraGap {
        /// The tracked device.
        dev: String,
        /// The checkpoint asked about.
        since: crate::era::Checkpoint,
        /// Why tracking does not cover it.
        reason: crate::era::GapReason,
    },
    /// A backup directory that cannot be used.
    #[error("the backup directory {} {what}", dir.display())]
    BackupDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Another run holds the backup directory's lock.
    #[error("another `interposer backup` (or verify, restore) is using {} (it holds {}/lock); wait for it to finish", dir.display(), dir.display())]
    BackupBusy {
        /// The directory.
        dir: PathBuf,
    },
    /// The backup directory has no such version.
    #[error("{} holds no {}backup: see `ls {}` (a version is complete once its NNNNNN.json exists)", dir.display(), version.map_or_else(String::new, |v| format!("version {v} of a ")), dir.display())]
    BackupNoVersion {
        /// The directory.
        dir: PathBuf,
        /// The version asked for, if one was.
        version: Option<u32>,
    },
    /// A version's manifest, data file or link to its previous version is
    /// not what it should be.
    #[error("backup version {version} in {} is damaged: {what}; restore an older version (--version), and take a full backup (`interposer backup DEV --to {} --full`) so that new versions do not build on it", dir.display(), dir.display())]
    BackupDamaged {
        /// The directory.
        dir: PathBuf,
        /// The first damaged version.
        version: u32,
        /// What is wrong.
        what: String,
    },
    /// Data read back after a copy differs from what was copied.
    #[error("the {length} bytes at offset {offset} of {device} read back from {what} differ from what was copied; nothing was recorded and earlier versions are untouched: check the disks (`dmesg`) and run the backup again")]
    BackupCopyMismatch {
        /// The device backed up.
        device: String,
        /// Byte offset on the device.
        offset: u64,
        /// Bytes.
        length: u64,
        /// Where it was read back from (the snapshot, or the data file).
        what: String,
    },
    /// The snapshot a backup read from was dropped by dm-snapshot.
    #[error("the snapshot `{name}` became invalid during the backup ({reason}); nothing was recorded: give a bigger COW store (--cow, --cow-size), or back up while the device takes fewer writes")]
    BackupSnapshotInvalid {
        /// The snapshot group.
        name: String,
        /// Why, as its status says.
        reason: String,
    },
    /// A version was written, but its snapshot could not be removed.
    #[error("backup version {version} is complete, but removing its snapshot failed: {source}; remove it with `interposer snapshot remove {name}`")]
    BackupSnapshotLeft {
        /// The version written.
        version: u32,
        /// The snapshot group.
        name: String,
        /// Why removing failed.
        source: Box<Error>,
    },
    /// A restore target smaller than the backed-up device.
    #[error("cannot restore to {}: it has {have} bytes, the backup needs {need}; restore to a device at least as big, or to a file", target.display())]
    RestoreTargetTooSmall {
        /// The target.
        target: PathBuf,
        /// Its size.
        have: u64,
        /// The backed-up device's size.
        need: u64,
    },
    /// A restore target that cannot be written.
    #[error("cannot restore to {}: {what}", target.display())]
    RestoreTarget {
        /// The target.
        target: PathBuf,
        /// Why.
        what: String,
    },
    /// No dm-era device tracks that device.
    #[error("{what} has no dm-era interposer; attach one with `interposer era attach {what} --metadata META_DEV`")]
    NoEra {
        /// The device or name as given.
        what: String,
    },
    /// A dm device that is not dm-era.
    #[error("`{name}` is a {target} device, not dm-era (see `dmsetup table {name}`)")]
    NotEra {
        /// The dm name.
        name: String,
        /// Its target type.
        target: String,
    },
    /// dm-era answered a status that does not parse.
    #[error("unexpected dm-era status of `{name}`: `{status}`")]
    EraStatus {
        /// The dm name.
        name: String,
        /// The status line.
        status: String,
    },
    /// A metadata snapshot is held already.
    #[error("`{name}` already holds a metadata snapshot (is era_invalidate or another backup running?); when nothing uses it, drop it with `dmsetup message {name} 0 drop_metadata_snap`")]
    EraSnapHeld {
        /// The dm name.
        name: String,
    },
    /// Another interposer is stacked on the era interposer.
    #[error("`{by}` is stacked on `{name}` and takes the device's bios (a snapshot?); take it away first (`interposer snapshot remove GROUP`, or `interposer remove {by}`)")]
    EraCovered {
        /// The era interposer.
        name: String,
        /// What the device is attached to now.
        by: String,
    },
    /// The metadata snapshot could not be dropped (after `before`, when
    /// reading the changes failed first).
    #[error("{before}dropping the metadata snapshot of `{name}` failed ({drop}): drop it with `dmsetup message {name} 0 drop_metadata_snap`")]
    EraSnapLeft {
        /// The dm name.
        name: String,
        /// `"ERROR; "` when something failed before the drop, else empty.
        before: String,
        /// Why the drop failed.
        drop: Box<Error>,
    },
    /// `snapshot remove`/`ls` of a group that does not exist.
    #[error("there is no snapshot group named `{name}` (see `interposer snapshot ls`)")]
    SnapshotNotFound {
        /// The group name.
        name: String,
    },
    /// The number of `--cow` stores fits neither "one for all" nor "one each".
    #[error("{cows} COW stores for {devices} devices: give one --cow for all of them (it is split into equal slices) or exactly one --cow per device, in the same order")]
    CowCount {
        /// How many COW stores were given.
        cows: usize,
        /// How many devices.
        devices: usize,
    },
    /// A COW store too small for its share.
    #[error("the COW store {cow} leaves {have} sectors for each device, less than {need} (2 MiB: 1 MiB kept zeroed at its start, 1 MiB for copies): use a bigger COW store, one --cow per device, or fewer devices")]
    CowTooSmall {
        /// The COW store.
        cow: String,
        /// Sectors per device.
        have: u64,
        /// The minimum.
        need: u64,
    },
    /// A snapshot is open (mounted) and `remove` would pull its origin away.
    #[error("the snapshot {snapshot} is open (mounted, or read by a backup?): unmount or close it first, then `interposer snapshot remove {name}` again")]
    SnapshotInUse {
        /// The group name.
        name: String,
        /// The snapshot device.
        snapshot: String,
    },
    /// `remove` switched the devices back but could not remove everything.
    #[error("snapshot group {name}: the devices are back on their own, but removing left behind: {}; run `interposer snapshot remove {name}` again, or remove them with dmsetup/losetup", leftovers.join("; "))]
    SnapshotLeftovers {
        /// The group name.
        name: String,
        /// What is left and why.
        leftovers: Vec<String>,
    },
    /// A step failed and undoing the previous steps failed too.
    #[error("{error}; undoing the steps before it failed too, left behind: {}", leftovers.join("; "))]
    UndoFailed {
        /// The error that made us undo.
        error: Box<Error>,
        /// What is left behind and how to remove it.
        leftovers: Vec<String>,
    },
}

/// Why `modprobe blk_interposer` failed, as its output and the kernel log say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModuleLoadCause {
    /// modprobe does not find the module: it is not installed for this kernel.
    NotInstalled,
    /// The kernel refused the module's signature: Secure Boot (lockdown) with
    /// a key that is not enrolled, or no signature.
    SecureBoot,
    /// Not root.
    NotPermitted,
    /// modprobe could not be run.
    NoModprobe,
    /// Anything else.
    Other,
}

/// The README section on installing, signing and enrolling the module.
pub const INSTALL_SECTION: &str = "README.md, section \"Install on your server\"";

impl ModuleLoadCause {
    /// Classify what modprobe printed and what the kernel logged.
    pub fn of(modprobe: &str, kernel_log: &str) -> ModuleLoadCause {
        const REFUSED: &[&str] = &[
            "Key was rejected by service",
            "Required key not available",
            "Lockdown",
            "module verification failed",
        ];
        let text = format!("{modprobe}\n{kernel_log}");
        if REFUSED.iter().any(|r| text.contains(r)) {
            ModuleLoadCause::SecureBoot
        } else if modprobe.contains("not found") {
            ModuleLoadCause::NotInstalled
        } else if modprobe.contains("Operation not permitted") {
            ModuleLoadCause::NotPermitted
        } else {
            ModuleLoadCause::Other
        }
    }

    /// What to do about it, with the commands that work.
    pub fn remedy(self) -> String {
        match self {
            ModuleLoadCause::SecureBoot => format!(
                "Secure Boot refused the module: its signing key is not enrolled. Enrol DKMS's key \
                 with `mokutil --import /var/lib/dkms/mok.pub`, reboot and confirm it in the MOK \
                 manager, then `modprobe blk_interposer` ({INSTALL_SECTION})"
            ),
            ModuleLoadCause::NotInstalled => format!(
                "the module is not installed for this kernel: install the blk-interposer-dkms \
                 package and the kernel's headers (`apt install linux-headers-$(uname -r)`), \
                 then `modprobe blk_interposer` ({INSTALL_SECTION})"
            ),
            ModuleLoadCause::NotPermitted => {
                "run as root (`sudo modprobe blk_interposer`)".to_string()
            }
            ModuleLoadCause::NoModprobe | ModuleLoadCause::Other => {
                "read `dmesg`, then load it with `modprobe blk_interposer`".to_string()
            }
        }
    }
}

impl Error {
    /// Whether this error says that changed-block tracking has a gap, so
    /// that only a full backup is safe.
    pub fn is_tracking_gap(&self) -> bool {
        matches!(self, Error::EraGap { .. })
    }

    /// The errno behind this error, when it came from an ioctl.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        use nix::errno::Errno;
        Some(match self {
            Error::PermissionDenied { .. } => Errno::EPERM,
            Error::VersionMismatch { .. } => Errno::EINVAL,
            Error::UnknownCommand { .. } => Errno::ENOTTY,
            Error::NoLower { .. } | Error::NotAttached { .. } => Errno::ENOENT,
            Error::NoSuchDevice { .. } => Errno::ENXIO,
            Error::LowerExists { .. } | Error::AlreadyAttached { .. } => Errno::EEXIST,
            Error::LowerBusy { .. } | Error::AttachBusy { .. } | Error::HookBusy { .. } => {
                Errno::EBUSY
            }
            Error::FtraceOff { .. } => Errno::EOPNOTSUPP,
            Error::WrongMedium { .. } | Error::BlockSizeTooLarge { .. } => Errno::EMEDIUMTYPE,
            Error::Loop { .. } => Errno::ELOOP,
            Error::InterposerTooSmall { .. } => Errno::ENOSPC,
            Error::TryAgain { .. } => Errno::EAGAIN,
            Error::Ioctl { errno, .. } => *errno,
            Error::Dm { errno, .. } => return *errno,
            _ => return None,
        })
    }
}
