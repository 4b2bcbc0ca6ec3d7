//! The device-mapper operations the orchestration needs, as a trait.

use serde::Serialize;

use crate::dm::table::Table;
use crate::error::{Error, Result};
use crate::types::DevNo;

/// Longest dm name (`DM_NAME_LEN` minus the NUL).
pub const MAX_NAME: usize = 127;
/// Longest dm uuid (`DM_UUID_LEN` minus the NUL).
pub const MAX_UUID: usize = 128;

/// A dm device: its name and number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmDevice {
    /// Its name, as in `/dev/mapper/<name>`.
    pub name: String,
    /// Its device number.
    pub devno: DevNo,
}

/// Device-mapper, as the orchestration uses it.  [`crate::dm::Dm`] is the
/// real implementation.
pub trait DeviceMapper {
    /// Create an empty (suspended) device; returns its number.
    fn create(&self, name: &str, uuid: &str) -> Result<DevNo>;
    /// Load `table` into the inactive slot.
    fn load(&self, name: &str, table: &Table) -> Result<()>;
    /// Resume: make the loaded table live.
    fn resume(&self, name: &str) -> Result<()>;
    /// Suspend: hold new bios and wait for the ones in flight (a snapshot
    /// origin recomputes its chunk boundary at the next resume).
    fn suspend(&self, name: &str) -> Result<()>;
    /// Remove the device.
    fn remove(&self, name: &str) -> Result<()>;
    /// Whether the device is suspended (it holds the bios it gets).
    fn suspended(&self, name: &str) -> Result<bool>;
    /// The number of the device `name`, `None` if there is none.
    fn devno(&self, name: &str) -> Result<Option<DevNo>>;
    /// The name of the dm device `dev`, `None` if it is not a dm device.
    fn name_of(&self, dev: DevNo) -> Result<Option<String>>;
    /// The devices the live table of dm device `dev` uses.
    fn deps(&self, dev: DevNo) -> Result<Vec<DevNo>>;
    /// Every dm device.
    fn list(&self) -> Result<Vec<DmDevice>>;
    /// The uuid of the device `name`, `None` if it has none.
    fn uuid(&self, name: &str) -> Result<Option<String>>;
    /// How many openers the device `name` has (a mount counts).
    fn open_count(&self, name: &str) -> Result<u32>;
    /// The live table of the device `name` (`dmsetup table`).
    fn table(&self, name: &str) -> Result<Table>;
    /// The status line of the first target of the device `name`, without
    /// start, length and target type (`dmsetup status`).
    fn status(&self, name: &str) -> Result<String>;
    /// Send `message` to the target of `name` at sector 0 (`dmsetup message
    /// NAME 0 MESSAGE`); its answer, if any.
    fn message(&self, name: &str, message: &str) -> Result<Option<String>>;
}

/// Check a dm name the way the kernel will (ASCII, 1..=127 bytes, no `/`),
/// before anything is created.
pub fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "it is empty"
    } else if !name.is_ascii() || name.chars().any(|c| c.is_ascii_control() || c == ' ') {
        "use ASCII letters, digits and -_.+ only"
    } else if name.contains('/') {
        "it must not contain `/`"
    } else if name == "." || name == ".." || name == "control" {
        "that name is reserved"
    } else if name.len() > MAX_NAME {
        "it is longer than 127 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        why,
    })
}

/// The uuid we give an interposer: `INTERPOSER-<kernel name of dev>-<name>`,
/// cut to 128 bytes, so that `dmsetup info` shows what it is.
pub fn interposer_uuid(dev_kernel_name: &str, name: &str) -> String {
    let mut uuid: String = format!("{UUID_PREFIX}{}-{name}", dev_kernel_name.replace('/', "!"))
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    uuid.truncate(MAX_UUID);
    uuid
}

/// Every dm device we create has a uuid that starts with this.
pub const UUID_PREFIX: &str = "INTERPOSER-";

