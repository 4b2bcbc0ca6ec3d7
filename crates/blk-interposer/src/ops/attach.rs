//! `attach DEV INTERPOSER` / `detach DEV`: the bare kernel switch, for an
//! interposer device that already exists.  `create` and `remove` do this
//! for you; these are for tools that build their own dm stack (and for
//! tests that reach the kernel's own checks).  `switch` moves several devices
//! at one point in time, each to a new interposer or back to itself.

use std::path::Path;

use serde::Serialize;

use crate::dm::DeviceMapper;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kernel::{Kernel, Switch};
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
        let dev = self.resolve_device(device)?;
        let to = self.resolve_any(interposer)?;
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
        let dev = self.resolve_device(device)?;
        self.refuse_suspended_interposer(dev)?;
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

    /// Move each device to its interposer (`None`: back to the device
    /// itself) at one point in time: the kernel freezes every filesystem and
    /// holds new bios of every device before any of them switches.  An
    /// attached device moves straight to its new interposer.  Lower devices
    /// that are missing are created first, and removed again if the kernel
    /// refuses; the kernel changes all devices or none.
    pub fn switch(&self, moves: &[(&Path, Option<&Path>)]) -> Result<Vec<SwitchReport>> {
        let mut resolved: Vec<Switch> = Vec::with_capacity(moves.len());
        for (device, to) in moves {
            let dev = self.resolve_device(device)?;
            if resolved.iter().any(|m| m.dev == dev) {
                return Err(Error::BadRequest {
                    what: format!(
                        "{} appears twice: a device can move to one place",
                        self.device_label(dev)
                    ),
                });
            }
            let to = to.map(|p| self.resolve_any(p)).transpose()?;
            resolved.push(Switch { dev, to });
        }
        let mut lowers = Vec::with_capacity(resolved.len());
        let mut created = Vec::new();
        for m in &resolved {
            match self.lower_of(m.dev) {
                Ok((lower, fresh)) => {
                    if fresh {
                        created.push(m.dev);
                    }
                    lowers.push((lower, fresh));
                }
                Err(e) => {
                    self.remove_lowers(&created);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.switch_devices(&resolved) {
            self.remove_lowers(&created);
            return Err(e);
        }
        Ok(resolved
            .iter()
            .zip(lowers)
            .map(|(m, (lower, lower_created))| SwitchReport {
                device: self.device_label(m.dev),
                dev: m.dev,
                interposer: m.to,
                lower: lower.path(),
                lower_created,
            })
            .collect())
    }

    /// The kernel's SWITCH, as every workflow asks for it: refused first
    /// when a device would leave a suspended dm interposer.
    pub(super) fn switch_devices(&self, moves: &[Switch]) -> Result<()> {
        for m in moves {
            self.refuse_suspended_interposer(m.dev)?;
        }
        self.kernel.switch(moves)
    }

    /// The module hands top-level bios to a dm interposer without a clone and
    /// lets it go only once dm has finished them, which a suspended device
    /// never does: refuse to move `dev` away from one.
    pub(super) fn refuse_suspended_interposer(&self, dev: DevNo) -> Result<()> {
        let Ok(status) = self.kernel.status(dev) else {
            return Ok(()); // no lower device yet: nothing to switch away from
        };
        let Some(name) = status
            .interposer
            .map(|i| self.dm.name_of(i))
            .transpose()?
            .flatten()
        else {
            return Ok(());
        };
        if self.dm.suspended(&name)? {
            return Err(Error::InterposerSuspended { name });
        }
        Ok(())
    }

    /// Best effort: the error that made us undo is the one worth reporting.
    fn remove_lowers(&self, devs: &[DevNo]) {
        for dev in devs {
            let _ = self.kernel.lower_remove(*dev);
        }
    }
}
