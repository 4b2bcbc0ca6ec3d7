//! [`DeviceMapper`] over the `devicemapper` crate (`/dev/mapper/control`).

use devicemapper::{
    errors as dme, DevId, DmError, DmFlags, DmName, DmOptions, DmUdevFlags, DmUuid, DM,
};
use nix::errno::Errno;

use crate::dm::mapper::{udev_policy, DeviceMapper, DmDevice, UdevPolicy};
use crate::dm::table::Table;
use crate::error::{Error, Result};
use crate::types::DevNo;

/// The real device-mapper.
pub struct Dm {
    /// `Err` keeps why `/dev/mapper/control` could not be opened, so that
    /// listing works without dm and every dm call says why it cannot.
    dm: std::result::Result<DM, String>,
}

impl std::fmt::Debug for Dm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dm")
    }
}

impl Dm {
    /// Open `/dev/mapper/control`.  A failure shows at the first dm call.
    pub fn open() -> Dm {
        Dm {
            dm: DM::new().map_err(|e| e.to_string()),
        }
    }

    fn dm(&self) -> Result<&DM> {
        self.dm
            .as_ref()
            .map_err(|what| Error::DmUnavailable { what: what.clone() })
    }

    /// Options with the udev flags of the device `name`, by its uuid.  They
    /// travel in the cookie of the ioctls that make a uevent (resume, remove),
    /// and 55-dm.rules (lvm2's 10-dm.rules) imports them from there; without
    /// udev they are ignored.
    fn udev_options(&self, name: &str) -> Result<DmOptions> {
        let uuid = self.uuid(name)?;
        Ok(DmOptions::default().set_udev_flags(udev_flags(udev_policy(uuid.as_deref()))))
    }
}

/// The `DM_UDEV_*` flags of a [`UdevPolicy`], as LVM sets them for its
/// private devices (`DmOptions::private()`) and snapshots.
fn udev_flags(policy: UdevPolicy) -> DmUdevFlags {
    let private = DmOptions::private().udev_flags();
    match policy {
        UdevPolicy::Default => DmUdevFlags::empty(),
        UdevPolicy::Private => private,
        UdevPolicy::PrivateLowPriority => private | DmUdevFlags::DM_UDEV_LOW_PRIORITY_FLAG,
    }
}

fn errno_of(e: &DmError) -> Option<Errno> {
    match e {
        DmError::Core(dme::Error::Ioctl(_, _, _, errno)) => Some(Errno::from_raw(**errno as i32)),
        _ => None,
    }
}

fn dm_err<'a>(op: &'static str, name: &'a str) -> impl FnOnce(DmError) -> Error + 'a {
    move |e| {
        let errno = errno_of(&e);
        match (op, errno) {
            ("create", Some(Errno::EBUSY)) => Error::DmExists {
                name: name.to_string(),
            },
            (_, Some(Errno::ENXIO)) => Error::DmNotFound {
                name: name.to_string(),
            },
            _ => Error::Dm {
                op,
                name: name.to_string(),
                what: errno.map_or_else(|| e.to_string(), |n| n.desc().to_string()),
                errno,
            },
        }
    }
}

fn dm_name(name: &str) -> Result<&DmName> {
    crate::dm::mapper::check_name(name)?;
    DmName::new(name).map_err(|e| Error::InvalidName {
        name: name.to_string(),
        why: if e.to_string().contains("non-ascii") {
            "non-ASCII"
        } else {
            "not a dm name"
        },
    })
}

impl DeviceMapper for Dm {
    fn create(&self, name: &str, uuid: &str) -> Result<DevNo> {
        let dm_uuid = DmUuid::new(uuid).map_err(|e| Error::Dm {
            op: "create",
            name: name.to_string(),
            what: format!("uuid `{uuid}`: {e}"),
            errno: None,
        })?;
        let info = self
            .dm()?
            .device_create(dm_name(name)?, Some(dm_uuid), DmOptions::default())
            .map_err(dm_err("create", name))?;
        let d = info.device();
        Ok(DevNo::new(d.major, d.minor))
    }

    fn load(&self, name: &str, table: &Table) -> Result<()> {
        let id = DevId::Name(dm_name(name)?);
        self.dm()?
            .table_load(&id, &table.targets(), DmOptions::default())
            .map(drop)
            .map_err(dm_err("load table", name))
    }

    fn resume(&self, name: &str) -> Result<()> {
        let id = DevId::Name(dm_name(name)?);
        self.dm()?
            .device_suspend(&id, self.udev_options(name)?.set_flags(DmFlags::empty()))
            .map(drop)
            .map_err(dm_err("resume", name))
    }

