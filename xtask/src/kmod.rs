//! `cargo xtask kmod`: build blk_interposer.ko out of tree for one kernel, warnings as errors.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;

pub const MODULE: &str = "blk_interposer.ko";

/// A kernel build tree to build against, and where make runs.
#[derive(Clone, Debug)]
pub struct BuildTree {
    /// The tree's release, naming the build in messages and its private directory.
    pub release: String,
    /// The tree as the host sees it.
    pub dir: PathBuf,
    /// A Debian root with its own make and gcc, to run make in (`chroot`): newer kernels'
    /// kbuild needs a newer glibc and gcc than the host has.
    pub chroot: Option<PathBuf>,
}

impl BuildTree {
    /// A kernel's tree: an installed one built with the host's tools, a newer one in its
    /// debootstrap root with that root's.
    pub fn installed(kernel: &Kernel) -> Self {
        BuildTree {
            release: kernel.release.clone(),
            dir: kernel.build_dir(),
            chroot: kernel.in_chroot().then(|| kernel.root.clone()),
        }
    }

    /// Any kernel headers tree, e.g. /lib/modules/X/build or CHROOT/usr/src/linux-headers-X.
    /// A tree inside a directory that has a /usr/bin/make and a /usr/bin/gcc* of its own is
    /// built by running make in that directory as a chroot.
    pub fn at(dir: &Path) -> Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("kernel tree {}", dir.display()))?;
        if !dir.join("Makefile").exists() {
            bail!(
                "{} is not a kernel build tree (it has no Makefile)",
                dir.display()
            );
        }
        let release = fs::read_to_string(dir.join("include/config/kernel.release"))
            .map(|r| r.trim().to_string())
            .unwrap_or_else(|_| dir.file_name().unwrap_or_default().to_string_lossy().into());
        let chroot = dir
            .ancestors()
            .skip(1)
            .filter(|a| a.parent().is_some())
            .find(|a| has_toolchain(a))
            .map(Path::to_path_buf);
        Ok(BuildTree {
            release,
            dir,
            chroot,
        })
    }

    /// `path` (on the host) as make sees it.
    fn inside(&self, path: &Path) -> PathBuf {
        match &self.chroot {
            Some(c) => Path::new("/").join(path.strip_prefix(c).expect("path in the chroot")),
            None => path.to_path_buf(),
        }
    }
}

/// Whether `root` has a make and a gcc of its own.
fn has_toolchain(root: &Path) -> bool {
    let bin = root.join("usr/bin");
    bin.join("make").exists()
        && fs::read_dir(&bin).is_ok_and(|d| {
            d.map_while(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("gcc"))
        })
}

/// Build the module for an installed `kernel`; `None` when kmod/ has no Kbuild yet.
pub fn build(root: &Path, kernel: &Kernel) -> Result<Option<PathBuf>> {
    build_tree(root, &BuildTree::installed(kernel))
}

