//! The command line, declared with clap derive.  Doc comments are the help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::size::parse_size;

/// Put a device-mapper stack on a live block device, and take it away again.
///
/// `interposer` redirects every bio aimed at a device (a mounted disk or
/// partition) to a device-mapper device, without unmounting it.  In the dm
/// table, `[interpose]/dev/X` names the device X itself, beneath the
/// interposer: the one path through which the table reaches the live device.
#[derive(Debug, Parser)]
#[command(name = "interposer", version, arg_required_else_help = true)]
#[command(after_long_help = format!("{EXAMPLES}\n\n{}", crate::exit::EXIT_STATUS_HELP))]
pub struct Cli {
    /// Print machine-readable JSON instead of text (an error too: see Exit
    /// status in --help).
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors: no report of what was done, no notes.  Data (ls,
    /// info, era checkpoint/changed/status, snapshot ls/info, version, and any
    /// --json output) is still printed.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show debug lines on standard error: ours and those of the
    /// devicemapper crate (dm devices created, loaded, resumed, removed);
    /// -vv adds trace lines.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  # Put a linear mapping on the live /dev/vdb (it stays mounted):
  echo \"0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0\" | interposer create vdb-lin

  # Changed-block tracking with dm-era, metadata on /dev/vdc (see `interposer era --help`):
  interposer era attach /dev/vdb --metadata /dev/vdc

  # A point-in-time snapshot of two mounted partitions, for a backup:
  interposer snapshot create --name bk --cow /dev/vdc /dev/vdb1 /dev/vdb2

  interposer ls                 # what is interposed, by what
  interposer remove vdb-lin     # back to the plain device, still mounted

Needs root.  The blk_interposer kernel module is loaded on first use (the
tool runs `modprobe blk_interposer` once when /dev/blk-interposer is missing);
when that fails the error says why (not installed for this kernel, Secure Boot
refused its signature) and the exit status is 5.";

const CREATE_EXAMPLES: &str = "\
Examples:
  echo \"0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0\" | interposer create vdb-lin
  interposer create vdb-lin --table \"0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0\"
  interposer create sda2-era era.table      # a table file; `-` reads standard input";

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a dm device from a table with `[interpose]DEV` and put it on DEV.
    ///
    /// The table comes from --table, from TABLE_FILE, or from standard input,
    /// like `dmsetup create`: one `START LENGTH TARGET ARGS...` line per target,
    /// blank lines and `#` comments ignored.  Exactly one device may appear as
    /// `[interpose]DEV` (as often as the table needs it); it is rewritten to
    /// DEV's lower device.  The dm device is created and live before any bio
    /// is redirected; if a step fails the steps before it are undone.
    #[command(arg_required_else_help = true, after_long_help = CREATE_EXAMPLES)]
    Create(CreateArgs),

    /// Take interposer NAME off its device and remove it.
    ///
    /// Detaches (the filesystem is frozen, new bios held and those in flight
    /// drained), removes the dm device, then the lower device unless
    /// something else still uses it.
    ///
    /// NAME is the dm name `create` was given (see `interposer ls`), or the
    /// device it is attached to (/dev/vdb, MAJ:MIN, vdb); a snapshot group's
    /// devices go with `snapshot remove`, dm-era with `era detach`.
    #[command(arg_required_else_help = true, after_long_help = REMOVE_EXAMPLES)]
    Remove(RemoveArgs),

    /// List interposed devices: their lower device, interposer, state and counters.
    #[command(visible_alias = "list", after_long_help = LS_EXAMPLES)]
    Ls,

    /// Show one interposed device.
    ///
    /// Name it by its path (/dev/vdb, /dev/disk/by-id/...), MAJ:MIN, kernel
    /// name (vdb) or by the dm name of its interposer (vdb-lin).
    #[command(
        visible_alias = "status",
        arg_required_else_help = true,
        after_long_help = INFO_EXAMPLES
    )]
    Info(InfoArgs),

    /// Low level: redirect DEVICE's bios to an existing INTERPOSER device.
    ///
    /// `create` does this for you.  Use it when you build the dm device
    /// yourself: its table must reach DEVICE through the lower device
    /// /dev/interposer/NAME (created here if missing), never through DEVICE.
    /// The kernel refuses an interposer that is DEVICE itself, on its disk,
    /// a lower device, smaller than DEVICE, or that leads back to it.
    #[command(arg_required_else_help = true, after_long_help = ATTACH_EXAMPLES)]
    Attach(AttachArgs),

    /// Low level: stop redirecting DEVICE's bios; the dm device and the
    /// lower device stay (`remove` takes all three away).
    #[command(arg_required_else_help = true, after_long_help = DETACH_EXAMPLES)]
    Detach(DetachArgs),

    /// Changed-block tracking with dm-era, live: attach, checkpoint, changed, detach.
    #[command(arg_required_else_help = true, after_long_help = ERA_EXAMPLES)]
    Era(EraArgs),
    /// Low level: move several devices at one point in time.
    ///
    /// Each MOVE is DEVICE=INTERPOSER (redirect DEVICE's bios there; an
    /// attached DEVICE moves straight from its old interposer, with no moment
    /// of direct I/O) or DEVICE=none (back to DEVICE itself).  The kernel
    /// freezes every filesystem and holds every device's new bios before any
    /// of them switches, then releases them all: the devices share one point
    /// in time.  All or nothing: if one move is refused, nothing changes.
    #[command(arg_required_else_help = true, after_long_help = SWITCH_EXAMPLES)]
    Switch(SwitchArgs),

    /// Point-in-time snapshots of live devices, for backups.
    #[command(subcommand, after_long_help = SNAPSHOT_EXAMPLES)]
    Snapshot(SnapshotCommand),

    /// Back up a live device: a full image first, then only what changed.
    ///
    /// Takes an era checkpoint (when `interposer era attach` tracks DEVICE),
    /// then a snapshot, and copies from the snapshot into the next version
    /// in DIR: a sparse full image the first time, later only the ranges
    /// written since the previous version's checkpoint.  Without tracking,
    /// after a gap in it (a detach, a crash, another metadata device, a
    /// resized device), or with --full, it copies everything and says why.
    /// What it copied is read back from the snapshot and from DIR and
    /// compared (SHA-256) before the version's manifest is written; the
    /// snapshot is removed.  Earlier versions are never written to: a run
    /// that fails leaves them as they were.
    #[command(
        arg_required_else_help = true,
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_long_help = BACKUP_EXAMPLES
    )]
    Backup(BackupArgs),

    /// Show the versions of this tool, its ABI and the loaded module.
    ///
    /// The module's ABI is asked from /dev/blk-interposer (loading the
    /// module first if it is missing); when it does not answer, the line
    /// says why and the status is still 0.
    #[command(after_long_help = VERSION_EXAMPLES)]
    Version,
}

