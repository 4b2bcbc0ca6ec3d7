//! Scenario files: discovery, per-scenario settings, the verdict, and the scaffold.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::report::Verdict;

/// Applies unless the scenario has a `# TIMEOUT: <seconds>` line.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// `# ACCEL:` values a scenario may ask for (anything else is refused at discovery).
const ACCELS: &[&str] = &["tcg,thread=multi", "tcg,thread=single"];

/// Any of these in the console log fails the scenario, whatever its exit code.
pub const KERNEL_ERRORS: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "Kernel panic",
    "Call Trace",
    "blocked for more than",
    "general protection fault",
    "UBSAN",
    "KASAN",
    "list_del corruption",
    "detected stall",
];

/// A scenario file, named by its path below tests/scenarios ("vm/boots-with-tools.sh").
#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: String,
    pub timeout: Duration,
    /// `# ACCEL: tcg,thread=multi`: the scenario's `-accel`, unless $XTASK_ACCEL is set.
    pub accel: Option<String>,
    /// `# KERNELS: all`: in the representative subset that `test` (and CI) runs on the newer
    /// suites' kernels too; every scenario runs on Debian 12's, and on all with `--kernel all`.
    pub every_kernel: bool,
}

impl Scenario {
    /// "vm/boots-with-tools": the name in progress lines and the run directory.
    pub fn name(&self) -> &str {
        self.path.trim_end_matches(".sh")
    }

    /// How its VM departs from the default one.
    pub fn qemu_extra(&self) -> crate::vm::QemuExtra {
        crate::vm::QemuExtra {
            accel: self
                .accel
                .clone()
                .filter(|_| std::env::var_os("XTASK_ACCEL").is_none()),
            ..Default::default()
        }
    }
}

/// Every `tests/scenarios/**/*.sh` whose path contains one of `filters` (all if none), sorted.
pub fn discover(root: &Path, filters: &[String]) -> Result<Vec<Scenario>> {
    let base = root.join("tests/scenarios");
    let mut paths = Vec::new();
    walk(&base, &base, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .filter(|p| filters.is_empty() || filters.iter().any(|f| p.contains(f.as_str())))
        .map(|path| {
            let text = fs::read_to_string(base.join(&path))
                .with_context(|| format!("reading scenario {path}"))?;
            from_text(path, &text)
        })
        .collect()
}

/// One script by its path below tests/scenarios, or `experiments/NAME.sh` (below tests/:
/// run by hand with `cargo xtask vm --scenario`, never by `test`).
pub fn load(root: &Path, path: &str) -> Result<Scenario> {
    let file = if path.starts_with("experiments/") {
        root.join("tests").join(path)
    } else {
        root.join("tests/scenarios").join(path)
    };
    let text = fs::read_to_string(&file)
        .with_context(|| format!("no scenario or experiment {}", file.display()))?;
    from_text(path.to_string(), &text)
}

fn from_text(path: String, text: &str) -> Result<Scenario> {
    let accel = header_value(text, "ACCEL:").map(str::to_string);
    if let Some(a) = &accel {
        if !ACCELS.contains(&a.as_str()) {
            bail!("scenario {path}: `# ACCEL: {a}` is not one of {ACCELS:?}");
        }
    }
    let every_kernel = match header_value(text, "KERNELS:") {
        None => false,
        Some("all") => true,
        Some(other) => bail!("scenario {path}: `# KERNELS: {other}`: the only value is `all`"),
    };
    Ok(Scenario {
        timeout: header_timeout(text).unwrap_or(DEFAULT_TIMEOUT),
        accel,
        every_kernel,
        path,
    })
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(base, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "sh") {
            let rel = path.strip_prefix(base).expect("walk stays below base");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// `# TIMEOUT: 900` anywhere in the leading comment block.
fn header_timeout(text: &str) -> Option<Duration> {
    header_value(text, "TIMEOUT:")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
}

/// The value of `# KEY value` in the leading comment block, trimmed.
fn header_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .find_map(|l| l.strip_prefix('#')?.trim().strip_prefix(key))
        .map(str::trim)
}

/// Mitigation advisories the kernel prints at boot on some CPU models (`cargo xtask test
/// --cpus`): arch/x86/kernel/cpu/bugs.c prefixes its messages with the issue's name, so
/// its `pr_err("WARNING: ...")` reads `RETBleed: WARNING: ...`. They say what the CPU
/// lacks, not that the kernel went wrong; a kernel WARN() splat starts with `WARNING:`.
const MITIGATION_ADVISORIES: &[&str] = &[
    "RETBleed: WARNING:",
    "ITS: WARNING:",
    "Spectre V2 : WARNING:",
    "Speculative Return Stack Overflow: WARNING:",
];

/// The kernel messages on a console line: the text after each printk timestamp
/// (`[   12.345678] `), which may follow userspace output on the same line.
pub fn kernel_messages(line: &str) -> impl Iterator<Item = &str> {
    line.match_indices('[').filter_map(|(i, _)| {
        let (stamp, message) = line[i + 1..].split_once(']')?;
        let is_stamp = stamp
            .trim_start()
            .split_once('.')
            .is_some_and(|(secs, micros)| {
                !secs.is_empty()
                    && secs.bytes().all(|b| b.is_ascii_digit())
                    && micros.len() == 6
                    && micros.bytes().all(|b| b.is_ascii_digit())
            });
        is_stamp.then_some(message)
    })
}

/// A kernel message that reports one of KERNEL_ERRORS (and is no mitigation advisory).
/// Userspace saying "WARNING:" (sha256sum -c, mkfs) is not a kernel error.
pub fn is_kernel_error(line: &str) -> bool {
    kernel_messages(line).any(|message| {
        KERNEL_ERRORS.iter().any(|e| message.contains(e))
            && !MITIGATION_ADVISORIES
                .iter()
                .any(|a| message.trim_start().starts_with(a))
    })
}

/// PASS iff the guest printed `SCENARIO-EXIT 0` and the kernel reported no error;
/// SKIP if it also printed `SCENARIO-SKIP <reason>`.
pub fn verdict(console: &str, timed_out: bool) -> Verdict {
    if let Some(line) = console.lines().find(|l| is_kernel_error(l)) {
        return Verdict::Fail(format!("kernel log: {}", line.trim()));
    }
    if timed_out {
        return Verdict::Fail("timeout".into());
    }
    let exit = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("SCENARIO-EXIT "))
        .map(|rc| rc.trim().to_string());
    match exit.as_deref() {
        None => Verdict::Fail("no SCENARIO-EXIT line (the VM died or /init failed)".into()),
        Some("0") => match console
            .lines()
            .find_map(|l| l.trim().strip_prefix("SCENARIO-SKIP"))
        {
            Some(reason) => Verdict::Skip(reason.trim().to_string()),
            None => Verdict::Pass,
        },
        Some(rc) => {
            let why = console
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("FAIL: "))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Verdict::Fail(format!("exit {rc}{why}"))
        }
    }
}

