//! The command line, declared with clap derive.  Doc comments are the help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Put a device-mapper stack on a live block device, and take it away again.
///
/// `interposer` redirects every bio aimed at a device (a mounted disk or
/// partition) to a device-mapper device, without unmounting it.  In the dm
/// table, `[interpose]/dev/X` names the device X itself, beneath the
/// interposer: the one path through which the table reaches the live device.
#[derive(Debug, Parser)]
#[command(name = "interposer", version, arg_required_else_help = true)]
#[command(after_long_help = EXAMPLES)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

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

  interposer ls                 # what is interposed, by what
  interposer remove vdb-lin     # back to the plain device, still mounted

Requires the blk_interposer kernel module (`modprobe blk_interposer`) and root.";

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
    #[command(arg_required_else_help = true)]
    Remove(RemoveArgs),

    /// List interposed devices: their lower device, interposer, state and counters.
    #[command(visible_alias = "list")]
    Ls,

    /// Show one interposed device.
    ///
    /// Name it by its path (/dev/vdb, /dev/disk/by-id/...), MAJ:MIN, kernel
    /// name (vdb) or by the dm name of its interposer (vdb-lin).
    #[command(visible_alias = "status", arg_required_else_help = true)]
    Info(InfoArgs),

    /// Low level: redirect DEVICE's bios to an existing INTERPOSER device.
    ///
    /// `create` does this for you.  Use it when you build the dm device
    /// yourself: its table must reach DEVICE through the lower device
    /// /dev/interposer/NAME (created here if missing), never through DEVICE.
    /// The kernel refuses an interposer that is DEVICE itself, on its disk,
    /// a lower device, smaller than DEVICE, or that leads back to it.
    #[command(arg_required_else_help = true)]
    Attach(AttachArgs),

    /// Low level: stop redirecting DEVICE's bios; the dm device and the
    /// lower device stay (`remove` takes all three away).
    #[command(arg_required_else_help = true)]
    Detach(DetachArgs),

    /// Changed-block tracking with dm-era, live: attach, checkpoint, changed, detach.
    #[command(arg_required_else_help = true, after_long_help = ERA_EXAMPLES)]
    Era(EraArgs),

    /// Show the versions of this tool, its ABI and the loaded module.
    Version,
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

DEVICE is the tracked device (/dev/vdb1 or vdb1) or the dm name of its era
interposer (vdb1-era).";

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
    /// Put dm-era on the live DEVICE: `era META [interpose]DEVICE BLOCK`.
    ///
    /// The metadata device must be zeroed (dm-era formats it) or hold dm-era
    /// metadata of the same block size (the eras go on).  The interposer is
    /// named DEVICE-era (vdb1-era) unless --name says otherwise.
    #[command(arg_required_else_help = true)]
    Attach(EraAttachArgs),

    /// Start a new era and print its number: every block written from now
    /// on is in that era or later (give it to `changed --since`).
    #[command(arg_required_else_help = true)]
    Checkpoint(EraDeviceArgs),

    /// Print the byte ranges written in era SINCE or later.
    ///
    /// One `OFFSET LENGTH` line (bytes) per range of changed era blocks, a
    /// summary on standard error; --json gives the ranges in era blocks and
    /// bytes.  The answer is what `era_invalidate --written-since SINCE`
    /// lists: a metadata snapshot is taken (it starts a new era), dm-era's
    /// metadata read from its device, and the snapshot dropped again.
    #[command(arg_required_else_help = true)]
    Changed(EraChangedArgs),

    /// Show the current era, the block size and the metadata use.
    #[command(arg_required_else_help = true)]
    Status(EraDeviceArgs),

    /// Take the era interposer away (live); its metadata stays on its device.
    #[command(arg_required_else_help = true)]
    Detach(EraDeviceArgs),
}

/// `era attach`.
#[derive(Debug, Args)]
pub struct EraAttachArgs {
    /// The device to track (/dev/vdb1).
    pub device: PathBuf,
    /// The device for dm-era's metadata (zeroed, or dm-era's own).
    #[arg(long, short, value_name = "META_DEV")]
    pub metadata: PathBuf,
    /// Era block size: a multiple of 4 KiB (4k, 64k, 1m).
    #[arg(long, short, default_value = "64k", value_parser = parse_bytes)]
    pub block_size: u64,
    /// Name of the dm-era device (default: DEVICE-era).
    #[arg(long)]
    pub name: Option<String>,
}

/// `era checkpoint|status|detach`.
#[derive(Debug, Args)]
pub struct EraDeviceArgs {
    /// The tracked device (/dev/vdb1, vdb1) or its era interposer's dm name.
    pub device: String,
}

/// `era changed`.
#[derive(Debug, Args)]
pub struct EraChangedArgs {
    /// The tracked device (/dev/vdb1, vdb1) or its era interposer's dm name.
    pub device: String,
    /// The era from `checkpoint`: list what was written in it or later.
    #[arg(long, value_name = "ERA")]
    pub since: u32,
}

/// A size in bytes: `65536`, `64k`, `64KiB`, `1m`, `1M`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 64k or 65536"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use k, m or g)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too big"))
}

/// `attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The device whose bios are redirected (/dev/vdb).
    pub device: PathBuf,
    /// The device that takes them (/dev/mapper/NAME or /dev/dm-N).
    pub interposer: PathBuf,
}

/// `detach`.
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// The interposed device (/dev/vdb).
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
    /// The dm name of the interposer.
    pub name: String,
}

/// `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// /dev/X, MAJ:MIN, a kernel name, or the interposer's dm name.
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

    #[test]
    fn era_verbs_parse() {
        let c = parse(&[
            "era",
            "attach",
            "/dev/vdb1",
            "--metadata",
            "/dev/vdd",
            "--block-size",
            "1m",
        ])
        .unwrap();
        let Command::Era(EraArgs {
            command: EraCommand::Attach(a),
        }) = c.command
        else {
            panic!()
        };
        assert_eq!(
            (a.block_size, a.metadata, a.name),
            (1 << 20, PathBuf::from("/dev/vdd"), None)
        );
        let c = parse(&["era", "attach", "vdb1", "-m", "/dev/vdd"]).unwrap();
        let Command::Era(EraArgs {
            command: EraCommand::Attach(a),
        }) = c.command
        else {
            panic!()
        };
        assert_eq!(a.block_size, 65536, "64k by default");
        let c = parse(&["era", "changed", "vdb1", "--since", "3", "--json"]).unwrap();
        assert!(c.json);
        let Command::Era(EraArgs {
            command: EraCommand::Changed(a),
        }) = c.command
        else {
            panic!()
        };
        assert_eq!((a.device.as_str(), a.since), ("vdb1", 3));
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
    fn sizes_parse() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("2M"), Ok(2 << 20));
        assert!(parse_bytes("64q").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("k").is_err());
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
}