const REMOVE_EXAMPLES: &str = "\
Examples:
  interposer remove vdb-lin              # /dev/vdb stays mounted, on its own again
  interposer --json remove vdb-lin       # the report as JSON";

const LS_EXAMPLES: &str = "\
Examples:
  interposer ls
  interposer ls --json | jq -r '.[] | select(.state == \"attached\") | .device'";

const INFO_EXAMPLES: &str = "\
Examples:
  interposer info /dev/vdb
  interposer info vdb-lin                # by its interposer's dm name
  interposer info 254:16 --json

The device is a path (/dev/vdb, /dev/disk/by-id/...), MAJ:MIN (254:16), a
kernel name (vdb) or the dm name of its interposer (vdb-lin).";

const ATTACH_EXAMPLES: &str = "\
Examples:
  # Build the dm device yourself, on the lower device, then redirect /dev/vdb to it:
  interposer create vdb-lin --table \"0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0\"
  interposer detach /dev/vdb
  interposer attach /dev/vdb /dev/mapper/vdb-lin
  interposer attach vdb vdb-lin          # the same, by kernel and dm name

DEVICE is a path, MAJ:MIN, a kernel name or the dm name of its interposer;
INTERPOSER a path, MAJ:MIN, a kernel name (dm-3) or a dm name.";

const DETACH_EXAMPLES: &str = "\
Examples:
  interposer detach /dev/vdb             # bios go to /dev/vdb itself again
  interposer detach vdb-lin              # the device that vdb-lin interposes
  interposer remove vdb-lin              # then take the dm and lower device away";

const SNAPSHOT_EXAMPLES: &str = "\
Examples:
  interposer snapshot create --name bk --cow /dev/vdc /dev/vdb1 /dev/vdb2
  interposer snapshot ls
  interposer snapshot info bk
  interposer snapshot remove bk

See `interposer snapshot create --help` for a whole backup.";

const VERSION_EXAMPLES: &str = "\
Examples:
  interposer version
  interposer version --json | jq -r .module     # null when the module does not answer";

const BACKUP_EXAMPLES: &str = "\
Examples:
  interposer era attach /dev/sdb1 --metadata /dev/sdc1    # once: track the writes
  interposer backup /dev/sdb1 --to /backup/sdb1 --cow /dev/sdd   # 1st: full; then incremental
  interposer backup verify /backup/sdb1
  interposer backup restore /backup/sdb1 --to /dev/sde1 --version 3
  interposer backup restore /backup/sdb1 --to /var/tmp/sdb1.img  # a sparse image file

  # No spare disk for the COW store: a file elsewhere, on a loop device:
  interposer backup /dev/sdb1 --to /backup/sdb1 --cow-file /var/tmp/bk.cow --cow-size 2G

  # Two devices at one point in time (a database's data and log), into
  # /backup/db/sdb1 and /backup/db/sdc1, one COW store split between them:
  interposer backup /dev/sdb1 /dev/sdc1 --to /backup/db --cow /dev/sdd

  # A full image into another backup tool:
  interposer backup /dev/sdb1 --stdout --cow /dev/sdd | restic backup --stdin --stdin-filename sdb1.img

DIR holds 000001.full.img, 000002.delta, ... each with its manifest
NNNNNN.json; a version exists once its manifest does.  --json prints one JSON
object per line: progress events, then the report.";

/// `backup`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("dest").required(true).args(["to", "stdout"]))]
pub struct BackupArgs {
    /// Verify or restore a backup directory.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,

    /// The live device to back up (mounted or not).  Several: backed up
    /// at one point in time (one snapshot group), each into DIR/<kernel
    /// name> (DIR/sdb1, DIR/sdc1).
    #[arg(value_name = "DEVICE", required = true, num_args = 1..)]
    pub device: Vec<PathBuf>,

    /// The backup directory (made if missing).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,

    /// Write a full raw image to standard output instead (no directory, no
    /// versions); progress goes to standard error.
    #[arg(long)]
    pub stdout: bool,

    /// Where the snapshot's copy-on-write data goes.
    #[command(flatten)]
    pub cow: CowArgs,

    /// Copy everything, even when an incremental backup is possible.
    #[arg(long, conflicts_with = "stdout")]
    pub full: bool,

    /// Keep the snapshot after a successful backup (the output names it);
    /// remove it with `interposer snapshot remove NAME`.
    #[arg(long, conflicts_with = "stdout")]
    pub keep_snapshot: bool,

    /// Snapshot group name [default: backup-<kernel name of each DEVICE, joined by ->].
    #[arg(long)]
    pub name: Option<String>,

