//! `cargo xtask initramfs`: pack the VM's root filesystem.
//!
//! Two gzip'd cpio archives, concatenated (the kernel unpacks them in order, later files win):
//! - `base.cpio.gz`: busybox, the host tools and their libraries, the kernel modules. Slow to
//!   gather and rarely changes, so it is cached and rebuilt only when the xtask binary or the
//!   installed packages change.
//! - `overlay.cpio.gz`: /init, /tests, the `interposer` binary, blk_interposer.ko and the
//!   modules.dep that includes it. Rebuilt every time; it is small.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;
use crate::run_cmd;

/// Host programs copied into the VM, found in the usual sbin/bin directories.
/// Busybox provides everything else (sh, mount, dd, sha256sum, timeout, ...).
const TOOLS: &[&str] = &[
    "dmsetup",
    "mke2fs",
    "mkfs.ext4",
    "e2fsck",
    "fsck.ext4",
    "tune2fs",
    "dumpe2fs",
    "debugfs",
    "mkfs.xfs",
    "xfs_repair",
    "xfs_io",
    "xfs_db",
    "xfs_freeze",
    "fsfreeze",
    "fio",
    "sgdisk",
    "blockdev",
    "wipefs",
    "blkdiscard",
    "losetup",
    "flock",
    // util-linux's: busybox's setpriv cannot change uid/gid.
    "setpriv",
    "blkid",
    "era_invalidate",
    "era_dump",
    "era_check",
    "thin_check",
    "thin_dump",
    "cache_check",
    // pvcreate, vgcreate, lvcreate, ... are `lvm <command>`
    "lvm",
];

/// Kernel modules loadable in the VM (with their dependencies). Missing ones are reported,
/// not fatal: flavours differ, and built-in ones need no file.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "dm_mod",
    "dm_era",
    "dm_snapshot",
    "dm_flakey",
    "dm_delay",
    "dm_log_writes",
    "dm_thin_pool",
    "dm_mirror",
    "dm_raid",
    "dm_writecache",
    "dm_cache",
    "dm_cache_smq",
    "dm_zero",
    "ext4",
    "xfs",
    "loop",
    "null_blk",
    "crc32c_generic",
    "crc32c-intel",
    "libcrc32c",
];

const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Paths of everything `build` produces for one kernel.
pub struct Layout {
    pub dir: PathBuf,
    base_stage: PathBuf,
    overlay_stage: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, kernel: &Kernel) -> Self {
        let dir = root.join("target/vm").join(&kernel.release);
        Layout {
            base_stage: dir.join(".stage/base"),
            overlay_stage: dir.join(".stage/overlay"),
            dir,
        }
    }

    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio.gz")
    }
}

/// Build `target/release/interposer`; `None` (with a note) while the crate does not exist.
pub fn build_cli(root: &Path) -> Result<Option<PathBuf>> {
    if !root.join("crates/interposer-cli/Cargo.toml").exists() {
        println!("initramfs: crates/interposer-cli does not exist yet, no `interposer` in the VM");
        return Ok(None);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(&cargo, &["build", "--release", "-p", "interposer-cli"], &[])?;
    if root.join("crates/vm-tools/Cargo.toml").exists() {
        run_cmd(&cargo, &["build", "--release", "-p", "vm-tools"], &[])?;
    }
    Ok(Some(root.join("target/release/interposer")))
}

/// Test programs of crates/vm-tools, installed next to `interposer` in the VM.
const VM_TOOLS: &[&str] = &["stamp-writer", "hostile-ioctl", "insn-marker"];

/// Pack `initramfs.cpio.gz` for `kernel` and return its path.
pub fn build(
    root: &Path,
    kernel: &Kernel,
    ko: Option<&Path>,
    cli: Option<&Path>,
) -> Result<PathBuf> {
    let layout = Layout::new(root, kernel);
    fs::create_dir_all(&layout.dir)
        .with_context(|| format!("creating {}", layout.dir.display()))?;
    let base = layout.dir.join("base.cpio.gz");
    let stamp_file = layout.dir.join("base.stamp");
    let stamp = base_stamp(kernel)?;
    let fresh = base.exists()
        && layout.base_stage.exists()
        && fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp);
    if !fresh {
        println!("initramfs: gathering the base image for {}", kernel.release);
        build_base(&layout.base_stage, kernel)?;
        pack(&layout.base_stage, &base)?;
        fs::write(&stamp_file, &stamp)?;
    }

    build_overlay(root, &layout, kernel, ko, cli)?;
    let overlay = layout.dir.join("overlay.cpio.gz");
    pack(&layout.overlay_stage, &overlay)?;

    let out = layout.initramfs();
    let mut bytes = fs::read(&base)?;
    bytes.extend(fs::read(&overlay)?);
    // Renamed into place, so that a VM started by another xtask run never reads a half-written
    // initramfs ("Initramfs unpacking failed: read error").
    let tmp = out.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &out).with_context(|| format!("renaming {} into place", tmp.display()))?;
    println!("initramfs: {} ({} MiB)", out.display(), bytes.len() >> 20);
    Ok(out)
}

