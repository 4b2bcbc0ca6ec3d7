//! Names of block devices from sysfs (`/sys/dev/block/MAJ:MIN/uevent`).

use std::path::Path;

use crate::era::record::DeviceIdentity;
use crate::error::{Error, Result};
use crate::types::{DevNo, Sectors};

/// The kernel name of a block device (`DEVNAME=` of its uevent: `vdb`,
/// `nvme0n1p2`, `dm-3`), or `None` if it is not there.
pub fn kernel_name(dev: DevNo) -> Option<String> {
    kernel_name_in(Path::new("/sys"), dev)
}

/// [`kernel_name`] under another sysfs root (for tests).
pub fn kernel_name_in(sys: &Path, dev: DevNo) -> Option<String> {
    let uevent = std::fs::read_to_string(sys.join(format!("dev/block/{dev}/uevent"))).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The logical block size of `dev` in bytes (a partition's is its disk's),
/// or `None` if sysfs does not say.
pub fn logical_block_size(dev: DevNo) -> Option<u32> {
    logical_block_size_in(Path::new("/sys"), dev)
}

/// [`logical_block_size`] under another sysfs root (for tests).
pub fn logical_block_size_in(sys: &Path, dev: DevNo) -> Option<u32> {
    let node = std::fs::canonicalize(sys.join(format!("dev/block/{dev}"))).ok()?;
    let disk = if node.join("partition").exists() {
        node.parent()?.to_path_buf()
    } else {
        node
    };
    std::fs::read_to_string(disk.join("queue/logical_block_size"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A label for messages: `/dev/vdb (254:16)`, or `254:16` when sysfs does not
/// know the device.
pub fn label(dev: DevNo) -> String {
    match kernel_name(dev) {
        Some(n) => format!("/dev/{n} ({dev})"),
        None => dev.to_string(),
    }
}

/// The identity of `dev` (of `sectors`) from sysfs under `sys`: for a
/// partition its number and start and its disk's serial; for a whole disk
/// its serial (virtio `serial`, SCSI/NVMe `device/serial` or `wwid`, a dm
/// device's uuid).
pub fn identity(sys: &Path, dev: DevNo, sectors: Sectors) -> Result<DeviceIdentity> {
    let node = sys.join(format!("dev/block/{dev}"));
    let node = std::fs::canonicalize(&node).map_err(|source| Error::Io {
        what: format!("cannot find {} in sysfs", node.display()),
        source,
    })?;
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let partition: u32 = read(&node.join("partition"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (start, disk) = if partition > 0 {
        let start = read(&node.join("start"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (start, node.parent().unwrap_or(&node).to_path_buf())
    } else {
        (0, node.clone())
    };
    let serial = ["serial", "device/serial", "device/wwid", "wwid", "dm/uuid"]
        .iter()
        .find_map(|f| read(&disk.join(f)));
    Ok(DeviceIdentity {
        sectors: sectors.0,
        start,
        partition,
        serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_a_partition_and_a_disk() {
        let dir = std::env::temp_dir().join(format!("bi-sysfs-id-{}", std::process::id()));
        let disk = dir.join("devices/virtio2/block/vdb");
        let part = disk.join("vdb1");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::create_dir_all(dir.join("dev/block")).unwrap();
        std::fs::write(disk.join("serial"), "QM0042\n").unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        std::fs::write(part.join("start"), "2048\n").unwrap();
        std::os::unix::fs::symlink(&disk, dir.join("dev/block/254:16")).unwrap();
        std::os::unix::fs::symlink(&part, dir.join("dev/block/254:17")).unwrap();
        let p = identity(&dir, DevNo::new(254, 17), Sectors(65536)).unwrap();
        assert_eq!(
            p,
            DeviceIdentity {
                sectors: 65536,
                start: 2048,
                partition: 1,
                serial: Some("QM0042".into())
            }
        );
        std::fs::create_dir_all(disk.join("queue")).unwrap();
        std::fs::write(disk.join("queue/logical_block_size"), "4096\n").unwrap();
        assert_eq!(logical_block_size_in(&dir, DevNo::new(254, 17)), Some(4096));
        assert_eq!(logical_block_size_in(&dir, DevNo::new(254, 16)), Some(4096));
        assert_eq!(logical_block_size_in(&dir, DevNo::new(254, 99)), None);
        let d = identity(&dir, DevNo::new(254, 16), Sectors(1 << 20)).unwrap();
        assert_eq!(
            (d.start, d.partition, d.serial.as_deref()),
            (0, 0, Some("QM0042"))
        );
        assert!(identity(&dir, DevNo::new(254, 99), Sectors(1)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_devname() {
        let dir = std::env::temp_dir().join(format!("bi-sysfs-{}", std::process::id()));
        let d = dir.join("dev/block/254:16");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("uevent"),
            "MAJOR=254\nMINOR=16\nDEVNAME=vdb\nDEVTYPE=disk\n",
        )
        .unwrap();
        assert_eq!(
            kernel_name_in(&dir, DevNo::new(254, 16)).as_deref(),
            Some("vdb")
        );
        assert_eq!(kernel_name_in(&dir, DevNo::new(254, 17)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
