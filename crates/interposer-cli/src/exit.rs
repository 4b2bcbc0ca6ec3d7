//! Exit statuses, and the one place that chooses them from an error.
//!
//! [`Kind`] is the table (documented in `interposer --help`, the man page
//! and the README); [`classify`] walks an error's chain, takes the first
//! [`blk_interposer::Error`] in it (or else the first [`std::io::Error`], by
//! errno) and maps its variant to a kind, with what the failed command left
//! in place when the library says so.

use serde::Serialize;

/// What kind of failure a command had; each has its own exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 1: anything not below (an I/O error, permission, a kernel error).
    Failure,
    /// 2: clap refused the command line.
    Usage,
    /// 3: what was named is not there.
    NotFound,
    /// 4: what was named is busy or in use.
    Busy,
    /// 5: the kernel module is missing, cannot be loaded or does not match.
    Module,
    /// 6: changed-block tracking has a gap: take a full backup.
    TrackingGap,
    /// 7: the request was refused as invalid or unsafe; nothing was done.
    Refused,
}

impl Kind {
    /// Every kind, in the order of their statuses.
    pub const ALL: [Kind; 7] = [
        Kind::Failure,
        Kind::Usage,
        Kind::NotFound,
        Kind::Busy,
        Kind::Module,
        Kind::TrackingGap,
        Kind::Refused,
    ];

    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Kind::Failure => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Busy => 4,
            Kind::Module => 5,
            Kind::TrackingGap => 6,
            Kind::Refused => 7,
        }
    }

    /// The `kind` of the JSON error object.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failure => "failure",
            Kind::Usage => "usage",
            Kind::NotFound => "not_found",
            Kind::Busy => "busy",
            Kind::Module => "module",
            Kind::TrackingGap => "tracking_gap",
            Kind::Refused => "refused",
        }
    }
}

/// The exit statuses, for `interposer --help` (hence the man page); a test
/// checks that it lists every [`Kind`] with its code and name.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success (a closed output pipe, as in `interposer ls | head -1`, is success too)
  1  failure: any other error (I/O, permission, the kernel refused with an errno)
  2  usage: the command line does not parse (a missing argument, a bad size)
  3  not_found: the device, path, dm name, snapshot group or dm-era interposer
     named does not exist, or nothing is interposed or attached there
  4  busy: the device, lower device, metadata or COW device is in use or busy
     (mounted, attached, frozen, suspended, held by another dm device)
  5  module: the blk_interposer module (or dm_mod) is missing, cannot be loaded
     (not installed, Secure Boot refused it) or speaks another ABI
  6  tracking_gap: `era changed` cannot list the changes since that checkpoint
     without a gap: take a full backup
  7  refused: the request was refused as invalid or unsafe (a bad table, not a
     block device, a device that holds data); steps already taken are undone

With --json, an error also prints one object on standard output:
  {\"error\": {\"message\": \"...\", \"kind\": \"busy\", \"exit_code\": 4, \"left_behind\": []}}
`message` is the whole error chain (as on standard error), `left_behind` what
the failed command left in place when it knows (empty otherwise).";

/// What an error means for the exit status and the JSON error object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The kind, hence the exit status.
    pub kind: Kind,
    /// What the failed command left in place, as the library reports it.
    pub left_behind: Vec<String>,
}

/// The JSON error object: `{"error": {"message", "kind", "exit_code", "left_behind"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorReport<'a> {
    /// The error.
    pub error: ErrorBody<'a>,
}

/// The inside of [`ErrorReport`].
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The whole chain, `WHAT: WHY: ...`, as printed on standard error.
    pub message: String,
    /// [`Kind::as_str`].
    pub kind: &'static str,
    /// [`Kind::code`].
    pub exit_code: u8,
    /// [`Classified::left_behind`].
    pub left_behind: &'a [String],
}

impl<'a> ErrorReport<'a> {
    /// The report of an error with message `message`, classified as `c`.
    pub fn new(message: String, c: &'a Classified) -> Self {
        ErrorReport {
            error: ErrorBody {
                message,
                kind: c.kind.as_str(),
                exit_code: c.kind.code(),
                left_behind: &c.left_behind,
            },
        }
    }
}