    /// Overwrite a --cow device although it holds a filesystem, an LVM PV
    /// or a partition table (blkid).  A device in use is refused anyway.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

const BACKUP_VERIFY_EXAMPLES: &str = "\
Examples:
  interposer backup verify /backup/sdb1              # every version
  interposer backup verify /backup/sdb1 --version 3  # what a restore of version 3 reads
  interposer --json backup verify /backup/sdb1";

const BACKUP_RESTORE_EXAMPLES: &str = "\
Examples:
  interposer backup restore /backup/sdb1 --to /dev/sde1              # the newest version
  interposer backup restore /backup/sdb1 --to /dev/sde1 --version 2
  interposer backup restore /backup/sdb1 --to /var/tmp/sdb1.img      # a sparse image file";

/// `backup verify|restore`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup directory: every data file against the checksums of
    /// its manifest, every version's link to the one it builds on.
    ///
    /// Fails naming the first damaged version.  Needs neither root nor the
    /// kernel module.
    #[command(arg_required_else_help = true, after_long_help = BACKUP_VERIFY_EXAMPLES)]
    Verify(BackupVerifyArgs),

    /// Write a version (default: the newest) to a device or a file.
    ///
    /// Checks the versions it needs first (like `verify --version N`), then
    /// writes the full version they build on and applies each incremental
    /// in order.  A block device must be at least as big as the backed-up
    /// device and not in use; any other path becomes a sparse image file
    /// (replaced if it exists).
    #[command(arg_required_else_help = true, after_long_help = BACKUP_RESTORE_EXAMPLES)]
    Restore(BackupRestoreArgs),
}

/// `backup verify`.
#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// The backup directory.
    pub dir: PathBuf,

    /// Only the versions a restore of version N reads [default: all].
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
}

/// `backup restore`.
#[derive(Debug, Args)]
pub struct BackupRestoreArgs {
    /// The backup directory.
    pub dir: PathBuf,

    /// The block device or file to write.
    #[arg(long, value_name = "TARGET")]
    pub to: PathBuf,

    /// The version to restore [default: the newest].
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
}

const ERA_EXAMPLES: &str = "\
Examples:
  # Track the writes to the mounted /dev/vdb1 in 64 KiB blocks, metadata on /dev/vdd:
  interposer era attach /dev/vdb1 --metadata /dev/vdd --block-size 64k
  E=$(interposer era checkpoint vdb1)    # a new era starts; remember its number
  # ... the device is written ...
  interposer era changed vdb1 --since $E          # OFFSET LENGTH (bytes) per changed range
  interposer era changed vdb1 --since $E --json   # ranges in era blocks and bytes
  interposer era status vdb1
  interposer era detach vdb1             # the metadata stays on /dev/vdd

DEVICE is the tracked device (a path, MAJ:MIN or a kernel name: /dev/vdb1,
vdb1) or the dm name of its era interposer (vdb1-era).";

/// `era`.
#[derive(Debug, Args)]
pub struct EraArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EraCommand,
}

/// The era verbs.
#[derive(Debug, Subcommand)]
pub enum EraCommand {
    /// Put dm-era on the live DEVICE: `era META-SLICE [interpose]DEVICE BLOCK`.
    ///
    /// The metadata device must be zeroed (dm-era formats it) or hold dm-era
    /// metadata of the same block size that an earlier `era attach` made
    /// (the eras go on).  dm-era gets all of it but the last 64 KiB, which
    /// hold the tracking record: since which checkpoint every write was
    /// tracked.  Each attach starts tracking anew: writes made while nothing
    /// tracked them are in no era, so `changed --since` refuses checkpoints
    /// taken before the attach.  The interposer is named DEVICE-era
    /// (vdb1-era) unless --name says otherwise.
    #[command(arg_required_else_help = true, after_long_help = ERA_ATTACH_EXAMPLES)]
    Attach(EraAttachArgs),

    /// Start a new era and print the checkpoint, ERA@GENERATION: every block
    /// written from now on is in that era or later (give it to `changed
    /// --since`; the generation ties it to this formatting of the metadata).
    #[command(arg_required_else_help = true, after_long_help = ERA_CHECKPOINT_EXAMPLES)]
    Checkpoint(EraDeviceArgs),

    /// Print the byte ranges written since checkpoint SINCE.
    ///
    /// One `OFFSET LENGTH` line (bytes) per range of changed era blocks, a
    /// summary on standard error; --json gives the ranges in era blocks and
    /// bytes.  The answer is what `era_invalidate --written-since ERA`
    /// lists: a metadata snapshot is taken (it starts a new era), dm-era's
    /// metadata read from its device, and the snapshot dropped again.  When
    /// tracking has a gap since SINCE (a detach and attach, another metadata
    /// generation, another device, dm-era off the device's path) it fails
    /// instead of printing a list that could be short: take a full backup
    /// (exit status 6).
    #[command(arg_required_else_help = true, after_long_help = ERA_CHANGED_EXAMPLES)]
    Changed(EraChangedArgs),

    /// Show the current era, the block size and the metadata use.
    #[command(arg_required_else_help = true, after_long_help = ERA_STATUS_EXAMPLES)]
    Status(EraDeviceArgs),

    /// Take the era interposer away (live); its metadata stays on its device.
    #[command(arg_required_else_help = true, after_long_help = ERA_DETACH_EXAMPLES)]
    Detach(EraDetachArgs),