/// Changes whenever xtask is rebuilt or a package is installed: both can change the base.
fn base_stamp(kernel: &Kernel) -> Result<String> {
    let mtime = |p: &Path| -> Result<String> {
        let m = fs::metadata(p).with_context(|| format!("stat {}", p.display()))?;
        Ok(format!("{:?}", m.modified()?))
    };
    let exe = std::env::current_exe()?;
    Ok(format!(
        "{}\n{}\n{}\n",
        kernel.release,
        mtime(&exe)?,
        mtime(Path::new("/var/lib/dpkg/status"))?
    ))
}

fn build_base(stage: &Path, kernel: &Kernel) -> Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("cleaning {}", stage.display()))?;
    }
    skeleton(stage)?;
    for d in ["dev", "proc", "sys", "tmp", "run", "mnt", "root", "etc"] {
        fs::create_dir_all(stage.join(d))?;
    }
    // Tools decide "is it mounted?" from /etc/mtab.
    symlink("/proc/self/mounts", stage.join("etc/mtab"))?;

    let mut copied = HashSet::new();
    // /bin/sh must exist before /init can run `busybox --install -s`.
    install(stage, Path::new("/bin/busybox"), &mut copied)?;
    symlink("busybox", stage.join("usr/bin/sh"))?;

    let mut missing = Vec::new();
    for tool in TOOLS {
        match SBIN_DIRS
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
        {
            Some(path) => install(stage, &path, &mut copied)?,
            None => missing.push(*tool),
        }
    }
    if !missing.is_empty() {
        println!(
            "initramfs: note: not installed on the host, left out: {}",
            missing.join(" ")
        );
    }
    install_modules(stage, kernel)?;
    depmod(stage, kernel)
}

/// Merged-/usr layout like the host, so the paths ldd prints are valid in the VM.
fn skeleton(stage: &Path) -> Result<()> {
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] {
        fs::create_dir_all(stage.join(d))
            .with_context(|| format!("creating {d} in {}", stage.display()))?;
    }
    for d in ["bin", "sbin", "lib", "lib64"] {
        symlink(format!("usr/{d}"), stage.join(d))?;
    }
    Ok(())
}

/// Copy a host file to the same path under `stage`, symlinks as symlinks, ELF files with
/// the shared libraries ldd reports.
fn install(stage: &Path, host: &Path, copied: &mut HashSet<PathBuf>) -> Result<()> {
    if !copied.insert(host.to_path_buf()) {
        return Ok(());
    }
    let dst = stage.join(host.strip_prefix("/").unwrap_or(host));
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    let meta = fs::symlink_metadata(host).with_context(|| format!("stat {}", host.display()))?;
    if meta.file_type().is_symlink() {
        // e.g. era_invalidate -> pdata_tools: keep the link, argv[0] selects the tool.
        let real = fs::canonicalize(host)?;
        let _ = fs::remove_file(&dst);
        symlink(&real, &dst)?;
        return install(stage, &real, copied);
    }
    fs::copy(host, &dst)
        .with_context(|| format!("copying {} to {}", host.display(), dst.display()))?;
    if is_elf(host)? {
        for lib in shared_libraries(host)? {
            install(stage, &lib, copied)?;
        }
    }
    Ok(())
}

fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let n = fs::File::open(path)?.read(&mut magic)?;
    Ok(n == 4 && magic == *b"\x7fELF")
}

