//! `cargo xtask setup`: install what the build and the VM tests need on Debian 12.
//!
//! Idempotent: when every package is already installed it returns after one dpkg-query.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::{capture, run_cmd};

/// From bookworm (or bookworm-security): the module build, the Rust build (bindgen needs
/// libclang), the initramfs contents and the tools to pack it.
const PACKAGES: &[&str] = &[
    "build-essential",
    "bc",
    "kmod",
    "cpio",
    "xz-utils",
    "zstd",
    "libclang-dev",
    "libdevmapper-dev",
    "clang",
    "pkg-config",
    "busybox-static",
    "dmsetup",
    "e2fsprogs",
    "xfsprogs",
    "fio",
    "thin-provisioning-tools",
    // LVM on interposed devices (tests/scenarios/reliability/stacked-lvm-no-deadlock.sh)
    "lvm2",
    "gdisk",
    "util-linux",
    // checkpatch.pl, for `cargo xtask ci`
    "linux-source-6.1",
    // the full-system tier's Debian image (xtask/src/system/build-image.sh) and its
    // payload disk: debootstrap, mke2fs -d (e2fsprogs above), sha256sum for the cache key
    "debootstrap",
    "coreutils",
];

/// From bookworm-backports: bookworm's qemu 7.2 conflicts with the backports qemu-utils that
/// cloud images preinstall, and its TCG mis-emulates CMPXCHG16B under 6.12. qemu-utils
/// (qemu-img: the system tier's qcow2 overlays) from the same release.
const BACKPORTS_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils"];

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/backports.sources";
const BACKPORTS_SUITE: &str = "bookworm-backports";

pub fn run() -> Result<()> {
    if !has_backports_source()? {
        println!("setup: adding {BACKPORTS_SUITE} to {BACKPORTS_SOURCE}");
        fs::write(
            BACKPORTS_SOURCE,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .with_context(|| format!("writing {BACKPORTS_SOURCE} (are you root?)"))?;
    } else if all_installed(PACKAGES)? && all_installed(BACKPORTS_PACKAGES)? && kernels_installed()
    {
        println!("setup: everything is installed");
        return Ok(());
    }

    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    run_cmd("apt-get", &["update", "-q"], &env)?;

    // The ABI package names (linux-image-6.1.0-56-cloud-amd64) change with every kernel
    // update, so ask the metapackages which ones they currently mean.
    let (stable, backports) = cloud_kernel_versions()?;
    let mut main: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    main.extend(abi_packages(&stable)?);
    let mut bpo: Vec<String> = BACKPORTS_PACKAGES.iter().map(|p| p.to_string()).collect();
    bpo.extend(abi_packages(&backports)?);

    let install = ["install", "-y", "-q", "--no-install-recommends"];
    let args: Vec<&str> = install
        .iter()
        .copied()
        .chain(main.iter().map(String::as_str))
        .collect();
    run_cmd("apt-get", &args, &env)?;
    let args: Vec<&str> = install
        .iter()
        .copied()
        .chain(["-t", BACKPORTS_SUITE])
        .chain(bpo.iter().map(String::as_str))
        .collect();
    run_cmd("apt-get", &args, &env)?;
    println!("setup: done");
    Ok(())
}

fn has_backports_source() -> Result<bool> {
    let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    Ok(files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .any(|text| text.contains(BACKPORTS_SUITE)))
}

fn all_installed(packages: &[&str]) -> Result<bool> {
    // dpkg-query exits non-zero when a package is unknown; the status column covers the rest.
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}\n"])
        .args(packages)
        .output()
        .context("running dpkg-query")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(out.status.success() && text.lines().all(|l| l.starts_with("ii")))
}

/// Both kernel series are bootable and have a build tree.
fn kernels_installed() -> bool {
    crate::kernel::ALIASES
        .iter()
        .all(|a| crate::kernel::resolve(a).is_ok())
}

/// Versions of linux-image-cloud-amd64: the newest from bookworm/-security and from backports.
fn cloud_kernel_versions() -> Result<(String, String)> {
    let madison = capture("apt-cache", &["madison", "linux-image-cloud-amd64"])?;
    let (mut stable, mut backports) = (None, None);
    // madison lists the newest version first: "pkg | version | url suite/main amd64 Packages".
    for line in madison.lines() {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, version, source] = fields[..] else {
            continue;
        };
        let slot = if source.contains(BACKPORTS_SUITE) {
            &mut backports
        } else {
            &mut stable
        };
        slot.get_or_insert_with(|| version.to_string());
    }
    match (stable, backports) {
        (Some(s), Some(b)) => Ok((s, b)),
        _ => bail!(
            "apt-cache madison linux-image-cloud-amd64 lacks bookworm or backports:\n{madison}"
        ),
    }
}

/// linux-image-<abi> and linux-headers-<abi> for one version of the metapackage.
fn abi_packages(version: &str) -> Result<Vec<String>> {
    let depends = capture(
        "apt-cache",
        &["depends", &format!("linux-image-cloud-amd64={version}")],
    )?;
    let image = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .with_context(|| {
            format!("linux-image-cloud-amd64={version} depends on no image:\n{depends}")
        })?;
    let abi = image
        .trim_start_matches("linux-image-")
        .trim_end_matches("-unsigned");
    Ok(vec![
        format!("linux-image-{abi}"),
        format!("linux-headers-{abi}"),
    ])
}
