//! Boot one qemu VM (single-threaded TCG, or $XTASK_ACCEL) and collect its console.
//!
//! The VM contract, shared with tests/common/init:
//! - kernel command line `scenario=<path under tests/scenarios>` (and `shell=1` for a shell);
//! - disks /dev/vda 128M, vdb 512M, vdc 256M, vdd 64M, vde 32M: fresh sparse raw files per
//!   run, in the run directory, with qemu device ids vda..vde (`device_del vdb` on the monitor
//!   socket unplugs one; the socket lives in the temp dir, see `monitor_socket`);
//! - the console prints `VM-BOOTED`, the scenario's output, `SCENARIO-EXIT <rc>`, then the
//!   whole dmesg between `===DMESG===` and `===END===`, and powers off;
//! - a console line `XTASK-MONITOR <command>` (printed by `_qemu_monitor` in tests/common/rc)
//!   asks the host to run `<command>` on the qemu monitor: the guest cannot reach the socket
//!   itself. Only the commands in [`MONITOR_COMMANDS`] are forwarded; the reply is logged as
//!   `HOST: monitor ...`. There is no channel back: the scenario waits for the effect (the
//!   disk vanishing from /sys/block). Not in `--shell` mode, whose console is the terminal.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::kernel::Kernel;

/// Disk name and size in MiB, in the order the guest enumerates them.
pub const DISKS: &[(&str, u64)] = &[
    ("vda", 128),
    ("vdb", 512),
    ("vdc", 256),
    ("vdd", 64),
    ("vde", 32),
];

/// Monitor commands a scenario may request with `XTASK-MONITOR`: hot-unplug and
/// hot-plug of devices and drives, and queries. Anything else is refused (and logged).
pub const MONITOR_COMMANDS: &[&str] =
    &["device_del", "device_add", "drive_del", "drive_add", "info"];

/// The accelerator unless $XTASK_ACCEL or the run says otherwise: one host thread runs
/// both vCPUs in turn.  Multi-threaded TCG (a host thread per vCPU) three times left a
/// guest vCPU that took no timer interrupt after early boot, and ran stale kernel text
/// (an int3 Oops) in an experiment without the module (README, Tests).  A scenario may
/// still ask for `tcg,thread=multi` in its header (`# ACCEL:`).
pub const DEFAULT_ACCEL: &str = "tcg,thread=single";

/// qemu's `-cpu` unless the run says otherwise. -cx16: qemu TCG's CMPXCHG16B breaks SLUB
/// on 6.12; +rdrand: 6.1 soft-locks in urandom_read_iter with 2 vCPUs without it
/// (prototype/NOTES.md). `cargo xtask test --cpus` keeps both on its models (xtask/src/cpus.rs).
pub const DEFAULT_CPU: &str = "qemu64,+rdrand,-cx16";

/// After the first kernel error on the console the VM runs this much longer (for the
/// rest of the report), then it is stopped: a stalled guest otherwise holds a CI slot
/// until the scenario's timeout.
const AFTER_KERNEL_ERROR: Duration = Duration::from_secs(60);

/// The marker of a monitor request on the console.
const MONITOR_REQUEST: &str = "XTASK-MONITOR ";

/// How one VM run is set up.
pub struct VmConfig<'a> {
    pub kernel: &'a Kernel,
    pub initramfs: &'a Path,
    /// Run directory: disks and console.log live here.
    pub dir: PathBuf,
    /// Path below tests/scenarios, or None to boot straight into the shell.
    pub scenario: Option<String>,
    /// Interactive: the console is the terminal, nothing is captured.
    pub shell: bool,
    /// Echo the console to stdout while capturing it.
    pub stream: bool,
    pub timeout: Duration,
    /// What the benchmark changes; `Default` for scenarios.
    pub extra: QemuExtra,
}