/// `cargo xtask new-scenario GROUP/NAME`: write tests/scenarios/GROUP/NAME.sh from the template.
pub fn scaffold(root: &Path, name: &str) -> Result<()> {
    let name = name.trim_end_matches(".sh");
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let Some((group, what)) = name.split_once('/').filter(|(g, w)| valid(g) && valid(w)) else {
        bail!("expected GROUP/NAME in lower-case-with-dashes, like attach/detach-under-write-load-loses-no-io");
    };
    let path = root
        .join("tests/scenarios")
        .join(group)
        .join(format!("{what}.sh"));
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    fs::create_dir_all(path.parent().expect("has a parent"))?;
    fs::write(&path, TEMPLATE.replace("@NAME@", name))
        .with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    println!("created {}", path.display());
    println!("run it with: cargo xtask test --no-unit {name}");
    Ok(())
}

const TEMPLATE: &str = r#"#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# @NAME@: what this proves, in one sentence a reviewer can check.
#
# How: the steps, and why they prove it. For a regression, cite the fix as
# commit <12 hex> ("subject").
#
# TIMEOUT: 600
# (Optional: `# KERNELS: all` puts it in the subset that `cargo xtask test` also boots on the
# newer kernels, trixie-backports and sid; every scenario runs on 6.1 and 6.12.)
# (Optional, for a scenario about concurrency: `# ACCEL: tcg,thread=multi` gives each
# vCPU its own host thread; the default runs both vCPUs on one, see xtask/src/vm.rs.)
#
# The VM runs this as `sh /tests/scenarios/@NAME@.sh` in /tmp, under busybox sh,
# after a fresh boot with five empty disks: /dev/vda 128M, vdb 512M, vdc 256M, vdd 64M, vde 32M.
# PASS: exit 0 and no BUG/WARNING/Oops/... in the kernel log. FAIL: `_fail MSG` or any
# failing command (set -e below). SKIP: `_skip REASON` for a missing requirement.
# Conventions: tabs, quoted expansions, `_`-prefixed helpers and CAPS variables are the
# framework's (tests/common/rc documents each helper).
# The host runs qemu monitor commands the scenario asks for: `_qemu_monitor device_del vdc`
# then `_wait_disk_gone vdc` hot-unplugs a disk (the disks' qemu ids are vda..vde).

