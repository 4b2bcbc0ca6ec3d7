//! Names of block devices from sysfs (`/sys/dev/block/MAJ:MIN/uevent`).

use std::path::Path;

use crate::types::DevNo;

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

/// A label for messages: `/dev/vdb (254:16)`, or `254:16` when sysfs does not
/// know the device.
pub fn label(dev: DevNo) -> String {
    match kernel_name(dev) {
        Some(n) => format!("/dev/{n} ({dev})"),
        None => dev.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