    /// Track DEVICE on every boot: attach dm-era now and enable
    /// interposer-era@DEVICE.service.
    ///
    /// The unit attaches dm-era early in every boot, before fsck and every
    /// local mount (`era attach --at-boot`), and detaches it at shutdown
    /// after the filesystem is unmounted (`era detach --shutdown`).  A
    /// clean reboot is then no gap: `changed --since` answers for
    /// checkpoints of the boots before.  A crash, a stop while the
    /// filesystem is mounted, or a device whose first or last 64 KiB changed
    /// between the shutdown and the boot (mounted elsewhere, reformatted)
    /// begins a new epoch: the next backup is a full one.  Both devices are
    /// named by a stable path (/dev/disk/by-id/...) where the host has one.
    /// The device holding / or /usr is refused (that needs an initramfs
    /// hook).
    #[command(arg_required_else_help = true, after_long_help = ERA_ENABLE_EXAMPLES)]
    Enable(EraEnableArgs),

    /// Stop tracking DEVICE at boot: disable and stop its unit (dm-era is
    /// detached now) and remove the unit's drop-in.
    #[command(arg_required_else_help = true, after_long_help = ERA_DISABLE_EXAMPLES)]
    Disable(EraDeviceArgs),
}

const ERA_ENABLE_EXAMPLES: &str = "\
Examples:
  interposer era enable /dev/sdb1 --metadata /dev/sdc1
  systemctl status 'interposer-era@*'    # the unit, started now and at every boot
  interposer era disable /dev/sdb1";

const ERA_DISABLE_EXAMPLES: &str = "\
Examples:
  interposer era disable /dev/sdb1       # the metadata stays; `era enable` again goes on";

const ERA_ATTACH_EXAMPLES: &str = "\
Examples:
  interposer era attach /dev/vdb1 --metadata /dev/vdd              # 64 KiB blocks
  interposer era attach vdb1 -m /dev/disk/by-id/virtio-meta -b 1M --name data-era

DEVICE is a path, MAJ:MIN or a kernel name; META_DEV a path, MAJ:MIN, a kernel
name or a dm name.";

const ERA_CHECKPOINT_EXAMPLES: &str = "\
Examples:
  E=$(interposer era checkpoint vdb1)    # prints ERA@GENERATION, e.g. 12@3f9a1c02d4e5b6a7
  interposer era checkpoint vdb1-era --json";

const ERA_CHANGED_EXAMPLES: &str = "\
Examples:
  interposer era changed vdb1 --since \"$E\"            # OFFSET LENGTH (bytes) per line
  interposer -q era changed vdb1 --since \"$E\"         # without the summary on stderr
  interposer era changed vdb1 --since \"$E\" --json
  # In a backup script, status 6 means: take a full backup.
  interposer era changed vdb1 --since \"$E\" >ranges; rc=$?
  [ $rc -eq 6 ] && echo \"tracking gap since $E: full backup\"";

const ERA_STATUS_EXAMPLES: &str = "\
Examples:
  interposer era status vdb1
  interposer era status vdb1-era --json";

const ERA_DETACH_EXAMPLES: &str = "\
Examples:
  interposer era detach vdb1             # the metadata stays on its device
  interposer era attach vdb1 -m /dev/vdd # later: the eras go on (changes since an
                                         # earlier checkpoint are refused: a gap)";

/// `era attach`.
#[derive(Debug, Args)]
pub struct EraAttachArgs {
    /// The device to track: a path (/dev/vdb1), MAJ:MIN or a kernel name (vdb1).
    pub device: PathBuf,
    /// The device for dm-era's metadata (zeroed, or dm-era's own): a path,
    /// MAJ:MIN, a kernel name or a dm name.
    #[arg(long, short, value_name = "META_DEV")]
    pub metadata: PathBuf,
    /// Era block size: a multiple of 4 KiB (4K, 64K, 1M, 1.5M).  K, M, G,
    /// T are binary (KiB, MiB, GiB, TiB); `s` is 512-byte sectors and a
    /// bare number is bytes.
    #[arg(long, short, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
    pub block_size: u64, // in 512-byte sectors, as parse_size gives them
    /// Name of the dm-era device (default: DEVICE-era).
    #[arg(long)]
    pub name: Option<String>,
    /// For the boot unit: the metadata must hold tracking generation
    /// GENERATION (16 hex digits; a blank or other device is refused, never
    /// formatted); go on from the last boot's clean shutdown when nothing
    /// wrote since; succeed when already attached with this metadata.
    #[arg(long, value_name = "GENERATION", value_parser = generation, conflicts_with = "name")]
    pub at_boot: Option<u64>,
}

/// `era enable`.
#[derive(Debug, Args)]
pub struct EraEnableArgs {
    /// The device to track: a path (/dev/sdb1, /dev/disk/by-id/...), MAJ:MIN
    /// or a kernel name (sdb1).
    pub device: PathBuf,
    /// The device for dm-era's metadata (zeroed, or dm-era's own from an
    /// earlier `era attach` of DEVICE).
    #[arg(long, short, value_name = "META_DEV")]
    pub metadata: PathBuf,
    /// Era block size, as for `era attach` (taken from dm-era when it is
    /// attached already).
    #[arg(long, short, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
    pub block_size: u64, // in 512-byte sectors, as parse_size gives them
}

/// `era detach`.
#[derive(Debug, Args)]
pub struct EraDetachArgs {
    /// The tracked device (a path, MAJ:MIN, a kernel name: /dev/vdb1, vdb1)
    /// or its era interposer's dm name (vdb1-era).
    pub device: String,
    /// For the boot unit's stop: when nobody holds the device any more (the
    /// filesystem was unmounted), end tracking as a clean shutdown that the
    /// next boot's `attach --at-boot` can go on from.
    #[arg(long)]
    pub shutdown: bool,
}

/// 16 hex digits, as `era checkpoint` prints a generation.
fn generation(s: &str) -> Result<u64, String> {
    if s.len() != 16 {
        return Err(format!("`{s}` is not a tracking generation: 16 hex digits"));
    }
    u64::from_str_radix(s, 16)
        .map_err(|_| format!("`{s}` is not a tracking generation: 16 hex digits"))
}

