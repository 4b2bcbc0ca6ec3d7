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

  # Changed-block tracking with dm-era, metadata on /dev/vdc:
  interposer create vdb-era --table \"0 $(blockdev --getsz /dev/vdb) era /dev/vdc [interpose]/dev/vdb 128\"

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

    /// Show the versions of this tool, its ABI and the loaded module.
    Version,
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
    /// DEVICE=INTERPOSER or DEVICE=none, at most 64.
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
