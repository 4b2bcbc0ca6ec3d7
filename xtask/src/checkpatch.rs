//! `checkpatch.pl --strict` over kmod/, from the kernel source package that setup installs
//! (Debian ships checkpatch only inside linux-source-6.1's tarball).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::run_cmd;

/// The files checkpatch needs beside itself.
const SCRIPTS: &[&str] = &["checkpatch.pl", "spelling.txt", "const_structs.checkpatch"];

/// LINUX_VERSION_CODE: compat.h is where an out-of-tree module must compare versions.
/// FILE_PATH_CHANGES: we check files, not a patch against MAINTAINERS.
const IGNORE: &str = "FILE_PATH_CHANGES,LINUX_VERSION_CODE";

pub fn run(root: &Path) -> Result<()> {
    let script = extract(root)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [root.join("kmod"), root.join("kmod/include/uapi")] {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h")) {
                files.push(path);
            }
        }
    }
    files.sort();
    let script = script.to_string_lossy();
    let mut args = vec![
        script.as_ref(),
        "--strict",
        "--no-tree",
        "--quiet",
        "--ignore",
        IGNORE,
        "-f",
    ];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    run_cmd("perl", &args, &[])?;
    println!("checkpatch --strict: {} files clean", files.len());
    Ok(())
}

/// target/checkpatch/scripts/checkpatch.pl, unpacked once from /usr/src/linux-source-*.tar.xz.
fn extract(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/checkpatch");
    let script = dir.join("scripts/checkpatch.pl");
    if script.exists() {
        return Ok(script);
    }
    let tarball = fs::read_dir("/usr/src")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-source-") && n.ends_with(".tar.xz"))
        });
    let Some(tarball) = tarball else {
        bail!("no /usr/src/linux-source-*.tar.xz: run `cargo xtask setup`");
    };
    fs::create_dir_all(&dir)?;
    let top = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.xz"))
        .context("tarball name")?
        .to_string();
    let members: Vec<String> = SCRIPTS
        .iter()
        .map(|s| format!("{top}/scripts/{s}"))
        .collect();
    let tarball = tarball.display().to_string();
    let dir_s = dir.display().to_string();
    let mut args = vec![
        "-xJf",
        tarball.as_str(),
        "-C",
        dir_s.as_str(),
        "--strip-components=1",
    ];
    args.extend(members.iter().map(String::as_str));
    run_cmd("tar", &args, &[])?;
    Ok(script)
}