#[cfg(feature = "bin")]
pub use mapping::{classify, classify_lib};

#[cfg(feature = "bin")]
mod mapping {
    use std::io;

    use blk_interposer::Error;
    use nix::errno::Errno;

    use super::{Classified, Kind};

    /// Classify an error: the first library error in its chain decides, else
    /// the first I/O error (by errno), else it is a [`Kind::Failure`].
    pub fn classify(err: &anyhow::Error) -> Classified {
        for e in err.chain() {
            if let Some(lib) = e.downcast_ref::<Error>() {
                return classify_lib(lib);
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return plain(by_io(io));
            }
        }
        plain(Kind::Failure)
    }

    fn plain(kind: Kind) -> Classified {
        Classified {
            kind,
            left_behind: Vec::new(),
        }
    }

    /// Classify one library error.
    pub fn classify_lib(e: &Error) -> Classified {
        match e {
            Error::UndoFailed { error, leftovers } => Classified {
                kind: classify_lib(error).kind,
                left_behind: leftovers.clone(),
            },
            Error::SnapshotLeftovers { leftovers, .. } => Classified {
                kind: Kind::Failure,
                left_behind: leftovers.clone(),
            },
            Error::EraSnapLeft { name, .. } => Classified {
                kind: Kind::Failure,
                left_behind: vec![format!(
                    "the metadata snapshot of `{name}`: `dmsetup message {name} 0 drop_metadata_snap`"
                )],
            },
            Error::BackupSnapshotLeft { name, .. } => Classified {
                kind: Kind::Failure,
                left_behind: vec![format!(
                    "the snapshot group `{name}`: `interposer snapshot remove {name}`"
                )],
            },
            e => plain(kind_of(e)),
        }
    }

    /// The kind of a library error that left nothing behind.
    fn kind_of(e: &Error) -> Kind {
        if e.is_tracking_gap() {
            return Kind::TrackingGap;
        }
        match e {
            Error::ModuleNotLoaded { .. }
            | Error::ModuleLoad { .. }
            | Error::VersionMismatch { .. }
            | Error::UnknownCommand { .. } => Kind::Module,
            Error::DmUnavailable { what } if !what.contains("Permission denied") => Kind::Module,
            Error::NoLower { .. }
            | Error::NotAttached { .. }
            | Error::NoSuchDevice { .. }
            | Error::DmNotFound { .. }
            | Error::PathNotFound { .. }
            | Error::NoSuchName { .. }
            | Error::NoEra { .. }
            | Error::SnapshotNotFound { .. }
            | Error::BackupNoVersion { .. } => Kind::NotFound,
            Error::LowerExists { .. }
            | Error::HookBusy { .. }
            | Error::AlreadyAttached { .. }
            | Error::LowerBusy { .. }
            | Error::AttachBusy { .. }
            | Error::TryAgain { .. }
            | Error::InterposerSuspended { .. }
            | Error::EraMetadataInUse { .. }
            | Error::EraSnapHeld { .. }
            | Error::EraCovered { .. }
            | Error::SnapshotInUse { .. }
            | Error::BackupBusy { .. } => Kind::Busy,
            Error::CowOccupied { yes_helps, .. } => {
                if *yes_helps {
                    Kind::Refused
                } else {
                    Kind::Busy
                }
            }
            Error::BadRequest { .. }
            | Error::WrongMedium { .. }
            | Error::BlockSizeTooLarge { .. }
            | Error::Loop { .. }
            | Error::InterposerTooSmall { .. }
            | Error::TableSyntax { .. }
            | Error::NoInterpose
            | Error::TwoInterposed { .. }
            | Error::TableLoops { .. }
            | Error::NotBlockDevice { .. }
            | Error::InvalidName { .. }
            | Error::DmExists { .. }
            | Error::NotAnInterposer { .. }
            | Error::EraBlockSize { .. }
            | Error::EraMetadataTooSmall { .. }
            | Error::EraMetadataForeign { .. }
            | Error::EraMetadataOnDevice { .. }
            | Error::EraMetadataNoRecord { .. }
            | Error::EraBootMetadata { .. }
            | Error::EraEnableSystemMount { .. }
            | Error::NotEra { .. }
            | Error::CowCount { .. }
            | Error::CowTooSmall { .. }
            | Error::BackupDir { .. }
            | Error::RestoreTargetTooSmall { .. }
            | Error::RestoreTarget { .. } => Kind::Refused,
            Error::Resolve { source, .. } | Error::Io { source, .. } => by_io(source),
            Error::Ioctl { errno, .. }
            | Error::Dm {
                errno: Some(errno), ..
            } => by_errno(*errno),
            // ControlOpen, PermissionDenied, FtraceOff, BadReply, EraMetadata,
            // EraStatus, and any variant added to the library later: add a new
            // one above when it belongs to a kind (the enum is non_exhaustive).
            _ => Kind::Failure,
        }
    }