/// Departures from the scenario VM, for `cargo xtask bench`.
#[derive(Clone, Debug, Default)]
pub struct QemuExtra {
    /// Replaces `-accel` ([`DEFAULT_ACCEL`], or $XTASK_ACCEL), e.g. `tcg,thread=multi`.
    pub accel: Option<String>,
    /// Replaces `-smp 2`.
    pub smp: Option<u32>,
    /// Replaces `-cpu` ([`DEFAULT_CPU`]), e.g. `EPYC-Milan,+rdrand,-cx16`.
    pub cpu: Option<String>,
    /// Appended to the kernel command line.
    pub append: Vec<String>,
    /// Appended to qemu's arguments, e.g. `-plugin`.
    pub args: Vec<String>,
    /// The full-system tier: a qcow2 overlay that is /dev/vda instead of the empty one.
    pub root_disk: Option<PathBuf>,
    /// More fresh sparse scratch disks after vde (vdf, ...), sizes in MiB: the bench's
    /// snapshot-cost part needs a larger data disk and COW store than the scenarios.
    pub scratch_mib: Vec<u64>,
    /// Read-only raw disks after all scratch disks, e.g. the system tier's payload.
    pub extra_disks: Vec<PathBuf>,
    /// Let a guest reboot (no `-no-reboot`): the system tier's reboot scenario.
    pub reboot: bool,
}

/// What came back from a VM run.
pub struct VmOutcome {
    pub console: String,
    pub log: PathBuf,
    pub timed_out: bool,
    /// The console showed a kernel error (and the VM was stopped soon after).
    pub kernel_error: bool,
    pub wall: Duration,
    /// Host time from qemu start to the guest's `VM-BOOTED` line.
    pub boot: Option<Duration>,
}

