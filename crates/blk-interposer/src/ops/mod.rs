//! Orchestration: the policy of putting an interposer on a live device and
//! taking it away again, over the [`Kernel`], [`DeviceMapper`] and [`Host`]
//! traits.  Every step undoes the ones before it when it fails.

mod attach;
mod create;
mod era;
mod list;
#[cfg(test)]
pub(crate) mod mock;
mod remove;
pub mod snapshot;

pub use attach::SwitchReport;
pub use create::CreateReport;
pub use era::{EraAttachReport, EraChanges, EraCheckpoint, EraInfo};
pub use list::Entry;
pub use remove::RemoveReport;
pub use snapshot::{
    CowStore, SnapState, SnapshotGroup, SnapshotMember, SnapshotRemoveReport, SnapshotRequest,
};

use crate::ctl::Control;
use crate::dm::{DeviceMapper, Dm};
use crate::error::Result;
use crate::host::{Host, System};
use crate::kernel::Kernel;

/// The three things the orchestration drives.
#[derive(Debug)]
pub struct Ops<K, D, H> {
    /// The blk_interposer module.
    pub kernel: K,
    /// Device-mapper.
    pub dm: D,
    /// Device nodes and sysfs.
    pub host: H,
}

impl Ops<Control, Dm, System> {
    /// The real system: opens `/dev/blk-interposer` (an error says to load
    /// the module) and `/dev/mapper/control` (an error shows at first use).
    pub fn system() -> Result<Self> {
        Ok(Ops {
            kernel: Control::open()?,
            dm: Dm::open(),
            host: System,
        })
    }
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Build from parts (tests, or other implementations of the traits).
    pub fn new(kernel: K, dm: D, host: H) -> Self {
        Ops { kernel, dm, host }
    }

    /// `/dev/vdb` when sysfs knows the device, `MAJ:MIN` otherwise.
    fn device_label(&self, dev: crate::DevNo) -> String {
        self.host
            .kernel_name(dev)
            .map_or_else(|| dev.to_string(), |n| format!("/dev/{n}"))
    }
}

#[cfg(test)]
mod tests;
