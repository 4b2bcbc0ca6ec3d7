//! The full-system tier: `cargo xtask test --system [FILTER...]`.
//!
//! A Debian 12 guest (systemd, udev, lvm2, dkms; see image.rs) boots under qemu from a
//! fresh qcow2 overlay of a cached image, with the busybox tier's scratch disks (vdb 512M,
//! vdc 256M, vdd 64M, vde 32M) and a read-only payload disk (vdf, ext4 made with `mke2fs -d`,
//! LABEL=xtask-payload): our .deb packages (`cargo xtask package`) in `debs/` and `tests/common` + `tests/system`.
//! The image's `xtask-guest.service` mounts it on /xtask and runs `tests/system/init`,
//! which runs the scenarios named on the kernel command line (`xtask.run=a,b`) one after
//! the other in this one boot: each scenario builds on a real host's state (installed
//! packages, a DKMS-built module), and a boot of Debian under TCG costs a minute.
//!
//! The console carries, per scenario, the busybox tier's markers
//! (`=== scenario system/NAME`, its output, `SCENARIO-EXIT rc`, the kernel log it
//! produced between `===DMESG===` and `===END===`); each segment gets the busybox tier's
//! verdict (exit status, then `BUG:`/`WARNING:`/`Oops`/... in the kernel log) and the same
//! report lines.

pub mod image;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::kernel::{self, Kernel};
use crate::report::{Finished, Summary, Verdict};
use crate::scenario;
use crate::vm::{self, QemuExtra, VmConfig};

/// The scenarios' directory, below the workspace root.
const DIR: &str = "tests/system";

/// Host time allowed for the guest to boot and for the shutdown, on top of the scenarios'
/// own `# TIMEOUT:`s.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(300);

/// A system scenario: `tests/system/NAME.sh`, run in the order of `# ORDER: N` (default 50,
/// then by name) so that e.g. the purge comes after everything that needs the packages.
#[derive(Clone, Debug)]
pub struct SysScenario {
    /// "system/install-and-interpose-live": the name in filters and report lines.
    pub name: String,
    pub file: String,
    pub order: u32,
    pub timeout: Duration,
    /// `# REBOOT: yes`: the scenario reboots the guest (qemu runs without -no-reboot).
    pub reboots: bool,
}

/// Every `tests/system/*.sh` whose name (`system/NAME`) contains one of `filters`.
pub fn discover(root: &Path, filters: &[String]) -> Result<Vec<SysScenario>> {
    let dir = root.join(DIR);
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(found);
    };
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path
            .extension()
            .is_some_and(|e| e == "sh")
            .then(|| path.file_stem())
            .flatten()
        else {
            continue;
        };
        let name = format!("system/{}", stem.to_string_lossy());
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        found.push(SysScenario {
            order: header(&text, "ORDER")
                .and_then(|v| v.parse().ok())
                .unwrap_or(50),
            timeout: header(&text, "TIMEOUT")
                .and_then(|v| v.parse().ok())
                .map_or(scenario::DEFAULT_TIMEOUT, Duration::from_secs),
            reboots: header(&text, "REBOOT").is_some_and(|v| v == "yes"),
            file: path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned(),
            name,
        });
    }
    found.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    Ok(found)
}

/// `# KEY: value` in the leading comment block.
fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .find_map(|l| {
            l.strip_prefix('#')?
                .trim()
                .strip_prefix(key)?
                .strip_prefix(':')
        })
        .map(str::trim)
}