pub fn run(cfg: &VmConfig) -> Result<VmOutcome> {
    fs::create_dir_all(&cfg.dir).with_context(|| format!("creating {}", cfg.dir.display()))?;
    let mut cmd = qemu_command(cfg)?;
    let log = cfg.dir.join("console.log");
    let start = Instant::now();

    if cfg.shell {
        let status = cmd.status().context("running qemu-system-x86_64")?;
        println!(
            "vm: qemu exited ({status}) after {} s",
            start.elapsed().as_secs()
        );
        return Ok(VmOutcome {
            console: String::new(),
            log,
            timed_out: false,
            kernel_error: false,
            wall: start.elapsed(),
            boot: None,
        });
    }

    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (try `cargo xtask setup`)")?;
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    drop(tx);

    let mut file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut console = String::new();
    let mut boot = None;
    let mut timed_out = false;
    let mut deadline = start + cfg.timeout;
    let mut kernel_error = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if boot.is_none() && line.contains("VM-BOOTED") {
                    boot = Some(start.elapsed());
                }
                if !kernel_error && crate::scenario::is_kernel_error(&line) {
                    kernel_error = true;
                    deadline = deadline.min(Instant::now() + AFTER_KERNEL_ERROR);
                }
                let reply = monitor_request(&line).map(|cmd| {
                    let answer = match monitor_command(&monitor_socket(&cfg.dir), cmd) {
                        Ok(text) => text,
                        Err(e) => format!("failed: {e:#}"),
                    };
                    format!("HOST: monitor `{cmd}`: {answer}")
                });
                for line in std::iter::once(line).chain(reply) {
                    if cfg.stream {
                        println!("{line}");
                    }
                    writeln!(file, "{line}")?;
                    console.push_str(&line);
                    console.push('\n');
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let msg = if kernel_error {
                    format!(
                        "HOST: qemu killed {} s after the first kernel error",
                        AFTER_KERNEL_ERROR.as_secs()
                    )
                } else {
                    timed_out = true;
                    format!(
                        "HOST: timeout after {} s, qemu killed",
                        cfg.timeout.as_secs()
                    )
                };
                writeln!(file, "{msg}")?;
                console.push_str(&msg);
                console.push('\n');
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    let wall = start.elapsed();
    let _ = fs::remove_file(monitor_socket(&cfg.dir));
    writeln!(
        file,
        "HOST: qemu {status}, wall {:.1} s",
        wall.as_secs_f64()
    )?;
    Ok(VmOutcome {
        console,
        log,
        timed_out,
        kernel_error,
        wall,
        boot,
    })
}

/// The command of a console line `XTASK-MONITOR <command>` (kernel messages may precede
/// the marker on the same console line).
fn monitor_request(line: &str) -> Option<&str> {
    let (_, cmd) = line.split_once(MONITOR_REQUEST)?;
    let cmd = cmd.trim();
    (!cmd.is_empty()).then_some(cmd)
}

/// Run one human-monitor (HMP) command on qemu's monitor socket and return its output,
/// or why it was not run.
fn monitor_command(socket: &Path, cmd: &str) -> Result<String> {
    const PROMPT: &str = "(qemu) ";
    let verb = cmd.split_whitespace().next().unwrap_or_default();
    if !MONITOR_COMMANDS.contains(&verb) || cmd.contains(['\n', '\r']) {
        anyhow::bail!(
            "refused: only {} are forwarded",
            MONITOR_COMMANDS.join(", ")
        );
    }
    let mut sock = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The banner ends with the first prompt; the command's output ends with the next one.
    fn read_to_prompt(sock: &mut UnixStream) -> Result<String> {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&text).ends_with(PROMPT) {
            let n = sock.read(&mut buf).context("reading the monitor")?;
            anyhow::ensure!(n > 0, "the monitor closed the connection");
            text.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
    read_to_prompt(&mut sock)?;
    writeln!(sock, "{cmd}")?;
    let out = read_to_prompt(&mut sock)?;
    // HMP echoes the command line (with terminal escapes) before its output.
    let out = out.trim_end_matches(PROMPT);
    let out = out.rsplit_once(cmd).map_or(out, |(_, rest)| rest);
    let out = strip_escapes(out);
    let out = out.trim().replace('\n', " | ");
    Ok(if out.is_empty() { "ok".into() } else { out })
}

/// `text` without terminal escape sequences (`ESC [ ... letter`) and control characters
/// other than newlines.
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-letter; anything else: drop the ESC alone.
            if chars.clone().next() == Some('[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\n' {
            out.push(c);
        }
    }
    out
}

/// The monitor socket of the VM that runs in `dir`. Not inside `dir`: a unix socket path
/// must fit in 108 bytes, and a checkout under a deep path plus
/// `target/vm/<release>/<group>/<scenario>/` does not (CI failed on exactly that).
fn monitor_socket(dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    std::env::temp_dir().join(format!("xtask-monitor-{:016x}.sock", h.finish()))
}

fn qemu_command(cfg: &VmConfig) -> Result<Command> {
    let dir = &cfg.dir;
    let mut append = String::from("console=ttyS0 panic=-1 quiet");
    if let Some(s) = &cfg.scenario {
        append.push_str(&format!(" scenario={s}"));
    }
    if cfg.shell {
        append.push_str(" shell=1");
    }
    for a in &cfg.extra.append {
        append.push(' ');
        append.push_str(a);
    }
    let monitor = monitor_socket(dir);
    let _ = fs::remove_file(&monitor);

    let mut cmd = Command::new("qemu-system-x86_64");
    let smp = cfg.extra.smp.unwrap_or(2).to_string();
    let cpu = cfg.extra.cpu.as_deref().unwrap_or(DEFAULT_CPU);
    cmd.args(["-m", "2048", "-smp", &smp, "-cpu", cpu]);
    // TCG by default: a /dev/kvm that opens is no proof that KVM works (nested KVM on the
    // CI machines fails with "emulation failure"). XTASK_ACCEL=kvm opts in.
    let accel = match &cfg.extra.accel {
        Some(accel) => accel.clone(),
        None => std::env::var("XTASK_ACCEL").unwrap_or_else(|_| DEFAULT_ACCEL.into()),
    };
    cmd.args(["-accel", &accel]);
    // No NIC: nothing needs one, and its iPXE option ROM costs boot time.
    cmd.args(["-nographic", "-nic", "none"]);
    if !cfg.extra.reboot {
        cmd.arg("-no-reboot");
    }
    cmd.arg("-kernel").arg(cfg.kernel.image());
    cmd.arg("-initrd").arg(cfg.initramfs);
    cmd.arg("-append").arg(append);
    cmd.arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor.display()));
    let more: Vec<(String, u64)> = cfg
        .extra
        .scratch_mib
        .iter()
        .enumerate()
        .map(|(i, &mib)| (disk_name(DISKS.len() + i), mib))
        .collect();
    let disks = DISKS
        .iter()
        .map(|&(name, mib)| (name.to_string(), mib))
        .chain(more);
    for (name, mib) in disks {
        if let ("vda", Some(root)) = (name.as_str(), &cfg.extra.root_disk) {
            cmd.arg("-drive").arg(format!(
                "file={},format=qcow2,if=none,id=drive-{name}",
                root.display()
            ));
            cmd.arg("-device")
                .arg(format!("virtio-blk-pci,drive=drive-{name},id={name}"));
            continue;
        }
        let img = dir.join(format!("{name}.img"));
        // Fresh and sparse: no state leaks from one run into the next.
        let _ = fs::remove_file(&img);
        File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .with_context(|| format!("creating {}", img.display()))?;
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=none,id=drive-{name}",
            img.display()
        ));
        cmd.arg("-device")
            .arg(format!("virtio-blk-pci,drive=drive-{name},id={name}"));
    }
    for (i, disk) in cfg.extra.extra_disks.iter().enumerate() {
        let name = disk_name(DISKS.len() + cfg.extra.scratch_mib.len() + i);
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=none,id=drive-{name},readonly=on",
            disk.display()
        ));
        cmd.arg("-device")
            .arg(format!("virtio-blk-pci,drive=drive-{name},id={name}"));
    }
    cmd.args(&cfg.extra.args);
    Ok(cmd)
}

