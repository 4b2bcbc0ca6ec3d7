//! `cargo xtask setup`: install what the build and the VM tests need on Debian 12.
//!
//! Idempotent: when every package is already installed it returns after one dpkg-query.
//!
//! The newer suites' kernels (trixie-backports, sid) are not installed on the host: each lives
//! in a debootstrap root of its suite in the xtask cache, with its headers and the compiler
//! their kbuild needs (installed there by apt), and its image and modules unpacked there
//! (`dpkg-deb -x`: no maintainer script, no initramfs). The host's packages stay as they are.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::{capture, kernel, run_cmd};

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
        newer_kernels()?;
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
    newer_kernels()?;
    println!("setup: done");
    Ok(())
}

const MIRROR: &str = "http://deb.debian.org/debian";

/// Each newer suite's root with its newest cloud kernel: made when missing, else left alone
/// (a later kernel of the suite comes with `rm -r` of the root and another setup).
fn newer_kernels() -> Result<()> {
    for n in kernel::NEWER {
        if let Ok(k) = kernel::resolve_newer(n) {
            println!("setup: {}: {} in {}", n.alias, k.release, k.root.display());
            continue;
        }
        newer_kernel(n).with_context(|| format!("setting up the {} kernel", n.alias))?;
        let k = kernel::resolve_newer(n)?;
        println!("setup: {}: {} in {}", n.alias, k.release, k.root.display());
    }
    Ok(())
}

fn newer_kernel(n: &kernel::Newer) -> Result<()> {
    let root = n.root();
    let rs = root.to_string_lossy().into_owned();
    if !root.join("usr/bin/apt-get").exists() {
        // A root that a failed debootstrap left half made is made again.
        if root.exists() {
            fs::remove_dir_all(&root).with_context(|| format!("removing {rs}"))?;
        }
        fs::create_dir_all(kernel::cache_dir())?;
        run_cmd(
            "debootstrap",
            &["--variant=minbase", n.base, &rs, MIRROR],
            &[],
        )?;
    }
    if let Some(suite) = n.backports {
        fs::write(
            root.join("etc/apt/sources.list.d/backports.list"),
            format!("deb {MIRROR} {suite} main\n"),
        )?;
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let in_root = |args: &[&str]| -> Result<()> {
        let full: Vec<&str> = [rs.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        run_cmd("chroot", &full, &env)
    };
    // sid's Release file is valid for a week only: a mirror that was not refreshed since
    // (seen here: expired 26 days) is still the newest kernel this machine can have.
    in_root(&[
        "apt-get",
        "update",
        "-q",
        "-o",
        "Acquire::Check-Valid-Until=false",
    ])?;
    // The headers' metapackage pulls the newest ABI's headers and its gcc-N-for-host.
    let mut install = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    if let Some(suite) = n.backports {
        install.extend(["-t", suite]);
    }
    install.extend(["linux-headers-cloud-amd64", "make"]);
    in_root(&install)?;
    let release = newest_headers(&root)?;

    // The image package and what it depends on of its own ABI (7.x: linux-binary-REL with
    // the image, linux-modules-REL), unpacked without their scripts.
    let depends = capture(
        "chroot",
        &[
            &rs,
            "apt-cache",
            "depends",
            &format!("linux-image-{release}"),
        ],
    )?;
    let mut debs = vec![format!("linux-image-{release}")];
    debs.extend(
        depends_in(&depends)
            .filter(|p| p.contains(release.as_str()) && !p.starts_with('<'))
            .map(str::to_string),
    );
    let work = root.join("tmp/xtask-kernel-debs");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let mut download = vec![
        rs.as_str(),
        "sh",
        "-c",
        "cd /tmp/xtask-kernel-debs && apt-get download \"$@\"",
        "download",
    ];
    download.extend(debs.iter().map(String::as_str));
    run_cmd("chroot", &download, &env)?;
    for deb in fs::read_dir(&work)?.map_while(Result::ok) {
        run_cmd("dpkg-deb", &["-x", &deb.path().to_string_lossy(), &rs], &[])?;
    }
    fs::remove_dir_all(&work)?;
    run_cmd("depmod", &["-b", &rs, &release], &[])
}

/// The newest `linux-headers-*-cloud-amd64` tree in `root`, by its release.
fn newest_headers(root: &Path) -> Result<String> {
    fs::read_dir(root.join("usr/src"))?
        .map_while(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("linux-headers-")
                .filter(|r| r.ends_with("-cloud-amd64"))
                .map(str::to_string)
        })
        .max_by_key(|r| kernel::version_key(r))
        .with_context(|| {
            format!(
                "no linux-headers-*-cloud-amd64 in {}/usr/src",
                root.display()
            )
        })
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

/// The packages of the `Depends:` lines of `apt-cache depends` output.
fn depends_in(apt_cache_depends: &str) -> impl Iterator<Item = &str> {
    apt_cache_depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
}

/// linux-image-<abi> and linux-headers-<abi> for one version of the metapackage.
fn abi_packages(version: &str) -> Result<Vec<String>> {
    let depends = capture(
        "apt-cache",
        &["depends", &format!("linux-image-cloud-amd64={version}")],
    )?;
    let image = depends_in(&depends)
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