/// Run the matching system scenarios on every kernel of `spec`: one boot per kernel,
/// `jobs` boots at a time.
pub fn run(root: &Path, spec: &str, jobs: usize, filters: &[String]) -> Result<bool> {
    let scenarios = discover(root, filters)?;
    if scenarios.is_empty() {
        println!("system: no scenario matches {filters:?}");
        return Ok(false);
    }
    // The image is Debian 12 and holds both of its kernels whatever `spec` says: one image,
    // one cache key. Newer suites' kernels boot only the busybox tier.
    let kernels: Vec<kernel::Kernel> = kernel::resolve(spec)?
        .into_iter()
        .filter(|k| !k.in_chroot())
        .collect();
    if kernels.is_empty() {
        println!("system: {spec}: the full-system tier boots Debian 12 and its own kernels only");
        return Ok(true);
    }
    let all = kernel::resolve_bookworm()?;
    let image = image::ensure(root, &all)?;
    let debs = debs(root)?;
    println!(
        "system: packages {}",
        debs.iter()
            .map(|d| d.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let total = scenarios.len() * kernels.len();
    println!(
        "system: {total} scenario run(s) in {} boot(s): {}",
        kernels.len(),
        scenarios
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    let mut index = 0;
    // One boot per kernel, `jobs` of them at a time; reported in kernel order.
    let outcomes: Vec<Result<vm::VmOutcome>> = std::thread::scope(|scope| {
        let mut pending = Vec::new();
        let mut done = Vec::new();
        for k in &kernels {
            if pending.len() == jobs.max(1) {
                let first: std::thread::ScopedJoinHandle<_> = pending.remove(0);
                done.push(first.join().expect("boot thread panicked"));
            }
            let (image, scenarios, debs) = (&image, &scenarios, &debs);
            pending.push(scope.spawn(move || {
                let dir = root.join("target/system/run").join(&k.release);
                boot(root, image, k, &dir, scenarios, debs, false)
            }));
        }
        done.extend(
            pending
                .into_iter()
                .map(|h| h.join().expect("boot thread panicked")),
        );
        done
    });
    for (k, out) in kernels.iter().zip(outcomes) {
        let (console, wall, boot, log, timed_out) = match &out {
            Ok(o) => (
                o.console.as_str(),
                o.wall,
                o.boot,
                o.log.clone(),
                o.timed_out,
            ),
            Err(e) => {
                println!("system: {k}: {e:#}");
                ("", Duration::ZERO, None, PathBuf::new(), false)
            }
        };
        println!(
            "system: {k}: VM ran {} s, boot {}, log {}",
            wall.as_secs(),
            boot.map_or("?".into(), |b| format!("{} s", b.as_secs())),
            log.display()
        );
        let segments = split(console);
        let mut previous_ran = true;
        for s in &scenarios {
            index += 1;
            let segment = segments.iter().find(|(n, _)| *n == s.name);
            let verdict = match segment {
                Some((_, text)) => {
                    // A timeout is charged to the scenario that was running.
                    let last = segments.last().is_some_and(|(n, _)| *n == s.name);
                    scenario::verdict(text, timed_out && last)
                }
                None if out.is_err() => Verdict::Fail("the VM did not start".into()),
                None if timed_out && previous_ran => {
                    Verdict::Fail("timeout before the scenario started".into())
                }
                None => Verdict::Fail("not run: the guest ended before it (see the log)".into()),
            };
            previous_ran = segment.is_some();
            let text = segment.map_or(console, |(_, t)| t.as_str());
            summary.record(
                index,
                total,
                &Finished {
                    kernel: &k.alias,
                    scenario: &s.name,
                    verdict: &verdict,
                    wall: scenario_time(text),
                    boot: None,
                    log: &log,
                    console: text,
                },
            );
        }
    }
    println!(
        "system: {total} run(s) in {} s",
        started.elapsed().as_secs()
    );
    Ok(summary.finish())
}

/// Boot the image on `kernel` with a fresh overlay and scratch disks, run `scenarios`.
pub fn boot(
    root: &Path,
    image: &image::Image,
    kernel: &Kernel,
    dir: &Path,
    scenarios: &[SysScenario],
    debs: &[PathBuf],
    stream: bool,
) -> Result<vm::VmOutcome> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let overlay = dir.join("root.qcow2");
    image::overlay(image, &overlay)?;
    let payload = dir.join("payload.img");
    make_payload(root, dir, debs, &payload)?;
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s.file.trim_end_matches(".sh"))
        .collect();
    let timeout = BOOT_ALLOWANCE + scenarios.iter().map(|s| s.timeout).sum::<Duration>();
    let initrd = image.initrd(kernel);
    vm::run(&VmConfig {
        kernel,
        initramfs: &initrd,
        dir: dir.to_path_buf(),
        scenario: None,
        shell: false,
        stream,
        timeout,
        extra: QemuExtra {
            append: vec![
                "root=/dev/vda".into(),
                "ro".into(),
                format!("xtask.run={}", names.join(",")),
            ],
            root_disk: Some(overlay),
            extra_disks: vec![payload],
            reboot: scenarios.iter().any(|s| s.reboots),
            ..Default::default()
        },
    })
}

/// The payload disk: `debs/` and `tests/{common,system}`, ext4 made from a directory.
fn make_payload(root: &Path, dir: &Path, debs: &[PathBuf], out: &Path) -> Result<()> {
    let stage = dir.join("payload");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(stage.join("debs"))?;
    for deb in debs {
        let name = deb.file_name().context("a .deb path has a file name")?;
        fs::copy(deb, stage.join("debs").join(name))
            .with_context(|| format!("copying {}", deb.display()))?;
    }
    for sub in ["common", "system"] {
        crate::initramfs::copy_tree(
            &root.join("tests").join(sub),
            &stage.join("tests").join(sub),
        )?;
    }
    let _ = fs::remove_file(out);
    crate::capture(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "xtask-payload",
            "-d",
            &stage.to_string_lossy(),
            &out.to_string_lossy(),
            "128M",
        ],
    )?;
    Ok(())
}