/// The guest's name of the `i`th virtio disk (0: vda).
fn disk_name(i: usize) -> String {
    format!("vd{}", (b'a' + i as u8) as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_requests_are_found_on_console_lines() {
        assert_eq!(
            monitor_request("XTASK-MONITOR device_del vdc"),
            Some("device_del vdc")
        );
        assert_eq!(
            monitor_request("[   5.123456] virtio XTASK-MONITOR device_del vdc\r"),
            Some("device_del vdc")
        );
        assert_eq!(monitor_request("XTASK-MONITOR "), None);
        assert_eq!(monitor_request("the scenario says XTASK-MONITOR"), None);
    }

    #[test]
    fn escapes_are_stripped_from_monitor_replies() {
        assert_eq!(
            strip_escapes("\x1b[K\r\nDevice 'x' not found\r\n"),
            "\nDevice 'x' not found\n"
        );
    }

    #[test]
    fn monitor_sockets_are_short_and_distinct() {
        let deep = Path::new("/a/very/deep/checkout/of/the/project/target/vm/6.12.95+deb12-cloud-amd64/reliability/nowait-writes-get-eagain-not-stuck");
        let s = monitor_socket(deep);
        assert!(s.as_os_str().len() < 108, "{}", s.display());
        assert_ne!(s, monitor_socket(&deep.with_file_name("other")));
    }

    /// The value after `flag` in qemu's arguments.
    fn arg_after(cmd: &Command, flag: &str) -> String {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let i = args.iter().position(|a| a == flag).expect(flag);
        args[i + 1].clone()
    }

    #[test]
    fn cpu_configurations_reach_qemu_and_the_kernel_command_line() {
        let kernel = Kernel::host("6.12", "6.12.95+deb12-cloud-amd64");
        let dir = std::env::temp_dir().join(format!("xtask-vm-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cfg = |extra: QemuExtra| VmConfig {
            kernel: &kernel,
            initramfs: Path::new("/nonexistent/initramfs.cpio.gz"),
            dir: dir.clone(),
            scenario: Some("attach/x.sh".into()),
            shell: false,
            stream: false,
            timeout: Duration::from_secs(1),
            extra,
        };
        let plain = qemu_command(&cfg(QemuExtra::default())).unwrap();
        assert_eq!(arg_after(&plain, "-cpu"), DEFAULT_CPU);
        assert_eq!(arg_after(&plain, "-smp"), "2");
        for c in crate::cpus::CONFIGS {
            let mut extra = QemuExtra::default();
            c.apply(&mut extra);
            let cmd = qemu_command(&cfg(extra)).unwrap();
            assert_eq!(arg_after(&cmd, "-cpu"), c.cpu, "{}", c.name);
            assert_eq!(arg_after(&cmd, "-smp"), c.smp.to_string(), "{}", c.name);
            let append = arg_after(&cmd, "-append");
            assert!(append.starts_with("console=ttyS0 panic=-1 quiet scenario=attach/x.sh"));
            let expected: String = c.append.iter().map(|a| format!(" {a}")).collect();
            assert!(append.ends_with(&expected), "{}: {append}", c.name);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_monitor_commands_are_refused() {
        let err = monitor_command(Path::new("/nonexistent"), "quit").unwrap_err();
        assert!(format!("{err}").contains("refused"), "{err}");
    }
}
