//! `era_enable` and `era_disable`: changed-block tracking on every boot,
//! through the packaged unit `interposer-era@.service` (see
//! [`crate::era::boot`]).

use std::path::Path;

use serde::Serialize;

use crate::era::boot;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kernel::Kernel;
use crate::ops::Ops;
use crate::{DeviceMapper, EraAttachReport};

/// What `era_enable` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraEnableReport {
    /// The tracked device, by the name the unit uses.
    pub device: String,
    /// The metadata device, by the name the unit uses.
    pub metadata: String,
    /// The unit that attaches at boot and detaches at shutdown.
    pub unit: String,
    /// The drop-in written for it.
    pub dropin: String,
    /// The tracking generation the boot attach requires.
    pub generation: String,
    /// The attach made now; `None` when dm-era was on the device already.
    pub attached: Option<EraAttachReport>,
}

/// What `era_disable` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraDisableReport {
    /// The tracked device.
    pub device: String,
    /// The unit that was disabled and stopped.
    pub unit: String,
    /// dm-era is still on the device (its stop could not detach it).
    pub still_attached: bool,
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Track `device` on every boot from now on: attach dm-era now (unless
    /// it is attached with `metadata` already), then enable
    /// `interposer-era@DEVICE.service`, which attaches it early in every
    /// boot ([`Ops::era_attach_at_boot`]) and detaches it cleanly at
    /// shutdown ([`Ops::era_detach_at_shutdown`]), so that a clean reboot
    /// is not a gap.  Both devices are named by a stable path
    /// (`/dev/disk/by-id/...`) where the host has one.  A device that holds
    /// `/` or `/usr` is refused ([`Error::EraEnableSystemMount`]).
    ///
    /// ```no_run
    /// use std::path::Path;
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = blk_interposer::Ops::system()?;
    /// let r = ops.era_enable(Path::new("/dev/sdb1"), Path::new("/dev/sdc1"), 64 << 10)?;
    /// println!("{} tracks {} at every boot", r.unit, r.device);
    /// // ... later, on a backup: a clean reboot since is no gap.
    /// let since = ops.era_checkpoint("sdb1")?.checkpoint;
    /// # Ok(()) }
    /// ```
    pub fn era_enable(
        &self,
        device: &Path,
        metadata: &Path,
        block_bytes: u64,
    ) -> Result<EraEnableReport> {
        let dev = self.resolve_device(device)?;
        let meta = self.resolve_any(metadata)?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(m) = boot::mount_points(&mountinfo, dev)
            .into_iter()
            .find(|m| boot::SYSTEM_MOUNTS.contains(&m.as_str()))
        {
            return Err(Error::EraEnableSystemMount {
                dev: self.device_label(dev),
                mountpoint: m,
            });
        }
        let dev_path = boot::stable_path(dev, device);
        let meta_path = boot::stable_path(meta, metadata);
        let label = dev.to_string();
        let attached = match self.era_status(&label) {
            Ok(s) if s.metadata_dev == meta => None,
            Ok(s) => {
                return Err(Error::EraUnit {
                    what: format!("enable tracking of {}", self.device_label(dev)),
                    why: format!(
                        "dm-era `{}` tracks it with the metadata {}, not {}: `era detach` it first",
                        s.name,
                        s.metadata,
                        self.device_label(meta)
                    ),
                })
            }
            Err(Error::NoEra { .. }) => {
                Some(self.era_attach(&dev_path, &meta_path, block_bytes, None)?)
            }
            Err(e) => return Err(e),
        };
        let status = self.era_status(&label)?;
        let generation = status
            .tracked_since
            .and_then(|c| c.generation)
            .ok_or_else(|| Error::EraUnit {
                what: format!("enable tracking of {}", self.device_label(dev)),
                why: format!(
                    "its tracking covers no checkpoint now, so no generation to record ({})",
                    status
                        .gap
                        .map_or_else(|| "no tracking record".into(), |g| g.to_string())
                ),
            })?;
        let dev_str = dev_path.to_string_lossy().into_owned();
        let meta_str = meta_path.to_string_lossy().into_owned();
        let unit = boot::unit_name(&dev_str);
        let dropin = boot::write_dropin(
            &unit,
            &boot::dropin(&meta_str, status.block_bytes, generation),
        )?;
        boot::systemctl(&["daemon-reload"])?;
        // The unit's start finds dm-era attached (nothing to do); started,
        // it detaches at this boot's shutdown.
        boot::systemctl(&["enable", "--now", &unit])?;
        Ok(EraEnableReport {
            device: dev_str,
            metadata: meta_str,
            unit,
            dropin: dropin.display().to_string(),
            generation: format!("{generation:016x}"),
            attached,
        })
    }

    /// Stop tracking `device` at boot: disable and stop its unit (which
    /// detaches dm-era now: the epoch ends, the next backup is a full one
    /// unless tracking is attached again), and remove its drop-in.
    pub fn era_disable(&self, device: &Path) -> Result<EraDisableReport> {
        let dev = self.resolve_device(device)?;
        let (unit, path) = boot::enabled()
            .into_iter()
            .find(|(_, p)| self.host.resolve(Path::new(p)).ok() == Some(dev))
            .ok_or_else(|| Error::EraUnit {
                what: format!("disable tracking of {}", self.device_label(dev)),
                why: format!(
                    "`era enable` has not enabled it (no {}/{}@*.service.d/{} names it)",
                    boot::UNIT_DIR,
                    boot::UNIT_PREFIX,
                    boot::DROPIN
                ),
            })?;
        boot::systemctl(&["disable", "--now", &unit])?;
        boot::remove_dropin(&unit)?;
        boot::systemctl(&["daemon-reload"])?;
        let still_attached = self.era_status(&dev.to_string()).is_ok();
        Ok(EraDisableReport {
            device: path,
            unit,
            still_attached,
        })
    }
}