/// Library paths from ldd: "libc.so.6 => /lib/.../libc.so.6 (0x...)" and "/lib64/ld-linux...".
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    // ldd exits 1 for static binaries ("not a dynamic executable"): no libraries.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            bail!("{}: missing library: {}", binary.display(), line.trim());
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Copy MODULES and their dependencies, decompressed: busybox modprobe reads only plain .ko.
fn install_modules(stage: &Path, kernel: &Kernel) -> Result<()> {
    let release = &kernel.release;
    let mut missing = Vec::new();
    let mut files = Vec::new();
    for module in MODULES {
        // -d: a newer kernel's modules are in its debootstrap root (`/` is the host's).
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(&kernel.root)
            .args(["-S", release, "--show-depends", module])
            .output()
            .context("running modprobe --show-depends (is kmod installed?)")?;
        if !out.status.success() {
            missing.push(*module);
            continue;
        }
        // "insmod /lib/modules/<rel>/kernel/.../dm-mod.ko.xz" or "builtin ext4".
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                let path = path.split_whitespace().next().unwrap_or_default();
                files.push(PathBuf::from(path));
            }
        }
    }
    if !missing.is_empty() {
        println!(
            "initramfs: note: no module for {release}: {}",
            missing.join(" ")
        );
    }
    files.sort();
    files.dedup();
    for file in &files {
        let name = file.to_string_lossy();
        let (plain, decompressor) = if let Some(p) = name.strip_suffix(".xz") {
            (p, Some("xz"))
        } else if let Some(p) = name.strip_suffix(".zst") {
            (p, Some("zstd"))
        } else {
            (name.as_ref(), None)
        };
        // modprobe -d prints ROOT/lib/modules/...: the guest's path is below ROOT.
        let inside = Path::new(plain)
            .strip_prefix(&kernel.root)
            .unwrap_or(Path::new(plain));
        let dst = stage.join(inside);
        fs::create_dir_all(dst.parent().expect("module path has a parent"))?;
        match decompressor {
            Some(tool) => {
                let out = Command::new(tool)
                    .arg("-dc")
                    .arg(file)
                    .output()
                    .with_context(|| format!("running {tool} (try `cargo xtask setup`)"))?;
                if !out.status.success() {
                    bail!(
                        "{tool} -dc {name} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                fs::write(&dst, out.stdout)?;
            }
            None => {
                fs::copy(file, &dst)?;
            }
        }
    }
    // depmod needs modules.order and modules.builtin*; modprobe of a built-in is then a no-op.
    let host = kernel.modules_dir();
    let dst = stage.join("lib/modules").join(release);
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        if host.join(f).exists() {
            fs::copy(host.join(f), dst.join(f))?;
        }
    }
    Ok(())
}

fn depmod(stage: &Path, kernel: &Kernel) -> Result<()> {
    run_cmd(
        "depmod",
        &["-b", &stage.to_string_lossy(), &kernel.release],
        &[],
    )
}

fn build_overlay(
    root: &Path,
    layout: &Layout,
    kernel: &Kernel,
    ko: Option<&Path>,
    cli: Option<&Path>,
) -> Result<()> {
    let stage = &layout.overlay_stage;
    if stage.exists() {
        fs::remove_dir_all(stage)?;
    }
    skeleton(stage)?;

    let init = root.join("tests/common/init");
    fs::copy(&init, stage.join("init")).with_context(|| format!("copying {}", init.display()))?;
    fs::set_permissions(stage.join("init"), fs::Permissions::from_mode(0o755))?;
    // bench/: the guest side of `cargo xtask bench`; experiments/: run by hand with
    // `cargo xtask vm --scenario experiments/NAME.sh`. `test` never runs either.
    for sub in ["common", "scenarios", "bench", "experiments"] {
        copy_tree(
            &root.join("tests").join(sub),
            &stage.join("tests").join(sub),
        )?;
    }

    if let Some(cli) = cli {
        let dst = stage.join("usr/bin/interposer");
        fs::copy(cli, &dst).with_context(|| format!("copying {}", cli.display()))?;
        let mut copied = HashSet::new();
        for lib in shared_libraries(cli)? {
            install(stage, &lib, &mut copied)?;
        }
        // Built by build_cli into the same directory.
        for tool in VM_TOOLS {
            let src = cli.with_file_name(tool);
            if src.exists() {
                fs::copy(&src, stage.join("usr/bin").join(tool))
                    .with_context(|| format!("copying {}", src.display()))?;
                for lib in shared_libraries(&src)? {
                    install(stage, &lib, &mut copied)?;
                }
            }
        }
    }

    // extra/ is where `modprobe blk_interposer` finds it; depmod runs over base + module.
    let rel_extra = Path::new("lib/modules").join(&kernel.release).join("extra");
    let base_extra = layout.base_stage.join(&rel_extra);
    let _ = fs::remove_dir_all(&base_extra);
    if let Some(ko) = ko {
        for dir in [&base_extra, &stage.join(&rel_extra)] {
            fs::create_dir_all(dir)?;
            fs::copy(ko, dir.join(crate::kmod::MODULE))?;
        }
    }
    depmod(&layout.base_stage, kernel)?;
    let modules = Path::new("lib/modules").join(&kernel.release);
    fs::create_dir_all(stage.join(&modules))?;
    for entry in fs::read_dir(layout.base_stage.join(&modules))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("modules.") {
            fs::copy(entry.path(), stage.join(&modules).join(entry.file_name()))?;
        }
    }
    Ok(())
}

pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst)?;
    let Ok(entries) = fs::read_dir(src) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// newc cpio of `dir`, owned by root, compressed with gzip -1 (packing speed matters more
/// than size: the archive is repacked for every test run).
fn pack(dir: &Path, out: &Path) -> Result<()> {
    let script = "cd \"$1\" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 > \"$2\"";
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", script, "pack"])
        .arg(dir)
        .arg(out)
        .status()
        .context("running cpio | gzip")?;
    if !status.success() {
        bail!(
            "packing {} into {} failed ({status})",
            dir.display(),
            out.display()
        );
    }
    Ok(())
}