/// `era checkpoint|status|detach`.
#[derive(Debug, Args)]
pub struct EraDeviceArgs {
    /// The tracked device (a path, MAJ:MIN, a kernel name: /dev/vdb1, vdb1)
    /// or its era interposer's dm name (vdb1-era).
    pub device: String,
}

/// `era changed`.
#[derive(Debug, Args)]
pub struct EraChangedArgs {
    /// The tracked device (a path, MAJ:MIN, a kernel name: /dev/vdb1, vdb1)
    /// or its era interposer's dm name (vdb1-era).
    pub device: String,
    /// The checkpoint (ERA@GENERATION, or a bare ERA) from `checkpoint`:
    /// list what was written since.
    #[arg(long, value_name = "CHECKPOINT", value_parser = checkpoint)]
    pub since: String,
}

/// `ERA@GENERATION` (16 hex digits) or a bare `ERA`, checked here so that a
/// typo gets clap's usage error; the library parses it into its Checkpoint.
fn checkpoint(s: &str) -> Result<String, String> {
    let (era, generation) = s.split_once('@').unwrap_or((s, "0000000000000000"));
    let ok = era.parse::<u32>().is_ok()
        && generation.len() == 16
        && generation.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a checkpoint: give what `interposer era checkpoint` printed, ERA@GENERATION (e.g. 12@3f9a1c02d4e5b6a7), or a bare era"
        ))
    }
}

const SWITCH_EXAMPLES: &str = "\
Examples:
  # Move /dev/vdb from its interposer to another dm device built over /dev/interposer/vdb:
  interposer switch /dev/vdb=/dev/mapper/vdb-new
  # Attach two partitions at one point in time:
  interposer switch /dev/vdb1=/dev/mapper/a /dev/vdb2=/dev/mapper/b
  # Detach both at one point in time:
  interposer switch /dev/vdb1=none /dev/vdb2=none";

/// `switch`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// DEVICE=INTERPOSER or DEVICE=none, at most 64.  DEVICE is a path,
    /// MAJ:MIN, a kernel name or the dm name of its interposer; INTERPOSER a
    /// path, MAJ:MIN, a kernel name or a dm name.
    #[arg(required = true, value_name = "MOVE", value_parser = parse_move)]
    pub moves: Vec<(PathBuf, Option<PathBuf>)>,
}

fn parse_move(s: &str) -> Result<(PathBuf, Option<PathBuf>), String> {
    let (dev, to) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not DEVICE=INTERPOSER or DEVICE=none"))?;
    if dev.is_empty() || to.is_empty() {
        return Err(format!("`{s}`: both sides of `=` must name something"));
    }
    let to = (to != "none").then(|| PathBuf::from(to));
    Ok((PathBuf::from(dev), to))
}

const SNAPSHOT_CREATE_EXAMPLES: &str = "\
Examples:
  # Both partitions at one point in time, COW on /dev/vdc (split in two):
  interposer snapshot create --name bk --cow /dev/vdc /dev/vdb1 /dev/vdb2
  mount -o ro,noload /dev/mapper/bk-vdb1-snap /backup     # ext4; XFS: -o ro,nouuid,norecovery
  dd if=/dev/mapper/bk-vdb2-snap of=/backup/vdb2.img bs=1M
  umount /backup && interposer snapshot remove bk

  # No spare disk: a 2 GiB COW file on another filesystem, via a loop device:
  interposer snapshot create --name bk --cow-file /var/tmp/bk.cow --cow-size 2G /dev/sda2

Size the COW store for the writes the devices take while the snapshot lives:
each chunk written for the first time is copied once.  When it is full the
snapshot becomes invalid (`interposer snapshot ls` says so); the devices keep
working.";

/// `snapshot` verbs.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot live DEVICEs at one point in time.
    ///
    /// Per device: a slice of the COW store, a dm `snapshot` to read
    /// (/dev/mapper/NAME-DEV-snap) and a `snapshot-origin` that takes the
    /// device's bios from now on.  Once all are ready one switch moves every
    /// device onto its origin with all their filesystems frozen: that is the
    /// point in time.  A device already interposed (e.g. by dm-era) keeps its
    /// interposer: the snapshot stacks on top of it.  If a step fails the
    /// steps before it are undone.
    #[command(arg_required_else_help = true, after_long_help = SNAPSHOT_CREATE_EXAMPLES)]
    Create(SnapshotCreateArgs),

    /// List snapshot groups: devices, snapshot paths, COW use, state.
    #[command(visible_alias = "list", after_long_help = SNAPSHOT_LS_EXAMPLES)]
    Ls,

    /// Show one snapshot group: its devices, snapshots, COW use and state.
    #[command(arg_required_else_help = true, after_long_help = SNAPSHOT_INFO_EXAMPLES)]
    Info(SnapshotNameArgs),

    /// Take snapshot group NAME away; the devices stay mounted.
    ///
    /// Switches every device back (to itself, or to the interposer it had),
    /// then removes the snapshots, origins, COW slices, the loop device and
    /// COW file that `create --cow-file` made, and unused lower devices.
    /// Refused while a snapshot is mounted.  Works on an invalid
    /// (overflowed) snapshot too.
    #[command(arg_required_else_help = true, after_long_help = SNAPSHOT_REMOVE_EXAMPLES)]
    Remove(SnapshotRemoveArgs),
}

const SNAPSHOT_LS_EXAMPLES: &str = "\
Examples:
  interposer snapshot ls                 # STATE says `invalid` when a COW store overflowed
  interposer snapshot ls --json";