/// What udev may do with a dm device, by its uuid: the `DM_UDEV_*` flags
/// [`crate::dm::Dm`] resumes and removes it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdevPolicy {
    /// Not ours: the rules run as for any dm device.
    Default,
    /// Ours: an interposer, a snapshot origin or a COW slice.  It shows the
    /// live device's filesystem or PV (or is internal), so udev makes only
    /// `/dev/mapper/NAME`: no `/dev/disk` links, no blkid, no LVM or systemd
    /// activation, as LVM does for its private devices.
    Private,
    /// A snapshot image: private as well, and lowest in priority should
    /// `/dev/disk` links be made after all (LVM gives its snapshots this flag),
    /// so that by-uuid stays with the live device.
    PrivateLowPriority,
}

/// The [`UdevPolicy`] of the dm device with `uuid`.
pub fn udev_policy(uuid: Option<&str>) -> UdevPolicy {
    match uuid {
        Some(u) if crate::ops::snapshot::is_image_uuid(u) => UdevPolicy::PrivateLowPriority,
        Some(u) if u.starts_with(UUID_PREFIX) => UdevPolicy::Private,
        _ => UdevPolicy::Default,
    }
}

impl<D: DeviceMapper + ?Sized> DeviceMapper for &D {
    fn create(&self, name: &str, uuid: &str) -> Result<DevNo> {
        (**self).create(name, uuid)
    }
    fn load(&self, name: &str, table: &Table) -> Result<()> {
        (**self).load(name, table)
    }
    fn resume(&self, name: &str) -> Result<()> {
        (**self).resume(name)
    }
    fn suspend(&self, name: &str) -> Result<()> {
        (**self).suspend(name)
    }
    fn remove(&self, name: &str) -> Result<()> {
        (**self).remove(name)
    }
    fn suspended(&self, name: &str) -> Result<bool> {
        (**self).suspended(name)
    }
    fn devno(&self, name: &str) -> Result<Option<DevNo>> {
        (**self).devno(name)
    }
    fn name_of(&self, dev: DevNo) -> Result<Option<String>> {
        (**self).name_of(dev)
    }
    fn deps(&self, dev: DevNo) -> Result<Vec<DevNo>> {
        (**self).deps(dev)
    }
    fn list(&self) -> Result<Vec<DmDevice>> {
        (**self).list()
    }
    fn uuid(&self, name: &str) -> Result<Option<String>> {
        (**self).uuid(name)
    }
    fn open_count(&self, name: &str) -> Result<u32> {
        (**self).open_count(name)
    }
    fn table(&self, name: &str) -> Result<Table> {
        (**self).table(name)
    }
    fn status(&self, name: &str) -> Result<String> {
        (**self).status(name)
    }
    fn message(&self, name: &str, message: &str) -> Result<Option<String>> {
        (**self).message(name, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        check_name("vdb-lin").unwrap();
        for bad in ["", "a/b", "a b", "control", "ü", &"x".repeat(128)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuid_names_the_device_and_fits() {
        assert_eq!(interposer_uuid("vdb", "vdb-lin"), "INTERPOSER-vdb-vdb-lin");
        assert_eq!(
            interposer_uuid("cciss/c0d0", "x"),
            "INTERPOSER-cciss!c0d0-x"
        );
        assert_eq!(interposer_uuid("vdb", &"n".repeat(127)).len(), MAX_UUID);
    }

    #[test]
    fn interposers_are_private_and_other_dm_devices_are_not() {
        let uuid = interposer_uuid("vdb", "vdb-lin");
        assert_eq!(udev_policy(Some(&uuid)), UdevPolicy::Private);
        assert_eq!(udev_policy(Some("LVM-abc")), UdevPolicy::Default);
        assert_eq!(udev_policy(Some("CRYPT-LUKS2-x")), UdevPolicy::Default);
        assert_eq!(udev_policy(None), UdevPolicy::Default);
    }
}
