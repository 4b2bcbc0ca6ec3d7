//! The Debian 12 image of the full-system tier, built once and cached.
//!
//! `build-image.sh` (next to this file) runs debootstrap into a directory, installs the
//! packages and both host kernels' linux-image and linux-headers with apt in a chroot, and
//! packs the directory into `rootfs.img` with `mke2fs -d`: the image is never mounted on
//! the host. It lives in `/var/cache/blk-interposer-xtask/system/image-<key>/` (or under
//! `$XTASK_CACHE_DIR`), shared by every checkout on the machine; the key is a hash of the
//! script (which holds the package list), the kernel releases and the mirrors: a change to
//! any of them builds a new image, and an unchanged one is reused. Each VM boots a qcow2
//! overlay of it, so every run starts from the same clean image.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;

const SCRIPT: &str = include_str!("build-image.sh");
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// A built image: the root filesystem and the initrd the guest made for each kernel.
pub struct Image {
    pub dir: PathBuf,
}

impl Image {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.img")
    }

    /// The guest's own initramfs-tools output for `kernel` (the kernel qemu boots is the
    /// host's /boot/vmlinuz-RELEASE, the same file as the guest's: one package).
    pub fn initrd(&self, kernel: &Kernel) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("initrd.img-{}", kernel.release))
    }
}

/// Where images are kept: `$XTASK_CACHE_DIR/system`, by default
/// `/var/cache/blk-interposer-xtask/system`, outside any checkout, so that
/// every clone on the machine (CI's too) reuses the image its key names.
fn cache_dir() -> PathBuf {
    crate::kernel::cache_dir().join("system")
}

/// The cached image for `kernels`, built first if there is none.
pub fn ensure(_root: &Path, kernels: &[Kernel]) -> Result<Image> {
    let base = cache_dir();
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let key = key(kernels)?;
    let image = Image {
        dir: base.join(format!("image-{key}")),
    };
    if image.rootfs().exists() && kernels.iter().all(|k| image.initrd(k).exists()) {
        println!("system: reusing {}", image.dir.display());
        return Ok(image);
    }
    let tmp = base.join(format!("image-{key}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let script = tmp.join("build-image.sh");
    fs::write(&script, SCRIPT)?;
    println!(
        "system: building the Debian 12 image in {} (debootstrap, apt, mke2fs; several minutes)",
        image.dir.display()
    );
    let start = Instant::now();
    let status = Command::new("bash")
        .arg(&script)
        .arg(&tmp)
        .args([MIRROR, SECURITY_MIRROR])
        .args(kernels.iter().map(|k| &k.release))
        .status()
        .context("running build-image.sh (is debootstrap installed? try `cargo xtask setup`)")?;
    if !status.success() {
        bail!(
            "building the system image failed ({status}); logs in {}",
            tmp.display()
        );
    }
    fs::rename(&tmp, &image.dir)
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    println!(
        "system: image built in {} s",
        start.elapsed().as_secs_f64().round()
    );
    // Older images (another package list, other kernels) only take space.
    for entry in fs::read_dir(&base)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("image-") && path != image.dir {
            println!("system: removing the outdated {}", path.display());
            let _ = fs::remove_dir_all(&path);
        }
    }
    Ok(image)
}

/// A fresh qcow2 overlay of the image's root filesystem at `overlay`: the guest's writes
/// go there and the image stays as built.
pub fn overlay(image: &Image, overlay: &Path) -> Result<()> {
    let _ = fs::remove_file(overlay);
    crate::capture(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            &image.rootfs().to_string_lossy(),
            &overlay.to_string_lossy(),
        ],
    )?;
    Ok(())
}

/// 16 hex digits of the sha256 of everything that decides the image's contents.
fn key(kernels: &[Kernel]) -> Result<String> {
    let mut input = String::from(SCRIPT);
    for k in kernels {
        input.push_str(&format!("\nkernel {}", k.release));
    }
    input.push_str(&format!("\nmirrors {MIRROR} {SECURITY_MIRROR}\n"));
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let hex = String::from_utf8_lossy(&out.stdout);
    Ok(hex.chars().take(16).collect())
}