const SNAPSHOT_INFO_EXAMPLES: &str = "\
Examples:
  interposer snapshot info bk
  interposer snapshot info bk --json | jq '.devices[].cow_used_percent'";

const SNAPSHOT_REMOVE_EXAMPLES: &str = "\
Examples:
  umount /backup && interposer snapshot remove bk
  interposer snapshot remove snap-vdb1   # the default name of `snapshot create /dev/vdb1`";

/// `snapshot remove`.
#[derive(Debug, Args)]
pub struct SnapshotRemoveArgs {
    /// The snapshot group's name (`--name` of create; see `interposer snapshot ls`).
    pub name: String,
}

/// `snapshot info`.
#[derive(Debug, Args)]
pub struct SnapshotNameArgs {
    /// The snapshot group's name (`--name` of create; see `interposer snapshot ls`).
    pub name: String,
}

/// The COW store of a snapshot: `snapshot create`, `backup`.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("store").required(true).args(["cow", "cow_file"]))]
pub struct CowArgs {
    /// COW block device (a path, MAJ:MIN, a kernel name or a dm name): once
    /// for all DEVICEs (split into equal slices) or once per DEVICE, in the
    /// same order.  Its contents are overwritten.
    #[arg(long, value_name = "DEV")]
    pub cow: Vec<PathBuf>,

    /// COW file to create (it must not exist) on a loop device; removed
    /// with the snapshot.  Keep it off the snapshotted devices.
    #[arg(long, value_name = "PATH", requires = "cow_size")]
    pub cow_file: Option<PathBuf>,

    /// Size of --cow-file: 512M, 1.5G, 4096s (sectors), or a bare number of
    /// bytes.  K, M, G, T are binary (KiB, MiB, GiB, TiB); the size must be
    /// a whole number of 512-byte sectors.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cow_file")]
    pub cow_size: Option<u64>,
}

/// `snapshot create`.
#[derive(Debug, Args)]
pub struct SnapshotCreateArgs {
    /// The devices to snapshot (mounted or not): each a path, MAJ:MIN, a
    /// kernel name, or the dm name of the interposer it has.
    #[arg(required = true, value_name = "DEVICE")]
    pub devices: Vec<PathBuf>,

    /// Group name, the prefix of the dm names [default: snap-<first DEVICE>].
    #[arg(long)]
    pub name: Option<String>,

    /// Where the copy-on-write data goes.
    #[command(flatten)]
    pub cow: CowArgs,

    /// Chunk: the unit copied before a first write (power of two, >= 4K;
    /// K, M are binary: KiB, MiB).  Default: 64K when a device's COW slice
    /// can hold every chunk of the device (no workload can overflow it;
    /// fewer, larger copies cost the application less), else 4K (the least
    /// COW per scattered 4 KiB write).  `create` says which it chose.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: Option<u64>,

    /// Keep the exception store's metadata on the COW store too (`P`),
    /// committed every few copies: costs the application 12-52 % of its
    /// write IOPS while copying (measured), and nothing here reassembles a
    /// snapshot after a reboot.  Default: in memory (`N`).
    #[arg(long, conflicts_with = "transient")]
    pub persistent: bool,

    /// Metadata in memory (`N`): the default; kept for scripts.
    #[arg(long, hide = true)]
    pub transient: bool,

    /// Overwrite a --cow device although it holds a filesystem, an LVM PV
    /// or a partition table (blkid).  A device in use is refused anyway.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The device whose bios are redirected: a path (/dev/vdb), MAJ:MIN, a
    /// kernel name (vdb) or the dm name of its interposer.
    pub device: PathBuf,
    /// The device that takes them: a path (/dev/mapper/NAME, /dev/dm-N),
    /// MAJ:MIN, a kernel name (dm-3) or a dm name.
    pub interposer: PathBuf,
}

/// `detach`.
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// The interposed device: a path (/dev/vdb), MAJ:MIN, a kernel name
    /// (vdb) or the dm name of its interposer (vdb-lin).
    pub device: PathBuf,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new dm device (/dev/mapper/NAME).
    pub name: String,

    /// Read the table from this file ("-" for standard input).
    #[arg(conflicts_with = "table")]
    pub table_file: Option<PathBuf>,

    /// A table line; repeat for more lines.
    #[arg(long, value_name = "LINE")]
    pub table: Vec<String>,
}

/// `remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The dm name of the interposer, as `create` was given it (vdb-lin),
    /// or the device it is attached to (/dev/vdb, 254:16, vdb).
    pub name: String,
}

