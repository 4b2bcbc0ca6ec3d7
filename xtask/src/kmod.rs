//! `cargo xtask kmod`: build blk_interposer.ko out of tree for one kernel, warnings as errors.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;

pub const MODULE: &str = "blk_interposer.ko";

/// Build the module for `kernel`; `None` when kmod/ has no Kbuild yet.
pub fn build(root: &Path, kernel: &Kernel) -> Result<Option<PathBuf>> {
    let src = root.join("kmod");
    if !src.join("Kbuild").exists() {
        println!(
            "kmod: {} has no Kbuild yet, skipping the module build",
            src.display()
        );
        return Ok(None);
    }
    // A private copy per kernel: the two builds never share objects, and nothing is
    // written into the source tree.
    let dir = root.join("target/kmod").join(&kernel.release);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
    }
    copy_sources(&src, &dir)?;

    println!("kmod: building {MODULE} for {}", kernel.release);
    let mut child = Command::new("make")
        .arg("-C")
        .arg(kernel.build_dir())
        .arg(format!("M={}", dir.display()))
        .arg(format!("BLK_INTERPOSER_VERSION={}", crate::VERSION))
        .args(["W=1", "modules", &format!("-j{}", jobs())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running make (is build-essential installed? try `cargo xtask setup`)")?;

    // Interleave stdout and stderr as they come, remembering every warning.
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || echo_lines(BufReader::new(stderr)));
    let mut warnings = echo_lines(BufReader::new(child.stdout.take().expect("piped")));
    warnings.extend(err_thread.join().expect("stderr reader panicked"));
    let status = child.wait()?;
    if !status.success() {
        bail!("module build for {} failed ({status})", kernel.release);
    }
    if !warnings.is_empty() {
        bail!(
            "module build for {} has {} warning(s), and warnings count as errors:\n{}",
            kernel.release,
            warnings.len(),
            warnings.join("\n")
        );
    }
    let ko = dir.join(MODULE);
    if !ko.exists() {
        bail!("make succeeded but produced no {}", ko.display());
    }
    Ok(Some(ko))
}

/// Print each line and return those that are compiler or modpost warnings.
fn echo_lines(reader: impl BufRead) -> Vec<String> {
    let mut warnings = Vec::new();
    for line in reader.lines().map_while(Result::ok) {
        println!("  {line}");
        if line.contains("warning:") || line.contains("WARNING:") {
            warnings.push(line);
        }
    }
    warnings
}

/// Copy the source tree, leaving out build products of an in-tree `make`.
pub fn copy_sources(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let from = entry.path();
        let to = dst.join(&name);
        if entry.file_type()?.is_dir() {
            if name != "build" {
                copy_sources(&from, &to)?;
            }
        } else if !is_build_product(&name) {
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

fn is_build_product(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[".o", ".ko", ".mod", ".mod.c", ".cmd", ".order", ".symvers"];
    name.starts_with('.') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::is_build_product;

    #[test]
    fn sources_are_copied_and_objects_are_not() {
        assert!(!is_build_product("main.c"));
        assert!(!is_build_product("Kbuild"));
        assert!(!is_build_product("compat.h"));
        assert!(is_build_product("main.o"));
        assert!(is_build_product(".main.o.cmd"));
        assert!(is_build_product("blk_interposer.mod.c"));
        assert!(is_build_product("Module.symvers"));
    }
}