    fn by_io(e: &io::Error) -> Kind {
        match e.raw_os_error() {
            Some(n) => by_errno(Errno::from_raw(n)),
            None if e.kind() == io::ErrorKind::NotFound => Kind::NotFound,
            None => Kind::Failure,
        }
    }

    fn by_errno(errno: Errno) -> Kind {
        match errno {
            Errno::ENOENT | Errno::ENXIO | Errno::ENODEV => Kind::NotFound,
            Errno::EBUSY => Kind::Busy,
            _ => Kind::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let mut codes: Vec<u8> = Kind::ALL.iter().map(|k| k.code()).collect();
        codes.dedup();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7]);
        for k in Kind::ALL {
            let line = format!("  {}  {}", k.code(), k.as_str());
            assert!(EXIT_STATUS_HELP.contains(&line), "{line}");
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::from(k.as_str())
            );
        }
    }

    #[test]
    fn the_json_error_object_has_its_shape() {
        let c = Classified {
            kind: Kind::Busy,
            left_behind: vec!["dm device x".into()],
        };
        let v = serde_json::to_value(ErrorReport::new("cannot x: busy".into(), &c)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "message": "cannot x: busy",
                "kind": "busy",
                "exit_code": 4,
                "left_behind": ["dm device x"],
            }})
        );
    }

    #[cfg(feature = "bin")]
    mod mapping {
        use std::io;
        use std::path::PathBuf;

        use anyhow::Context;
        use blk_interposer::{Error, ModuleLoadCause};
        use nix::errno::Errno;

        use super::super::*;

        fn kind(e: Error) -> Kind {
            let e = Err::<(), _>(e).context("cannot do it").unwrap_err();
            classify(&e).kind
        }

        #[test]
        fn library_errors_map_by_variant() {
            let dev = || "/dev/vdb (254:16)".to_string();
            assert_eq!(
                kind(Error::ModuleLoad {
                    path: "/dev/blk-interposer".into(),
                    detail: "Key was rejected by service".into(),
                    cause: ModuleLoadCause::SecureBoot,
                }),
                Kind::Module
            );
            assert_eq!(
                kind(Error::ModuleNotLoaded {
                    path: "/dev/blk-interposer".into()
                }),
                Kind::Module
            );
            assert_eq!(kind(Error::DmNotFound { name: "x".into() }), Kind::NotFound);
            assert_eq!(
                kind(Error::PathNotFound {
                    path: "/nonexistent".into()
                }),
                Kind::NotFound
            );
            assert_eq!(kind(Error::NoSuchName { name: "x".into() }), Kind::NotFound);
            assert_eq!(kind(Error::NoLower { dev: dev() }), Kind::NotFound);
            assert_eq!(kind(Error::LowerBusy { dev: dev() }), Kind::Busy);
            assert_eq!(
                kind(Error::AlreadyAttached {
                    dev: dev(),
                    by: None
                }),
                Kind::Busy
            );
            assert_eq!(
                kind(Error::NotBlockDevice {
                    path: "/etc/passwd".into()
                }),
                Kind::Refused
            );
            assert_eq!(kind(Error::NoInterpose), Kind::Refused);
            assert_eq!(
                kind(Error::BlockSizeTooLarge {
                    dev: dev(),
                    interposer: "/dev/dm-1 (253:1)".into(),
                    dev_block: "512-byte".into(),
                    interposer_block: "4096-byte".into(),
                }),
                Kind::Refused
            );
            assert_eq!(
                kind(Error::EraGap {
                    dev: dev(),
                    since: "3".parse().unwrap(),
                    reason: blk_interposer::GapReason::Ended { era: 9 },
                }),
                Kind::TrackingGap
            );
            assert_eq!(
                kind(Error::Ioctl {
                    op: "DETACH",
                    errno: Errno::EIO
                }),
                Kind::Failure
            );
            assert_eq!(kind(Error::PermissionDenied { op: "LIST" }), Kind::Failure);
            for (what, k) in [
                (
                    "/dev/mapper/control: No such file or directory",
                    Kind::Module,
                ),
                ("/dev/mapper/control: Permission denied", Kind::Failure),
            ] {
                assert_eq!(kind(Error::DmUnavailable { what: what.into() }), k);
            }
            assert_eq!(
                kind(Error::Dm {
                    op: "remove",
                    name: "x".into(),
                    what: "busy".into(),
                    errno: Some(Errno::EBUSY),
                }),
                Kind::Busy
            );
            for (yes_helps, k) in [(true, Kind::Refused), (false, Kind::Busy)] {
                let e = Error::CowOccupied {
                    cow: "/dev/vdc".into(),
                    what: "is in use".into(),
                    yes_helps,
                };
                assert_eq!(kind(e), k);
            }
        }

        #[test]
        fn io_errors_map_by_errno() {
            let missing = Error::Resolve {
                path: PathBuf::from("/nonexistent"),
                source: io::Error::from_raw_os_error(nix::libc::ENOENT),
            };
            assert_eq!(kind(missing), Kind::NotFound);
            let e = anyhow::Error::new(io::Error::from_raw_os_error(nix::libc::EBUSY))
                .context("cannot read the table file t");
            assert_eq!(classify(&e).kind, Kind::Busy);
            let e = anyhow::Error::new(io::Error::from(io::ErrorKind::NotFound));
            assert_eq!(classify(&e).kind, Kind::NotFound);
            assert_eq!(classify(&anyhow::anyhow!("no table")).kind, Kind::Failure);
        }

        #[test]
        fn what_is_left_behind_comes_from_the_library() {
            let e = Error::UndoFailed {
                error: Box::new(Error::AttachBusy {
                    dev: "/dev/vdb".into(),
                    interposer: "/dev/dm-0".into(),
                }),
                leftovers: vec!["dm device vdb-lin: `dmsetup remove vdb-lin`".into()],
            };
            let e = Err::<(), _>(e)
                .context("cannot create interposer vdb-lin")
                .unwrap_err();
            assert_eq!(
                classify(&e),
                Classified {
                    kind: Kind::Busy,
                    left_behind: vec!["dm device vdb-lin: `dmsetup remove vdb-lin`".into()],
                }
            );
            let e = Error::SnapshotLeftovers {
                name: "bk".into(),
                leftovers: vec!["bk-vdb1-cow: busy".into()],
            };
            assert_eq!(
                classify_lib(&e).left_behind,
                ["bk-vdb1-cow: busy".to_string()]
            );
            assert!(classify_lib(&Error::NoInterpose).left_behind.is_empty());
            let e = Error::EraSnapLeft {
                name: "vdb1-era".into(),
                before: String::new(),
                drop: Box::new(Error::TryAgain { op: "message" }),
            };
            assert_eq!(
                classify_lib(&e).left_behind,
                ["the metadata snapshot of `vdb1-era`: `dmsetup message vdb1-era 0 drop_metadata_snap`"]
            );
            let e = Error::BackupSnapshotLeft {
                version: 3,
                name: "backup-vdb1".into(),
                source: Box::new(Error::TryAgain { op: "remove" }),
            };
            assert_eq!(
                classify_lib(&e).left_behind,
                ["the snapshot group `backup-vdb1`: `interposer snapshot remove backup-vdb1`"]
            );
            let dir = PathBuf::from("/backup/vdb1");
            assert_eq!(kind(Error::BackupBusy { dir: dir.clone() }), Kind::Busy);
            assert_eq!(
                kind(Error::BackupNoVersion {
                    dir,
                    version: Some(9)
                }),
                Kind::NotFound
            );
        }
    }
}
