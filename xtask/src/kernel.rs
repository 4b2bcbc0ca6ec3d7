//! Which installed Debian kernels the harness builds for and boots.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The kernel `demo` and `vm` boot when no `--kernel` is given.
pub const DEFAULT: &str = "6.12";

/// The short names `--kernel` accepts besides `all` and an exact release.
pub const ALIASES: &[&str] = &["6.1", "6.12"];

/// An installed kernel: image in /boot, modules and build tree in /lib/modules.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// What the user asked for ("6.12"), used in progress lines.
    pub alias: String,
    /// `uname -r` of the kernel ("6.12.95+deb12-cloud-amd64").
    pub release: String,
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.alias)
    }
}

impl Kernel {
    pub fn image(&self) -> PathBuf {
        PathBuf::from(format!("/boot/vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        Path::new("/lib/modules").join(&self.release)
    }

    pub fn build_dir(&self) -> PathBuf {
        self.modules_dir().join("build")
    }
}

/// Resolve `6.1`, `6.12`, `all` or an exact release to installed kernels.
pub fn resolve(spec: &str) -> Result<Vec<Kernel>> {
    if spec == "all" {
        return ALIASES.iter().map(|a| resolve_one(a)).collect();
    }
    Ok(vec![resolve_one(spec)?])
}

fn resolve_one(spec: &str) -> Result<Kernel> {
    let installed = installed_releases()?;
    if installed.iter().any(|r| r == spec) {
        return Ok(Kernel {
            alias: spec.to_string(),
            release: spec.to_string(),
        });
    }
    if !ALIASES.contains(&spec) {
        bail!(
            "unknown kernel {spec:?}: use {}, all, or one of the installed releases {installed:?}",
            ALIASES.join(", ")
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
    Ok(Kernel {
        alias: spec.to_string(),
        release,
    })
}

/// Releases that have an image in /boot and a module build tree.
fn installed_releases() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/lib/modules").context("reading /lib/modules")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let k = Kernel {
            alias: name.clone(),
            release: name.clone(),
        };
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