/// `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The device: a path (/dev/vdb, /dev/disk/by-id/...), MAJ:MIN, a kernel
    /// name (vdb) or the dm name of its interposer (vdb-lin).
    pub what: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("interposer").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_takes_table_lines_a_file_or_stdin() {
        let c = parse(&[
            "create",
            "vdb-lin",
            "--table",
            "0 8 linear [interpose]/dev/vdb 0",
        ])
        .unwrap();
        let Command::Create(a) = c.command else {
            panic!()
        };
        assert_eq!(
            (a.name.as_str(), a.table.len(), a.table_file),
            ("vdb-lin", 1, None)
        );
        let c = parse(&["--json", "create", "x", "t.txt"]).unwrap();
        assert!(c.json);
        let Command::Create(a) = c.command else {
            panic!()
        };
        assert_eq!(a.table_file, Some(PathBuf::from("t.txt")));
        let Command::Create(a) = parse(&["create", "x"]).unwrap().command else {
            panic!()
        };
        assert!(a.table.is_empty() && a.table_file.is_none());
        assert!(parse(&["create", "x", "t.txt", "--table", "0 8 zero"]).is_err());
    }

    #[test]
    fn verbs_need_their_input() {
        for args in [&[][..], &["create"], &["remove"], &["info"]] {
            let e = parse(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
                "{args:?}"
            );
        }
    }

    /// The era verb `args` parse to.
    fn era(args: &[&str]) -> EraCommand {
        match parse(args).unwrap().command {
            Command::Era(EraArgs { command }) => command,
            _ => panic!("{args:?} is not an era verb"),
        }
    }

    #[test]
    fn era_verbs_parse() {
        let EraCommand::Attach(a) = era(&[
            "era",
            "attach",
            "/dev/vdb1",
            "--metadata",
            "/dev/vdd",
            "--block-size",
            "1m",
        ]) else {
            panic!()
        };
        assert_eq!(
            (a.block_size, a.metadata, a.name),
            (2048, PathBuf::from("/dev/vdd"), None)
        );
        let EraCommand::Attach(a) = era(&["era", "attach", "vdb1", "-m", "/dev/vdd"]) else {
            panic!()
        };
        assert_eq!(a.block_size, 128, "64K by default");
        assert_eq!(a.at_boot, None);
        // The boot unit's command line.
        let EraCommand::Attach(a) = era(&[
            "era",
            "attach",
            "/dev/disk/by-id/x",
            "--metadata",
            "/dev/disk/by-id/m",
            "--block-size",
            "65536",
            "--at-boot",
            "3f9a1c02d4e5b6a7",
        ]) else {
            panic!()
        };
        assert_eq!(
            (a.block_size, a.at_boot),
            (128, Some(0x3f9a_1c02_d4e5_b6a7))
        );
        for bad in ["3f9a", "3f9a1c02d4e5b6ag"] {
            let e = parse(&["era", "attach", "x", "-m", "y", "--at-boot", bad]).unwrap_err();
            assert!(
                e.to_string()
                    .contains("is not a tracking generation: 16 hex digits"),
                "{e}"
            );
        }
        let EraCommand::Detach(a) = era(&["era", "detach", "--shutdown", "/dev/vdc"]) else {
            panic!()
        };
        assert!(a.shutdown);
        let EraCommand::Enable(a) = era(&["era", "enable", "/dev/vdc", "-m", "/dev/vdd"]) else {
            panic!()
        };
        assert_eq!((a.block_size, a.metadata), (128, PathBuf::from("/dev/vdd")));
        assert!(parse(&["era", "enable", "/dev/vdc", "-m", "/dev/vdd", "--name", "x"]).is_err());
        let EraCommand::Disable(a) = era(&["era", "disable", "vdc"]) else {
            panic!()
        };
        assert_eq!(a.device, "vdc");
        assert!(
            parse(&["era", "changed", "vdb1", "--since", "3", "--json"])
                .unwrap()
                .json
        );
        let EraCommand::Changed(a) = era(&["era", "changed", "vdb1", "--since", "3"]) else {
            panic!()
        };
        assert_eq!((a.device.as_str(), a.since.as_str()), ("vdb1", "3"));
        let EraCommand::Changed(a) =
            era(&["era", "changed", "vdb1", "--since", "7@3f9a1c02d4e5b6a7"])
        else {
            panic!()
        };
        assert_eq!(a.since, "7@3f9a1c02d4e5b6a7");
        let e = parse(&["era", "changed", "vdb1", "--since", "7@xyz"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a checkpoint"), "{e}");
        assert!(
            parse(&["era", "changed", "vdb1"]).is_err(),
            "--since is needed"
        );
        assert!(
            parse(&["era", "attach", "vdb1"]).is_err(),
            "--metadata is needed"
        );
    }

    #[test]
    fn json_is_global_and_aliases_work() {
        assert!(parse(&["ls", "--json"]).unwrap().json);
        assert!(matches!(parse(&["list"]).unwrap().command, Command::Ls));
        let Command::Info(a) = parse(&["status", "/dev/vdb"]).unwrap().command else {
            panic!()
        };
        assert_eq!(a.what, "/dev/vdb");
        assert!(matches!(
            parse(&["version"]).unwrap().command,
            Command::Version
        ));
        assert!(parse(&["remove", "a", "b"]).is_err());
    }

    /// The `snapshot create` arguments `args` (after `snapshot create`) parse to.
    fn snapshot_create(args: &[&str]) -> SnapshotCreateArgs {
        let all: Vec<&str> = ["snapshot", "create"].iter().chain(args).copied().collect();
        match parse(&all).unwrap().command {
            Command::Snapshot(SnapshotCommand::Create(a)) => a,
            _ => panic!("{args:?} is not snapshot create"),
        }
    }

    #[test]
    fn snapshot_create_needs_devices_and_one_kind_of_cow() {
        let a = snapshot_create(&["--cow", "/dev/vdc", "/dev/vdb1", "/dev/vdb2"]);
        assert_eq!(a.devices.len(), 2);
        assert_eq!(
            (a.chunk_size, a.persistent, a.transient, a.name),
            (None, false, false, None)
        );
        let a = snapshot_create(&[
            "--cow-file",
            "/x",
            "--cow-size",
            "64M",
            "--chunk-size",
            "64K",
            "--transient",
            "--name",
            "bk",
            "/dev/vdb",
        ]);
        assert_eq!(
            (a.cow.cow_size, a.chunk_size, a.transient),
            (Some(131072), Some(128), true)
        );
        let a = snapshot_create(&["--cow", "/c", "--persistent", "/d"]);
        assert!(a.persistent);
        for bad in [
            &["snapshot", "create", "/dev/vdb"][..],
            &["snapshot", "create", "--cow", "/dev/vdc"],
            &["snapshot", "create", "--cow-file", "/x", "/dev/vdb"],
            &[
                "snapshot",
                "create",
                "--cow",
                "/c",
                "--persistent",
                "--transient",
                "/d",
            ],
            &[
                "snapshot",
                "create",
                "--cow",
                "/c",
                "--cow-file",
                "/x",
                "--cow-size",
                "1M",
                "/d",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse(&["snapshot", "ls", "--json"]).unwrap().command,
            Command::Snapshot(SnapshotCommand::Ls)
        ));
    }

    #[test]
    fn every_size_option_takes_decimal_sizes() {
        let a = snapshot_create(&[
            "--cow-file",
            "/x",
            "--cow-size",
            "1.5G",
            "--chunk-size",
            "4096",
            "/dev/vdb",
        ]);
        assert_eq!((a.cow.cow_size, a.chunk_size), (Some(3 << 20), Some(8)));
        let EraCommand::Attach(a) = era(&["era", "attach", "vdb1", "-m", "vdd", "-b", "128s"])
        else {
            panic!()
        };
        assert_eq!(a.block_size, 128);
        let e = parse(&["era", "attach", "vdb1", "-m", "vdd", "-b", "1.3K"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("512-byte sectors"), "{e}");
    }

    #[test]
    fn quiet_and_verbose_are_global() {
        let c = parse(&["ls", "-q"]).unwrap();
        assert!(c.quiet && c.verbose == 0);
        assert_eq!(parse(&["-vv", "ls"]).unwrap().verbose, 2);
        let c = parse(&["era", "status", "vdb1", "--verbose"]).unwrap();
        assert_eq!((c.quiet, c.verbose), (false, 1));
        let e = parse(&["-q", "-v", "ls"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let c = parse(&["--quiet", "--json", "ls"]).unwrap();
        assert!(c.quiet && c.json);
    }

    #[test]
    fn top_help_has_the_exit_statuses_and_no_modprobe_chore() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(crate::exit::EXIT_STATUS_HELP), "{help}");
        assert!(help.contains("loaded on first use"), "{help}");
        assert!(!help.contains("Requires the blk_interposer kernel module"));
    }

    #[test]
    fn every_verb_and_sub_verb_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, seen: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub.get_after_long_help().map(ToString::to_string);
                assert!(
                    help.as_deref().is_some_and(|h| h.contains("Examples:\n  ")),
                    "`{path} --help` has no examples"
                );
                seen.push(path.clone());
                walk(sub, &path, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&Cli::command(), "interposer", &mut seen);
        for verb in [
            "create",
            "remove",
            "ls",
            "info",
            "attach",
            "detach",
            "switch",
            "version",
            "era attach",
            "era checkpoint",
            "era changed",
            "era status",
            "era detach",
            "snapshot create",
            "snapshot ls",
            "snapshot info",
            "snapshot remove",
        ] {
            assert!(
                seen.contains(&format!("interposer {verb}")),
                "{verb}: {seen:?}"
            );
        }
        let top = Cli::command().render_long_help().to_string();
        assert!(top.contains("Examples:"), "{top}");
    }

    #[test]
    fn snapshot_remove_and_info_take_the_group_name() {
        let mut cmd = Cli::command();
        let snap = cmd.find_subcommand_mut("snapshot").unwrap();
        for verb in ["remove", "info"] {
            let help = snap
                .find_subcommand_mut(verb)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("<NAME>"), "{help}");
            assert!(help.contains("The snapshot group's name"), "{help}");
        }
        let Command::Snapshot(SnapshotCommand::Info(a)) =
            parse(&["snapshot", "info", "bk"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(a.name, "bk");
    }

    #[test]
    fn backup_takes_a_device_or_a_verb() {
        let Command::Backup(a) =
            parse(&["backup", "/dev/sdb1", "--to", "/bk", "--cow", "/dev/sdd"])
                .unwrap()
                .command
        else {
            panic!()
        };
        assert!(a.command.is_none() && !a.full && !a.stdout);
        assert_eq!(a.device, [PathBuf::from("/dev/sdb1")]);
        // Several devices: one group at one point in time.
        let Command::Backup(a) = parse(&[
            "backup",
            "/dev/sdb1",
            "/dev/sdc1",
            "--to",
            "/bk",
            "--cow",
            "/dev/sdd",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(
            a.device,
            [PathBuf::from("/dev/sdb1"), PathBuf::from("/dev/sdc1")]
        );
        let e = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(e(&["backup", "/dev/sdb1", "--cow", "/dev/sdd"]).contains("--to <DIR>"));
        assert!(e(&["backup", "/dev/sdb1", "--to", "/bk"]).contains("--cow <DEV>"));
        assert!(e(&[
            "backup",
            "/dev/sdb1",
            "--to",
            "/bk",
            "--stdout",
            "--cow",
            "x"
        ])
        .contains("cannot be used with"));
        let Command::Backup(a) = parse(&[
            "backup",
            "/dev/sdb1",
            "--stdout",
            "--cow-file",
            "/var/tmp/c",
            "--cow-size",
            "1G",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!((a.stdout, a.cow.cow_size), (true, Some(2 << 20)));
        let Command::Backup(a) = parse(&[
            "backup",
            "restore",
            "/bk",
            "--to",
            "/dev/sde1",
            "--version",
            "3",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let Some(BackupCommand::Restore(r)) = a.command else {
            panic!()
        };
        assert_eq!((r.to, r.version), (PathBuf::from("/dev/sde1"), Some(3)));
        let Command::Backup(a) = parse(&["backup", "verify", "/bk"]).unwrap().command else {
            panic!()
        };
        assert!(matches!(a.command, Some(BackupCommand::Verify(_))));
        assert!(
            parse(&["backup", "restore", "/bk"]).is_err(),
            "--to is needed"
        );
    }
}
