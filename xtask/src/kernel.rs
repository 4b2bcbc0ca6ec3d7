//! Which Debian kernels the harness builds for and boots: Debian 12's own (installed on the
//! host by `cargo xtask setup`), and the newest of newer suites, unpacked into a debootstrap
//! root of their suite that also holds the compiler their kbuild needs (`setup` makes it).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The kernel `demo` and `vm` boot when no `--kernel` is given.
pub const DEFAULT: &str = "6.12";

/// Debian 12's kernels, installed on the host: 6.1 and 6.12 from bookworm-backports.
pub const ALIASES: &[&str] = &["6.1", "6.12"];

/// A newer suite's newest cloud kernel, with its build environment, in a debootstrap root.
#[derive(Debug)]
pub struct Newer {
    /// The name `--kernel` takes.
    pub alias: &'static str,
    /// The suite the root is debootstrapped from.
    pub base: &'static str,
    /// The apt suite the kernel comes from (`apt-get -t`), when it is not `base` itself.
    pub backports: Option<&'static str>,
}

/// Debian 13's newest (trixie-backports) and unstable's (sid).
pub const NEWER: &[Newer] = &[
    Newer {
        alias: "trixie-backports",
        base: "trixie",
        backports: Some("trixie-backports"),
    },
    Newer {
        alias: "sid",
        base: "sid",
        backports: None,
    },
];

/// `--kernel` specs besides the aliases and exact releases: `all` and `default` are the four
/// kernels. `all` runs every scenario on each; `default` (what `test` and `ci` run) only
/// those marked `# KERNELS: all` on the newer ones ([`Kernel::full_under`]).
pub const ALL: &str = "all";
pub const STANDARD: &str = "default";

/// Where xtask keeps what it builds outside a checkout (the full-system tier's images, the
/// newer kernels' roots): `$XTASK_CACHE_DIR`, by default `/var/cache/blk-interposer-xtask`,
/// so every clone on the machine (CI's too) shares them.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XTASK_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/blk-interposer-xtask"))
}

impl Newer {
    /// The debootstrap root: `<cache>/chroot-<base>`.
    pub fn root(&self) -> PathBuf {
        cache_dir().join(format!("chroot-{}", self.base))
    }
}

/// A kernel to boot: its image, modules and build tree, under `root` (`/` for the host's).
#[derive(Clone, Debug)]
pub struct Kernel {
    /// What the user asked for ("6.12", "sid"), used in progress lines.
    pub alias: String,
    /// `uname -r` of the kernel ("6.12.95+deb12-cloud-amd64").
    pub release: String,
    /// `/` for a kernel installed on the host, else the debootstrap root that holds it.
    pub root: PathBuf,
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.alias)
    }
}

impl Kernel {
    /// A kernel installed on the host.
    pub fn host(alias: &str, release: &str) -> Self {
        Kernel {
            alias: alias.to_string(),
            release: release.to_string(),
            root: PathBuf::from("/"),
        }
    }

    /// Whether a run of `spec` boots every scenario on it, or only those marked
    /// `# KERNELS: all` (the newer kernels under `default`).
    pub fn full_under(&self, spec: &str) -> bool {
        spec != STANDARD || !self.in_chroot()
    }

    /// Whether it lives in a debootstrap root, not on the host.
    pub fn in_chroot(&self) -> bool {
        self.root != Path::new("/")
    }

    pub fn image(&self) -> PathBuf {
        if self.in_chroot() {
            // Debian's 7.x packages put the image beside the modules, not in /boot.
            let beside = self.modules_dir().join("vmlinuz");
            if beside.exists() {
                return beside;
            }
            self.root.join(format!("boot/vmlinuz-{}", self.release))
        } else {
            PathBuf::from(format!("/boot/vmlinuz-{}", self.release))
        }
    }

    pub fn modules_dir(&self) -> PathBuf {
        let dir = if self.in_chroot() {
            "usr/lib/modules"
        } else {
            "lib/modules"
        };
        self.root.join(dir).join(&self.release)
    }