    fn suspend(&self, name: &str) -> Result<()> {
        let id = DevId::Name(dm_name(name)?);
        self.dm()?
            .device_suspend(&id, DmOptions::default().set_flags(DmFlags::DM_SUSPEND))
            .map(drop)
            .map_err(dm_err("suspend", name))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let id = DevId::Name(dm_name(name)?);
        self.dm()?
            .device_remove(&id, self.udev_options(name)?)
            .map(drop)
            .map_err(dm_err("remove", name))
    }

    fn suspended(&self, name: &str) -> Result<bool> {
        let id = DevId::Name(dm_name(name)?);
        let info = self.dm()?.device_info(&id).map_err(dm_err("info", name))?;
        Ok(info.flags().contains(DmFlags::DM_SUSPEND))
    }

    fn devno(&self, name: &str) -> Result<Option<DevNo>> {
        let id = DevId::Name(dm_name(name)?);
        match self.dm()?.device_info(&id) {
            Ok(info) => Ok(Some(DevNo::new(info.device().major, info.device().minor))),
            Err(e) if errno_of(&e) == Some(Errno::ENXIO) => Ok(None),
            Err(e) => Err(dm_err("info", name)(e)),
        }
    }

    fn name_of(&self, dev: DevNo) -> Result<Option<String>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|d| d.devno == dev)
            .map(|d| d.name))
    }

    fn deps(&self, dev: DevNo) -> Result<Vec<DevNo>> {
        let Some(name) = self.name_of(dev)? else {
            return Ok(Vec::new());
        };
        let id = DevId::Name(dm_name(&name)?);
        let deps = self
            .dm()?
            .table_deps(&id, DmOptions::default())
            .map_err(dm_err("deps", &name))?;
        Ok(deps
            .into_iter()
            .map(|d| DevNo::new(d.major, d.minor))
            .collect())
    }

    fn list(&self) -> Result<Vec<DmDevice>> {
        let devs = self.dm()?.list_devices().map_err(dm_err("list", ""))?;
        Ok(devs
            .into_iter()
            .map(|(name, d, _)| DmDevice {
                name: name.to_string(),
                devno: DevNo::new(d.major, d.minor),
            })
            .collect())
    }

    fn uuid(&self, name: &str) -> Result<Option<String>> {
        let id = DevId::Name(dm_name(name)?);
        let info = self.dm()?.device_info(&id).map_err(dm_err("info", name))?;
        Ok(info.uuid().map(|u| u.to_string()))
    }

    fn open_count(&self, name: &str) -> Result<u32> {
        let id = DevId::Name(dm_name(name)?);
        let info = self.dm()?.device_info(&id).map_err(dm_err("info", name))?;
        Ok(info.open_count().max(0) as u32)
    }

    fn table(&self, name: &str) -> Result<Table> {
        let text = self
            .table_status(name, DmFlags::DM_STATUS_TABLE)?
            .into_iter()
            .map(|(start, len, target, params)| format!("{start} {len} {target} {params}"))
            .collect::<Vec<_>>()
            .join("\n");
        text.parse().map_err(|e: Error| Error::Dm {
            op: "table",
            name: name.to_string(),
            what: e.to_string(),
            errno: None,
        })
    }

    fn status(&self, name: &str) -> Result<String> {
        self.table_status(name, DmFlags::empty())?
            .into_iter()
            .next()
            .map(|(_, _, _, params)| params)
            .ok_or_else(|| Error::Dm {
                op: "status",
                name: name.to_string(),
                what: "it has no live table".into(),
                errno: None,
            })
    }

    fn message(&self, name: &str, message: &str) -> Result<Option<String>> {
        let id = DevId::Name(dm_name(name)?);
        self.dm()?
            .target_msg(&id, Some(0), message)
            .map(|(_, answer)| answer)
            .map_err(dm_err("message", name))
    }
}

impl Dm {
    #[allow(clippy::type_complexity)]
    fn table_status(&self, name: &str, flags: DmFlags) -> Result<Vec<(u64, u64, String, String)>> {
        let id = DevId::Name(dm_name(name)?);
        self.dm()?
            .table_status(
                &id,
                DmOptions::default().set_flags(flags | DmFlags::DM_NOFLUSH),
            )
            .map(|(_, lines)| lines)
            .map_err(dm_err("status", name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bits of libdevmapper.h: DISABLE_SUBSYSTEM_RULES 0x02,
    /// DISABLE_DISK_RULES 0x04, DISABLE_OTHER_RULES 0x08, LOW_PRIORITY 0x10;
    /// never DISABLE_DM_RULES 0x01, which would drop /dev/mapper/NAME.
    #[test]
    fn policies_map_to_lvms_flags_for_private_devices() {
        assert_eq!(udev_flags(UdevPolicy::Default).bits(), 0);
        assert_eq!(udev_flags(UdevPolicy::Private).bits(), 0x0e);
        assert_eq!(udev_flags(UdevPolicy::PrivateLowPriority).bits(), 0x1e);
    }
}
