//! `attach DEV INTERPOSER` / `detach DEV`: the bare kernel switch, for an
//! interposer device that already exists.  `create` and `remove` do this
//! for you; these are for tools that build their own dm stack (and for
//! tests that reach the kernel's own checks).

use std::path::Path;

use serde::Serialize;

use crate::dm::DeviceMapper;
use crate::error::Result;
use crate::host::Host;
use crate::kernel::Kernel;
use crate::ops::Ops;
use crate::types::DevNo;

/// What `attach` or `detach` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwitchReport {
    /// The interposed device, e.g. `/dev/vdb`.
    pub device: String,
    /// Its number.
    pub dev: DevNo,
    /// The interposer it is now attached to (`None` after a detach).
    pub interposer: Option<DevNo>,
    /// The lower device, e.g. `/dev/interposer/vdb`.
    pub lower: String,
    /// Whether `attach` created the lower device.
    pub lower_created: bool,
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Redirect the bios of `device` to `interposer`, creating `device`'s
    /// lower device first if it has none (and removing it again if the
    /// attach is refused).
    pub fn attach(&self, device: &Path, interposer: &Path) -> Result<SwitchReport> {
        let dev = self.host.resolve(device)?;
        let to = self.host.resolve(interposer)?;
        let (lower, lower_created) = self.lower_of(dev)?;
        if let Err(e) = self.kernel.attach(dev, to) {
            if lower_created {
                // Best effort: the refusal is the error worth reporting.
                let _ = self.kernel.lower_remove(dev);
            }
            return Err(e);
        }
        Ok(SwitchReport {
            device: self.device_label(dev),
            dev,
            interposer: Some(to),
            lower: lower.path(),
            lower_created,
        })
    }

    /// Stop redirecting `device`; its lower device stays for the dm table
    /// that may still use it.
    pub fn detach(&self, device: &Path) -> Result<SwitchReport> {
        let dev = self.host.resolve(device)?;
        self.kernel.detach(dev)?;
        let lower = self.kernel.status(dev)?.lower;
        Ok(SwitchReport {
            device: self.device_label(dev),
            dev,
            interposer: None,
            lower: lower.path(),
            lower_created: false,
        })
    }
}