/// The packages the guest installs: what `cargo xtask package` makes now (in
/// target/package), or the .debs of the directory `$XTASK_DEBS` (e.g. a release's).
pub fn debs(root: &Path) -> Result<Vec<PathBuf>> {
    let Some(dir) = std::env::var_os("XTASK_DEBS").map(PathBuf::from) else {
        return crate::package::run(root);
    };
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    if debs.is_empty() {
        bail!("no .deb in {} ($XTASK_DEBS)", dir.display());
    }
    Ok(debs)
}

/// The console split at `=== scenario system/NAME` lines: (name, lines) in order; lines
/// before the first scenario (the boot) belong to it. A scenario that continues after a
/// reboot (`=== scenario system/NAME (boot 2)`) keeps one segment.
fn split(console: &str) -> Vec<(String, String)> {
    let mut segments: Vec<(String, String)> = Vec::new();
    let mut boot = String::new();
    for line in console.lines() {
        if let Some(rest) = line.trim().strip_prefix("=== scenario ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if segments.last().map(|(n, _)| n) != Some(&name) {
                segments.push((name, std::mem::take(&mut boot)));
            }
        }
        let text = match segments.last_mut() {
            Some((_, t)) => t,
            None => &mut boot,
        };
        text.push_str(line);
        text.push('\n');
    }
    segments
}

/// The guest's `SCENARIO-TIME <seconds>` of a segment.
fn scenario_time(segment: &str) -> Duration {
    segment
        .lines()
        .find_map(|l| l.trim().strip_prefix("SCENARIO-TIME "))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_splits_into_scenarios() {
        let console = "boot\nVM-BOOTED\n=== scenario system/a\nx\nSCENARIO-EXIT 0\n\
                       === scenario system/b\ny\n=== scenario system/b (boot 2)\nz\n";
        let s = split(console);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "system/a");
        assert!(s[0].1.starts_with("boot\nVM-BOOTED\n"));
        assert_eq!(s[1].0, "system/b");
        assert!(s[1].1.contains("y\n") && s[1].1.ends_with("z\n"));
    }

    #[test]
    fn headers_are_read() {
        let text = "#!/bin/sh\n# ORDER: 90\n# REBOOT: yes\n# TIMEOUT: 900\nx=1\n# ORDER: 5\n";
        assert_eq!(header(text, "ORDER"), Some("90"));
        assert_eq!(header(text, "REBOOT"), Some("yes"));
        assert_eq!(header(text, "TIMEOUT"), Some("900"));
        assert_eq!(header(text, "NOPE"), None);
    }
}
