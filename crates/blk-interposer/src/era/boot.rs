//! Tracking across reboots: the pieces of `era enable` and `era disable`
//! that are about the host's systemd, not about dm.
//!
//! `era enable DEV --metadata META` enables an instance of the packaged
//! template unit `interposer-era@.service`, named after DEV's stable path
//! (`interposer-era@dev-disk-by\x2did-virtio\x2ddata.service`), and writes
//! beside it a drop-in with what the attach needs (the metadata device, the
//! block size, the tracking generation) and an ordering after the metadata
//! device.  The unit attaches dm-era before `local-fs-pre.target` (so before
//! fsck and every local mount) and detaches it at shutdown after the mounts
//! are gone (`era detach --shutdown`).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::types::DevNo;

/// The packaged template unit, without `@` and suffix.
pub const UNIT_PREFIX: &str = "interposer-era";
/// Where `era enable` writes its drop-ins.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The drop-in's file name in `interposer-era@INSTANCE.service.d/`.
pub const DROPIN: &str = "interposer.conf";

/// `systemd-escape --path PATH`: `/dev/disk/by-id/a-b` ->
/// `dev-disk-by\x2did-a\x2db`.
pub fn escape_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return "-".into();
    }
    let joined = parts.join("/");
    let mut out = String::new();
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The inverse of [`escape_path`]; `None` when `name` is not one.
pub fn unescape_path(name: &str) -> Option<String> {
    let mut bytes = vec![b'/'];
    let mut it = name.bytes();
    while let Some(b) = it.next() {
        match b {
            b'-' => bytes.push(b'/'),
            b'\\' => {
                if it.next()? != b'x' {
                    return None;
                }
                let hex = [it.next()?, it.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

/// The unit of the tracked device at `path`.
pub fn unit_name(path: &str) -> String {
    format!("{UNIT_PREFIX}@{}.service", escape_path(path))
}

/// The drop-in `era enable` writes for the device's unit.
pub fn dropin(metadata: &str, block_bytes: u64, generation: u64) -> String {
    let meta_unit = format!("{}.device", escape_path(metadata));
    format!(
        "# Written by `interposer era enable`; `interposer era disable` removes it.\n\
         [Unit]\n\
         BindsTo={meta_unit}\n\
         After={meta_unit}\n\
         \n\
         [Service]\n\
         Environment=INTERPOSER_METADATA={metadata}\n\
         Environment=INTERPOSER_BLOCK_SIZE={block_bytes}\n\
         Environment=INTERPOSER_GENERATION={generation:016x}\n"
    )
}

/// The mount points of filesystems on `dev`, from `mountinfo` text.
pub fn mount_points(mountinfo: &str, dev: DevNo) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let devno = f.nth(2)?.parse::<DevNo>().ok()?;
            let mnt = f.nth(1)?;
            (devno == dev).then(|| mnt.replace("\\040", " "))
        })
        .collect()
}

/// Mount points that are unmounted only after every unit has stopped
/// (systemd remounts them read-only at the very end): a boot unit cannot
/// detach after them.
pub const SYSTEM_MOUNTS: &[&str] = &["/", "/usr"];

/// A name of `dev` that survives a reboot: `given` when it is one already
/// (`/dev/disk/...`), else the first link to it in `/dev/disk/by-id`,
/// `by-partuuid`, `by-path`; `given` when there is none.
pub fn stable_path(dev: DevNo, given: &Path) -> PathBuf {
    if given.starts_with("/dev/disk") {
        return given.into();
    }
    for dir in ["by-id", "by-partuuid", "by-path"] {
        let Ok(rd) = fs::read_dir(Path::new("/dev/disk").join(dir)) else {
            continue;
        };
        let mut links: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        links.sort();
        for l in links {
            if let Ok(m) = fs::metadata(&l) {
                if m.file_type().is_block_device() && DevNo::from_dev_t(m.rdev()) == dev {
                    return l;
                }
            }
        }
    }
    given.into()
}

/// The drop-ins `era enable` wrote: (unit, device path) for each.
pub fn enabled() -> Vec<(String, String)> {
    let Ok(rd) = fs::read_dir(UNIT_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = rd
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let unit = name.strip_suffix(".d")?;
            let inst = unit
                .strip_prefix(&format!("{UNIT_PREFIX}@"))?
                .strip_suffix(".service")?;
            let path = unescape_path(inst)?;
            Path::new(UNIT_DIR)
                .join(&name)
                .join(DROPIN)
                .exists()
                .then(|| (unit.to_string(), path))
        })
        .collect();
    out.sort();
    out
}

/// Write the drop-in of `unit`.
pub fn write_dropin(unit: &str, text: &str) -> Result<PathBuf> {
    let dir = Path::new(UNIT_DIR).join(format!("{unit}.d"));
    let path = dir.join(DROPIN);
    fs::create_dir_all(&dir)
        .and_then(|()| fs::write(&path, text))
        .map_err(|source| Error::Io {
            what: format!("cannot write {}", path.display()),
            source,
        })?;
    Ok(path)
}

/// Remove the drop-in of `unit` (and its directory when empty).
pub fn remove_dropin(unit: &str) -> Result<()> {
    let dir = Path::new(UNIT_DIR).join(format!("{unit}.d"));
    let path = dir.join(DROPIN);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                what: format!("cannot remove {}", path.display()),
                source,
            })
        }
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}