/// Build the module against `tree` with W=1; any warning fails.
pub fn build_tree(root: &Path, tree: &BuildTree) -> Result<Option<PathBuf>> {
    let src = root.join("kmod");
    if !src.join("Kbuild").exists() {
        println!(
            "kmod: {} has no Kbuild yet, skipping the module build",
            src.display()
        );
        return Ok(None);
    }
    // A private copy per kernel: the builds never share objects, and nothing is written
    // into the source tree. Make in a chroot sees only the chroot, so the copy goes there.
    let dir = match &tree.chroot {
        Some(c) => c.join("tmp/blk-interposer-kmod").join(&tree.release),
        None => root.join("target/kmod").join(&tree.release),
    };
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
    }
    copy_sources(&src, &dir)?;

    let mut cmd = match &tree.chroot {
        Some(c) => {
            println!(
                "kmod: building {MODULE} for {} in the chroot {}",
                tree.release,
                c.display()
            );
            // objtool reads /proc: a private mount of it that ends with the build.
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--pid", "--fork"])
                .arg(format!("--mount-proc={}", c.join("proc").display()))
                .arg("chroot")
                .arg(c)
                .arg("make");
            cmd
        }
        None => {
            println!("kmod: building {MODULE} for {}", tree.release);
            Command::new("make")
        }
    };
    let mut child = cmd
        .arg("-C")
        .arg(tree.inside(&tree.dir))
        .arg(format!("M={}", tree.inside(&dir).display()))
        .arg(format!("BLK_INTERPOSER_VERSION={}", crate::VERSION))
        .args(["W=1", "modules", &format!("-j{}", jobs())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running make (is build-essential installed? try `cargo xtask setup`)")?;

    // Interleave stdout and stderr as they come, remembering every line.
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || echo_lines(BufReader::new(stderr)));
    let mut lines = echo_lines(BufReader::new(child.stdout.take().expect("piped")));
    lines.extend(err_thread.join().expect("stderr reader panicked"));
    let status = child.wait()?;
    if !status.success() {
        if let Some(e) = first_error(&lines, &dir) {
            match e.api {
                Some(api) => bail!(
                    "the kernel at {} lacks or changed {api} (first error: {}: {})",
                    tree.dir.display(),
                    e.location,
                    e.message
                ),
                None => bail!(
                    "module build for {} failed ({status}); first error: {}: {}",
                    tree.release,
                    e.location,
                    e.message
                ),
            }
        }
        bail!("module build for {} failed ({status})", tree.release);
    }
    let warnings: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains("warning:") || l.contains("WARNING:"))
        .collect();
    if !warnings.is_empty() {
        bail!(
            "module build for {} has {} warning(s), and warnings count as errors:\n{}",
            tree.release,
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

/// Print each line and return them all.
fn echo_lines(reader: impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    for line in reader.lines().map_while(Result::ok) {
        println!("  {line}");
        lines.push(line);
    }
    lines
}

/// The first compiler error of a build, and the kernel API it names, if any.
#[derive(Debug, PartialEq)]
struct CompileError {
    /// A function, type, constant or member the kernel lacks or changed.
    api: Option<String>,
    /// file:line, relative to the build's copy of kmod/.
    location: String,
    message: String,
}

/// Parse gcc's output for its first error (`file:line:col: error: message`).
fn first_error(lines: &[String], dir: &Path) -> Option<CompileError> {
    let prefix = format!("{}/", dir.display());
    lines.iter().find_map(|line| {
        let (location, message) = line.split_once(": error: ")?;
        let location = location.trim().trim_start_matches(prefix.as_str());
        // file:line:col -> file:line
        let location = match location.rsplit_once(':') {
            Some((rest, col)) if rest.contains(':') && col.parse::<u32>().is_ok() => rest,
            _ => location,
        };
        let message = match message.rfind(" [-W") {
            Some(i) => &message[..i],
            None => message,
        };
        Some(CompileError {
            api: missing_api(message),
            location: location.to_string(),
            message: message.to_string(),
        })
    })
}

/// The identifier an error message says is missing or has changed.
fn missing_api(message: &str) -> Option<String> {
    const BEFORE: &[&str] = &[
        "implicit declaration of function ",
        "too few arguments to function ",
        "too many arguments to function ",
        "unknown type name ",
        "has no member named ",
    ];
    for phrase in BEFORE {
        if let Some(i) = message.find(phrase) {
            return quoted_prefix(&message[i + phrase.len()..]);
        }
    }
    // 'X' undeclared (first use in this function)
    let i = message.find(" undeclared")?;
    quoted_prefix(&message[..i])
}

/// The identifier in quotes at the start of `s` (gcc quotes 'x' or, in UTF-8 locales, ‘x’).
fn quoted_prefix(s: &str) -> Option<String> {
    let s = s.trim_start();
    let rest = s
        .strip_prefix('\'')
        .or_else(|| s.strip_prefix('\u{2018}'))
        .or_else(|| s.strip_prefix('`'))?;
    let end = rest.find(['\'', '\u{2019}'])?;
    Some(rest[..end].to_string())
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
    use std::path::Path;

    use super::{first_error, is_build_product, CompileError};

    /// The first error of `lines` (real gcc output) for a copy of kmod/ in `dir`.
    fn first(dir: &str, lines: &[&str]) -> CompileError {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        first_error(&lines, Path::new(dir)).expect("an error line")
    }

    fn api(line: &str) -> Option<String> {
        first("/k", &[line]).api
    }

    #[test]
    fn the_first_error_names_the_missing_api() {
        // gcc 12 (host, UTF-8 locale) against 6.1 with a helper that only 6.14 needs.
        let dir = "/src/target/kmod/6.1.0-57-cloud-amd64";
        let e = first(
            dir,
            &[
                "  CC [M]  /src/target/kmod/6.1.0-57-cloud-amd64/main.o",
                "/src/target/kmod/6.1.0-57-cloud-amd64/compat.h: In function \u{2018}interposer_unfreeze_queue\u{2019}:",
                "/src/target/kmod/6.1.0-57-cloud-amd64/compat.h:95:9: error: implicit declaration of function \u{2018}blk_mq_unfreeze_queue\u{2019} [-Werror=implicit-function-declaration]",
                "/src/target/kmod/6.1.0-57-cloud-amd64/hook.c:40:9: error: implicit declaration of function \u{2018}other\u{2019} [-Werror=implicit-function-declaration]",
                "cc1: some warnings being treated as errors",
            ],
        );
        assert_eq!(
            e,
            CompileError {
                api: Some("blk_mq_unfreeze_queue".into()),
                location: "compat.h:95".into(),
                message: "implicit declaration of function \u{2018}blk_mq_unfreeze_queue\u{2019}"
                    .into(),
            }
        );
        // gcc 16 in a Debian sid chroot against 7.2.13, before the compat helper.
        let e = first(
            "/tmp/blk-interposer-kmod/7.2.13+deb14-cloud-amd64",
            &["attach.c:341:25: error: too few arguments to function \u{2018}blk_mq_unfreeze_queue\u{2019}; expected 2, have 1"],
        );
        assert_eq!(e.api.as_deref(), Some("blk_mq_unfreeze_queue"));
        assert_eq!(e.location, "attach.c:341");
    }

    #[test]
    fn every_kind_of_missing_api_is_recognized() {
        // sparc64 at 6.14-rc1 (LKML, C locale quotes).
        assert_eq!(
            api("drivers/block/sunvdc.c:1130:9: error: too many arguments to function 'blk_mq_unquiesce_queue'").as_deref(),
            Some("blk_mq_unquiesce_queue")
        );
        for (line, name) in [
            ("k7t.c:2:22: error: unknown type name \u{2018}blk_mode_t\u{2019}", "blk_mode_t"),
            ("k7t.c:2:22: error: unknown type name 'blk_mode_t'", "blk_mode_t"),
            ("k7t.c:2:48: error: \u{2018}struct s\u{2019} has no member named \u{2018}bd_disk\u{2019}", "bd_disk"),
            ("k7t.c:2:48: error: 'struct s' has no member named 'bd_disk'", "bd_disk"),
            ("k7t.c:2:60: error: \u{2018}BLK_FEAT_NOWAIT\u{2019} undeclared (first use in this function)", "BLK_FEAT_NOWAIT"),
            ("k7t.c:2:60: error: 'BLK_FEAT_NOWAIT' undeclared (first use in this function)", "BLK_FEAT_NOWAIT"),
        ] {
            assert_eq!(api(line).as_deref(), Some(name), "{line}");
        }
    }

    #[test]
    fn other_errors_name_no_api() {
        let e = first(
            "/k",
            &["error: objtool [signal.c:75]: read_stack_limit: fopen failed: No such file or directory", "main.c:3:1: error: expected \u{2018};\u{2019} before \u{2018}}\u{2019} token"],
        );
        assert_eq!(e.api, None);
        assert_eq!(e.location, "main.c:3");
        let none: Vec<String> = vec!["  CC [M]  main.o".into()];
        assert_eq!(first_error(&none, Path::new("/k")), None);
    }

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
