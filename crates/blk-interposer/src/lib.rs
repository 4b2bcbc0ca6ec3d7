//! Put a device-mapper stack on a **live** block device, and take it away
//! again, with the `blk_interposer` kernel module.
//!
//! The module redirects every bio aimed at a device (say `/dev/vdb`) to an
//! *interposer*, a dm device, and gives each interposed device a *lower
//! device* (`/dev/interposer/vdb`) through which the dm table reaches the
//! live device beneath the interposer.  In a table, `[interpose]/dev/vdb`
//! names that path; this crate rewrites it to the lower device's `MAJ:MIN`.
//!
//! # Layers
//!
//! - [`abi`]: `#[repr(C)]` mirror of `kmod/include/uapi/blk_interposer.h`.
//! - [`Control`]: the control device `/dev/blk-interposer`; implements
//!   [`Kernel`] with errno mapped into [`Error`].
//! - [`dm`]: [`Table`] parsing with [`InterposePath`], the loop checks, and
//!   [`DeviceMapper`] with its real implementation [`Dm`].
//! - [`Host`]: device nodes and sysfs ([`System`]).
//! - [`Ops`]: the orchestration (create, remove, list, info, switch, and
//!   point-in-time snapshots in [`ops::snapshot`], changed-block tracking
//!   with dm-era, see [`era`]) over the three traits;
//! - [`backup`]: full and incremental backups of a live device into a
//!   directory of chained, verified versions; restore;
//!   every step undoes the ones before it when it fails.
//!
//! # Call order
//!
//! ```no_run
//! use blk_interposer::{Ops, Table};
//! # fn main() -> Result<(), blk_interposer::Error> {
//! let ops = Ops::system()?; // opens /dev/blk-interposer and /dev/mapper/control
//! let table: Table = "0 2048 linear [interpose]/dev/vdb 0".parse()?;
//! // 1. resolve /dev/vdb  2. LOWER_CREATE (or reuse)  3. rewrite the table
//! // 4. dm create + load + resume  5. /dev/mapper/vdb-lin  6. ATTACH
//! let report = ops.create("vdb-lin", &table)?;
//! println!("{} now goes through {}", report.device, report.name);
//! // DETACH, dm remove, LOWER_REMOVE when nothing else uses it.
//! ops.remove("vdb-lin")?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod abi;
pub mod backup;
pub mod ctl;
pub mod dm;
pub mod era;
pub mod error;
pub mod host;
pub mod kernel;
pub mod ops;
pub mod sysfs;
pub mod types;

pub use backup::{BackupReport, BackupRequest, GroupBackupRequest, Progress};
pub use ctl::Control;
pub use dm::{DeviceMapper, Dm, DmDevice, InterposePath, Table, TableLine};
pub use era::{Checkpoint, GapReason};
pub use error::{Error, ModuleLoadCause, Result};
pub use host::{DeviceSpec, Host, System};
pub use kernel::{Counters, Kernel, Lower, State, Status, Switch};
pub use ops::{
    choose_chunk, cow_worst_case, CowStore, CreateReport, Entry, EraAttachReport, EraBoot,
    EraChanges, EraCheckpoint, EraDisableReport, EraEnableReport, EraInfo, EraShutdown, Ops,
    RemoveReport, SnapState, SnapshotGroup, SnapshotMember, SnapshotRemoveReport, SnapshotRequest,
    SwitchReport, LARGE_CHUNK, SMALL_CHUNK,
};
pub use types::{DevNo, Sectors, Version};