/// Run `systemctl ARGS`; its standard error is the error's reason.
pub fn systemctl(args: &[&str]) -> Result<()> {
    let what = format!("run `systemctl {}`", args.join(" "));
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| Error::EraUnit {
            what: what.clone(),
            why: format!("{e} (is systemd installed?)"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::EraUnit {
        what,
        why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_as_systemd_escape_does() {
        // Expected values from `systemd-escape --path` (systemd 252).
        for (path, esc) in [
            ("/dev/vdb1", "dev-vdb1"),
            (
                "/dev/disk/by-id/virtio-data_1",
                "dev-disk-by\\x2did-virtio\\x2ddata_1",
            ),
            (
                "/dev/disk/by-path/pci-0000:00:05.0",
                "dev-disk-by\\x2dpath-pci\\x2d0000:00:05.0",
            ),
            ("//dev//sdb/", "dev-sdb"),
            ("/.hidden/x y", "\\x2ehidden-x\\x20y"),
        ] {
            assert_eq!(escape_path(path), esc, "{path}");
        }
        let p = "/dev/disk/by-partuuid/6b3e-01";
        assert_eq!(unescape_path(&escape_path(p)).as_deref(), Some(p));
        assert_eq!(
            unit_name("/dev/vdc"),
            "interposer-era@dev-vdc.service".to_string()
        );
        assert_eq!(unescape_path("dev-\\xzz"), None);
    }

    #[test]
    fn the_dropin_names_the_metadata_and_orders_after_it() {
        assert_eq!(
            dropin("/dev/disk/by-id/virtio-meta", 65536, 0x3f9a),
            "# Written by `interposer era enable`; `interposer era disable` removes it.\n\
             [Unit]\n\
             BindsTo=dev-disk-by\\x2did-virtio\\x2dmeta.device\n\
             After=dev-disk-by\\x2did-virtio\\x2dmeta.device\n\
             \n\
             [Service]\n\
             Environment=INTERPOSER_METADATA=/dev/disk/by-id/virtio-meta\n\
             Environment=INTERPOSER_BLOCK_SIZE=65536\n\
             Environment=INTERPOSER_GENERATION=0000000000003f9a\n"
        );
    }

    #[test]
    fn mount_points_of_a_device() {
        let mi = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 254:32 / /srv/my\\040data rw shared:2 - ext4 /dev/vdc rw
31 22 254:32 /sub /mnt/bind rw shared:2 - ext4 /dev/vdc rw
32 22 0:22 / /proc rw - proc proc rw";
        assert_eq!(
            mount_points(mi, DevNo::new(254, 32)),
            ["/srv/my data", "/mnt/bind"]
        );
        assert_eq!(mount_points(mi, DevNo::new(254, 1)), ["/"]);
        assert!(mount_points(mi, DevNo::new(8, 0)).is_empty());
    }
}
