//! `remove NAME`: detach, remove the dm device, remove the lower device when
//! nothing else uses it.

use std::path::Path;

use serde::Serialize;

use crate::dm::DeviceMapper;
use crate::error::{Error, Result};
use crate::host::{mapper_path, DeviceSpec, Host};
use crate::kernel::Kernel;
use crate::ops::Ops;
use crate::types::DevNo;

/// What `remove` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    /// The dm name.
    pub name: String,
    /// The device it interposed, e.g. `/dev/vdb`.
    pub device: String,
    /// Its number.
    pub dev: DevNo,
    /// The dm device's number.
    pub dm_dev: DevNo,
    /// Whether it was attached (and so was detached now).
    pub detached: bool,
    /// Whether we removed a `/dev/mapper/NAME` node (no udev).
    pub node_removed: bool,
    /// The lower device, e.g. `/dev/interposer/vdb`.
    pub lower: String,
    /// Whether the lower device was removed.
    pub lower_removed: bool,
    /// Why it was kept, when it was.
    pub lower_kept: Option<String>,
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// The dm name `remove` takes away: `what` itself when a dm device has
    /// that name, else the interposer attached to the device `what` names.
    fn named_interposer(&self, what: &str) -> Result<String> {
        let bare = matches!(DeviceSpec::parse(Path::new(what)), DeviceSpec::Name(_));
        if bare && self.dm.devno(what)?.is_some() {
            return Ok(what.into());
        }
        let dev = match self.resolve_any(Path::new(what)) {
            Err(Error::NoSuchName { .. }) => return Err(Error::DmNotFound { name: what.into() }),
            resolved => resolved?,
        };
        let interposer = self
            .kernel
            .status(dev)?
            .interposer
            .ok_or_else(|| Error::NotAttached {
                dev: self.device_label(dev),
            })?;
        self.dm
            .name_of(interposer)?
            .ok_or_else(|| Error::DmNotFound {
                name: interposer.to_string(),
            })
    }

    /// Take interposer `name` off its device: detach (the filesystem is
    /// frozen, bios held and the ones in flight drained by the module), then
    /// remove the dm device, then the lower device unless something else
    /// uses it.
    ///
    /// `name` is the interposer's dm name, or the device it is attached to
    /// (a path, `MAJ:MIN` or kernel name).
    pub fn remove(&self, name: &str) -> Result<RemoveReport> {
        let name = self.named_interposer(name)?;
        let name = name.as_str();
        let dm_dev = self
            .dm
            .devno(name)?
            .ok_or_else(|| Error::DmNotFound { name: name.into() })?;
        if let Some(group) = self.snapshot_group_of(name)? {
            return Err(Error::BadRequest {
                what: format!(
                    "{name} belongs to snapshot group {group}; remove the group with `interposer snapshot remove {group}`"
                ),
            });
        }
        let (status, attached) = self
            .find_interposed(dm_dev)?
            .ok_or_else(|| Error::NotAnInterposer { name: name.into() })?;
        let dev = status.dev;
        if attached {
            self.refuse_suspended_interposer(dev)?;
        }
        let detached = if attached {
            match self.kernel.detach(dev) {
                Ok(()) => true,
                Err(Error::NotAttached { .. }) => false,
                Err(e) => return Err(e),
            }
        } else {
            false
        };
        self.dm.remove(name)?;
        let node_removed = self
            .host
            .remove_node(&mapper_path(name), dm_dev)
            .unwrap_or(false);
        let (lower_removed, lower_kept) = match self.kernel.lower_remove(dev) {
            Ok(()) => (true, None),
            Err(e @ Error::LowerBusy { .. }) => (false, Some(e.to_string())),
            Err(Error::NoLower { .. }) => (false, Some("it was already gone".into())),
            Err(e) => (false, Some(e.to_string())),
        };
        Ok(RemoveReport {
            name: name.to_string(),
            device: self.device_label(dev),
            dev,
            dm_dev,
            detached,
            node_removed,
            lower: status.lower.path(),
            lower_removed,
            lower_kept,
        })
    }
}