DESCRIPTION="does what this scenario proves"

. /tests/common/rc
set -e

_have_program fio
_load_module

_log "Running @NAME@: $DESCRIPTION"

_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt

# ... the test ...

umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
_log "Test complete"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header_overrides_default() {
        let text = "#!/bin/sh\n# SPDX\n#\n# TIMEOUT: 900\nDESCRIPTION=x\n# TIMEOUT: 5\n";
        assert_eq!(header_timeout(text), Some(Duration::from_secs(900)));
        assert_eq!(header_timeout("#!/bin/sh\necho hi\n# TIMEOUT: 5\n"), None);
    }

    #[test]
    fn accel_header_is_checked() {
        let s = from_text(
            "a/b.sh".into(),
            "#!/bin/sh\n# ACCEL: tcg,thread=multi\nx=1\n",
        )
        .unwrap();
        assert_eq!(s.accel.as_deref(), Some("tcg,thread=multi"));
        assert_eq!(
            from_text("a/b.sh".into(), "#!/bin/sh\nx=1\n")
                .unwrap()
                .accel,
            None
        );
        let e = from_text("a/b.sh".into(), "# ACCEL: kvm\n").unwrap_err();
        assert!(
            format!("{e}").contains("`# ACCEL: kvm` is not one of"),
            "{e}"
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict("x\nSCENARIO-EXIT 0\n===DMESG===\n", false),
            Verdict::Pass
        );
        assert_eq!(
            verdict("SCENARIO-SKIP no xfs\nSCENARIO-EXIT 0\n", false),
            Verdict::Skip("no xfs".into())
        );
        assert_eq!(
            verdict("FAIL: sums differ\nSCENARIO-EXIT 1\n", false),
            Verdict::Fail("exit 1: sums differ".into())
        );
        assert!(matches!(
            verdict("SCENARIO-EXIT 0\n[    1.000000] WARNING: CPU: 0\n", false),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            verdict("[   12.345678] Kernel panic - not syncing\n", false),
            Verdict::Fail(_)
        ));
        // Userspace warnings and our own _log lines are not kernel errors.
        assert_eq!(
            verdict(
                "sha256sum: WARNING: 1 of 2\n[5.41] BUG: x\nSCENARIO-EXIT 0\n",
                false
            ),
            Verdict::Pass
        );
        assert!(is_kernel_error(
            "fio: done[  100.123456] BUG: kernel NULL pointer"
        ));
        assert!(matches!(
            verdict("SCENARIO-EXIT 0\n", true),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn mitigation_advisories_are_not_kernel_errors() {
        assert!(!is_kernel_error(
            "[    0.151234] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!"
        ));
        assert!(!is_kernel_error("[    0.151234] Speculative Return Stack Overflow: WARNING: See https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation options."));
        assert!(is_kernel_error(
            "[   42.000001] WARNING: CPU: 1 PID: 7 at block/blk-core.c:1 x"
        ));
        assert!(is_kernel_error(
            "[   42.000001] RETBleed: Mitigation: x [   42.000002] WARNING: CPU: 1"
        ));
        assert_eq!(
            kernel_messages("fio: done[  100.123456] BUG: x").collect::<Vec<_>>(),
            vec![" BUG: x"]
        );
        assert_eq!(kernel_messages("[5.41] BUG: x").count(), 0);
    }

    #[test]
    fn template_has_a_timeout_header() {
        assert_eq!(header_timeout(TEMPLATE), Some(Duration::from_secs(600)));
        assert!(!from_text("x.sh".into(), TEMPLATE).unwrap().every_kernel);
    }

    #[test]
    fn kernels_all_marks_the_newer_kernels_subset() {
        let marked = "#!/bin/sh\n#\n# TIMEOUT: 300\n# KERNELS: all\n\nDESCRIPTION=x\n";
        assert!(from_text("a.sh".into(), marked).unwrap().every_kernel);
        // Below the header it is not a header.
        let late = "#!/bin/sh\nDESCRIPTION=x\n# KERNELS: all\n";
        assert!(!from_text("b.sh".into(), late).unwrap().every_kernel);
        let wrong = "#!/bin/sh\n# KERNELS: 7.3\n";
        let err = from_text("c.sh".into(), wrong).unwrap_err().to_string();
        assert!(err.contains("the only value is `all`"), "{err}");
    }
}
