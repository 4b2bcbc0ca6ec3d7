//! Orchestration: the policy of putting an interposer on a live device and
//! taking it away again, over the [`Kernel`], [`DeviceMapper`] and [`Host`]
//! traits.  Every step undoes the ones before it when it fails.

mod attach;
mod create;
mod era;
mod era_boot;
mod list;
#[cfg(test)]
pub(crate) mod mock;
mod remove;
pub mod snapshot;

pub use attach::SwitchReport;
pub use create::CreateReport;
pub use era::{EraAttachReport, EraBoot, EraChanges, EraCheckpoint, EraInfo, EraShutdown};
pub use era_boot::{EraDisableReport, EraEnableReport};
pub use list::Entry;
pub use remove::RemoveReport;
pub use snapshot::{
    choose_chunk, cow_worst_case, CowStore, SnapState, SnapshotGroup, SnapshotMember,
    SnapshotRemoveReport, SnapshotRequest, COW_RESERVED, LARGE_CHUNK, SMALL_CHUNK,
};

use crate::ctl::Control;
use crate::dm::{DeviceMapper, Dm};
use std::path::Path;

use crate::error::{Error, Result};
use crate::host::{DeviceSpec, Host, System};
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

    /// The device an interposed-device argument names ([`DeviceSpec`]): a
    /// path or `MAJ:MIN`; a bare name is the dm name of an interposer (the
    /// device it interposes), else a kernel name (`vdb1` for `/dev/vdb1`),
    /// else the dm device of that name itself.
    pub fn resolve_device(&self, what: &Path) -> Result<crate::DevNo> {
        self.resolve_spec(what, true)
    }

    /// The device any other device argument names (an interposer, a
    /// metadata or COW device): a path or `MAJ:MIN`; a bare name is a
    /// kernel name, else a dm name.
    pub fn resolve_any(&self, what: &Path) -> Result<crate::DevNo> {
        self.resolve_spec(what, false)
    }

    fn resolve_spec(&self, what: &Path, through_interposer: bool) -> Result<crate::DevNo> {
        let name = match DeviceSpec::parse(what) {
            DeviceSpec::Name(name) => name,
            DeviceSpec::DevNo(d) => return Ok(d),
            DeviceSpec::Path(p) => return self.host.resolve(&p),
        };
        let dm_dev = self.dm.devno(&name)?;
        if let (true, Some(dm_dev)) = (through_interposer, dm_dev) {
            if let Some((s, _)) = self.find_interposed(dm_dev)? {
                return Ok(s.dev);
            }
        }
        match self.host.resolve(&Path::new("/dev").join(&name)) {
            Err(Error::PathNotFound { .. }) => dm_dev.ok_or(Error::NoSuchName { name }),
            resolved => resolved,
        }
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