    pub fn build_dir(&self) -> PathBuf {
        if self.in_chroot() {
            // modules/REL/build is an absolute link, true only inside the root.
            self.root
                .join("usr/src")
                .join(format!("linux-headers-{}", self.release))
        } else {
            self.modules_dir().join("build")
        }
    }
}

/// Resolve `6.1`, `6.12`, `trixie-backports`, `sid`, `all`, `default` or an exact release.
pub fn resolve(spec: &str) -> Result<Vec<Kernel>> {
    match spec {
        ALL | STANDARD => {
            let mut out = resolve_bookworm()?;
            for n in NEWER {
                out.push(resolve_newer(n)?);
            }
            Ok(out)
        }
        _ => Ok(vec![resolve_one(spec)?]),
    }
}

/// Debian 12's kernels only: the full-system tier's image is Debian 12 with both.
pub fn resolve_bookworm() -> Result<Vec<Kernel>> {
    ALIASES.iter().map(|a| resolve_one(a)).collect()
}

fn resolve_one(spec: &str) -> Result<Kernel> {
    if let Some(n) = NEWER.iter().find(|n| n.alias == spec) {
        return resolve_newer(n);
    }
    let installed = installed_releases()?;
    if installed.iter().any(|r| r == spec) {
        return Ok(Kernel::host(spec, spec));
    }
    if let Some(k) = NEWER
        .iter()
        .filter_map(|n| resolve_newer(n).ok())
        .find(|k| k.release == spec)
    {
        return Ok(k);
    }
    if !ALIASES.contains(&spec) {
        bail!(
            "unknown kernel {spec:?}: use {}, {}, {ALL}, {STANDARD}, or one of the installed \
             releases {installed:?}",
            ALIASES.join(", "),
            NEWER.iter().map(|n| n.alias).collect::<Vec<_>>().join(", "),
        );
    }
    // "6.1." must not match "6.12.x": the dot after the alias makes the prefix exact.
    let prefix = format!("{spec}.");
    let release = installed
        .into_iter()
        .filter(|r| r.starts_with(&prefix) && r.ends_with("-cloud-amd64"))
        .max_by_key(|r| version_key(r))
        .with_context(|| {
            format!(
                "no {spec}.*-cloud-amd64 kernel with headers installed: run `cargo xtask setup`"
            )
        })?;
    Ok(Kernel::host(spec, &release))
}

/// The newest cloud kernel in `n`'s root that has an image and a headers tree.
pub fn resolve_newer(n: &Newer) -> Result<Kernel> {
    let root = n.root();
    let modules = root.join("usr/lib/modules");
    let mut releases = Vec::new();
    if let Ok(dir) = fs::read_dir(&modules) {
        for entry in dir.map_while(Result::ok) {
            let release = entry.file_name().to_string_lossy().into_owned();
            let k = Kernel {
                alias: n.alias.to_string(),
                release,
                root: root.clone(),
            };
            if k.release.ends_with("-cloud-amd64")
                && k.image().exists()
                && k.build_dir().join("Makefile").exists()
                && k.modules_dir().join("modules.dep").exists()
            {
                releases.push(k);
            }
        }
    }
    releases
        .into_iter()
        .max_by_key(|k| version_key(&k.release))
        .with_context(|| {
            format!(
                "no {} kernel (image, modules and headers) in {}: run `cargo xtask setup`",
                n.alias,
                root.display()
            )
        })
}

/// Releases that have an image in /boot and a module build tree.
fn installed_releases() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/lib/modules").context("reading /lib/modules")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let k = Kernel::host(&name, &name);
        if k.image().exists() && k.build_dir().join("Makefile").exists() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Numeric fields of a release, so 6.1.0-56 sorts after 6.1.0-9.
pub fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn abi_numbers_compare_numerically() {
        assert!(version_key("6.1.0-56-cloud-amd64") > version_key("6.1.0-9-cloud-amd64"));
        assert!(version_key("6.12.95+deb12-cloud-amd64") > version_key("6.12.9+deb12-cloud-amd64"));
    }
}
