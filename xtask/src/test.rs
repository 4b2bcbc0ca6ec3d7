//! `cargo xtask test` and `vm`: prepare each kernel's initramfs, then run scenarios in VMs.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cpus::{self, CpuConfig};
use crate::kernel::{self, Kernel};
use crate::report::{Finished, Summary, Verdict};
use crate::scenario::{self, Scenario};
use crate::support::{self, Row};
use crate::vm::{self, VmConfig};
use crate::{initramfs, kmod};

/// VMs at a time. One TCG VM keeps only ~1.2 of 2 host cores busy (it waits on emulated
/// I/O), so two overlap well: 14 runs took 270 s with 2 jobs and 355-423 s with 1 on the
/// 2-core dev machine, although each VM ran ~40% slower. Three single-threaded TCG VMs at a
/// time were no faster than two (the busybox tier's first 18 runs took 570 s, against 21 runs
/// in 540 s with two). Scenarios must not depend on speed.
pub const DEFAULT_JOBS: usize = 2;

/// Build the module (if kmod/ has sources) and the initramfs for one kernel.
pub fn prepare(root: &Path, kernel: &Kernel, cli: Option<&Path>) -> Result<PathBuf> {
    let ko = kmod::build(root, kernel)?;
    initramfs::build(root, kernel, ko.as_deref(), cli)
}

/// What `vm` changes in the scenario's VM: experiments compare TCG modes and vCPU counts,
/// and a failure of `test --cpus` is reproduced under its CPU configuration.
#[derive(Default)]
pub struct Overrides {
    pub accel: Option<String>,
    pub smp: Option<u32>,
    pub cpu: Option<&'static CpuConfig>,
}

/// `vm` and `demo`: one VM with the console on the terminal.
pub fn boot_one(
    root: &Path,
    spec: &str,
    scenario: Option<String>,
    shell: bool,
    over: Overrides,
) -> Result<bool> {
    let kernel = kernel::resolve(spec)?
        .into_iter()
        .next()
        .context("no kernel")?;
    let found = scenario
        .as_deref()
        .map(|path| scenario::load(root, path))
        .transpose()?;
    let timeout = found
        .as_ref()
        .map_or(scenario::DEFAULT_TIMEOUT, |s| s.timeout);
    let mut extra = found.as_ref().map(Scenario::qemu_extra).unwrap_or_default();
    if let Some(cpu) = over.cpu {
        cpu.apply(&mut extra);
    }
    if over.accel.is_some() {
        extra.accel = over.accel;
    }
    if over.smp.is_some() {
        extra.smp = over.smp;
    }
    let cli = initramfs::build_cli(root)?;
    let initrd = prepare(root, &kernel, cli.as_deref())?;
    let name = scenario
        .as_deref()
        .map_or("shell", |s| s.trim_end_matches(".sh"));
    let name = dir_name(over.cpu, name);
    let cfg = VmConfig {
        kernel: &kernel,
        initramfs: &initrd,
        dir: run_dir(root, &kernel, &name),
        scenario: scenario.clone(),
        shell,
        stream: true,
        timeout,
        extra,
    };
    let out = vm::run(&cfg)?;
    if shell {
        return Ok(true);
    }
    let verdict = run_verdict(&out, over.cpu, &kernel);
    println!(
        "vm: {} {name}: {verdict:?} in {} s (boot {}), log {}",
        kernel.alias,
        out.wall.as_secs(),
        out.boot
            .map_or("?".into(), |b| format!("{} s", b.as_secs())),
        out.log.display()
    );
    Ok(!matches!(verdict, Verdict::Fail(_)))
}

/// target/vm/<release>/<group>/<name>: disks, console.log and monitor.sock of one run.
pub fn run_dir(root: &Path, kernel: &Kernel, name: &str) -> PathBuf {
    initramfs::Layout::new(root, kernel).dir.join(name)
}

/// The scenario's verdict; under a CPU configuration a run that passed on the wrong
/// kernel path (its mitigation line missing) fails too. A failure of its own comes first.
fn run_verdict(out: &vm::VmOutcome, cpu: Option<&CpuConfig>, kernel: &Kernel) -> Verdict {
    let verdict = scenario::verdict(&out.console, out.timed_out);
    if matches!(verdict, Verdict::Fail(_)) {
        return verdict;
    }
    match cpu.and_then(|c| c.check(&kernel.release, &out.console)) {
        Some(why) => Verdict::Fail(why),
        None => verdict,
    }
}

/// One queued VM run: a scenario on a kernel, under a CPU configuration of
/// `test --cpus` or the default VM.
struct Job {
    kernel: Kernel,
    initrd: PathBuf,
    scenario: Scenario,
    cpu: Option<&'static CpuConfig>,
}

impl Job {
    /// "zen3-srso attach/linear-live-loses-nothing": the name in progress lines.
    fn label(&self) -> String {
        match self.cpu {
            Some(c) => format!("{} {}", c.name, self.scenario.name()),
            None => self.scenario.name().to_string(),
        }
    }

    fn dir_name(&self) -> String {
        dir_name(self.cpu, self.scenario.name())
    }
}

/// The run directory's name below target/vm/<release>/: `cpus/<config>/<group>/<name>`
/// under a CPU configuration, so those runs never share a directory with the default
/// VM's or each other's.
fn dir_name(cpu: Option<&CpuConfig>, name: &str) -> String {
    match cpu {
        Some(c) => format!("cpus/{}/{name}", c.name),
        None => name.to_string(),
    }
}

/// Every scenario matching `filters` on every kernel of `spec`, `jobs` VMs at a time; with
/// `cpus`, each of them under each of those CPU configurations instead of the default VM.
pub fn run(
    root: &Path,
    spec: &str,
    jobs: usize,
    filters: &[String],
    cpus: &[&'static CpuConfig],
) -> Result<bool> {
    let kernels = kernel::resolve(spec)?;
    // Only a run of the whole tier says what the README's kernel table says.
    let support = filters.is_empty() && cpus.is_empty();
    let mut scenarios = scenario::discover(root, filters)?;
    if !cpus.is_empty() {
        scenarios.retain(|s| cpus::GROUPS.iter().any(|g| s.path.starts_with(g)));
    }
    if scenarios.is_empty() {
        println!("no scenario matches {filters:?}");
        return Ok(false);
    }
    let configs: Vec<Option<&'static CpuConfig>> = if cpus.is_empty() {
        vec![None]
    } else {
        cpus.iter().copied().map(Some).collect()
    };
    let cli = initramfs::build_cli(root)?;
    let mut queue = VecDeque::new();
    for k in &kernels {
        let mine: Vec<&Scenario> = scenarios
            .iter()
            .filter(|s| s.every_kernel || k.full_under(spec))
            .collect();
        if mine.is_empty() {
            println!("{k}: no matching scenario is marked `# KERNELS: all`");
            continue;
        }
        let initrd = match prepare(root, k, cli.as_deref()) {
            Ok(i) => i,
            Err(e) => {
                if support {
                    let why = format!("{e:#}");
                    let first = why.lines().next().unwrap_or_default();
                    support::record(root, &[Row::build_failed(k, &support::today()?, first)])?;
                }
                return Err(e);
            }
        };
        for cpu in &configs {
            for &s in &mine {
                queue.push_back(Job {
                    kernel: k.clone(),
                    initrd: initrd.clone(),
                    scenario: s.clone(),
                    cpu: *cpu,
                });
            }
        }
    }
    let total = queue.len();
    if total == 0 {
        println!("no scenario run on {spec} matches {filters:?}");
        return Ok(false);
    }
    for c in cpus {
        println!("cpus: {}", c.describe());
    }
    println!("running {total} scenario run(s), {jobs} VM(s) at a time");
    let started = std::time::Instant::now();

    let queue = Arc::new(Mutex::new(queue));
    let (tx, rx) = mpsc::channel();
    let mut workers = Vec::new();
    for _ in 0..jobs.min(total) {
        let (queue, tx, root) = (queue.clone(), tx.clone(), root.to_path_buf());
        workers.push(std::thread::spawn(move || loop {
            let Some(job) = queue.lock().expect("queue lock").pop_front() else {
                break;
            };
            let result = run_scenario(&root, &job);
            if tx.send((job, result)).is_err() {
                break;
            }
        }));
    }
    drop(tx);

    let mut summary = Summary::default();
    // (kernel, configuration) pairs whose mitigation lines were already shown.
    let mut shown = std::collections::HashSet::new();
    for (index, (job, result)) in rx.iter().enumerate() {
        let (verdict, out) = match result {
            Ok(out) => (run_verdict(&out, job.cpu, &job.kernel), Some(out)),
            Err(e) => (Verdict::Fail(format!("{e:#}")), None),
        };
        if let (Some(cpu), Some(out)) = (job.cpu, &out) {
            if out.boot.is_some() && shown.insert((job.kernel.alias.clone(), cpu.name)) {
                let said = cpu.report(&out.console);
                println!(
                    "{} {}: the kernel says: {}",
                    job.kernel.alias,
                    cpu.name,
                    if said.is_empty() {
                        "nothing on the subject".to_string()
                    } else {
                        said.join(" | ")
                    }
                );
            }
        }
        let no_log = PathBuf::new();
        summary.record(
            index + 1,
            total,
            &Finished {
                kernel: &job.kernel.alias,
                scenario: &job.label(),
                verdict: &verdict,
                wall: out.as_ref().map_or(Duration::ZERO, |o| o.wall),
                boot: out.as_ref().and_then(|o| o.boot),
                log: out.as_ref().map_or(&no_log, |o| &o.log),
                console: out.as_ref().map_or("", |o| &o.console),
            },
        );
    }
    for w in workers {
        w.join().expect("worker panicked");
    }
    println!("{total} run(s) in {} s", started.elapsed().as_secs());
    if support {
        let today = support::today()?;
        let rows: Vec<Row> = kernels
            .iter()
            .filter_map(|k| {
                let counts = summary.counts(&k.alias)?;
                Some(Row::ran(k, &today, counts, k.full_under(spec)))
            })
            .collect();
        support::record(root, &rows)?;
    }
    Ok(summary.finish())
}

/// How often a VM whose guest never booted is started again.
const BOOT_ATTEMPTS: usize = 3;

/// Run one scenario.  qemu 10.0's TCG sometimes aborts during firmware start-up
/// (`iotlb_to_section: Assertion ... failed`, seen twice in ~100 runs), before the guest
/// kernel runs: such a run is started again, and says so.  A run whose guest booted is
/// never repeated, so a retry cannot hide a failure of the scenario or the module.
fn run_scenario(root: &Path, job: &Job) -> Result<vm::VmOutcome> {
    let (kernel, s) = (&job.kernel, &job.scenario);
    let mut extra = s.qemu_extra();
    if let Some(cpu) = job.cpu {
        cpu.apply(&mut extra);
    }
    let mut attempt = 1;
    loop {
        let outcome = vm::run(&VmConfig {
            kernel,
            initramfs: &job.initrd,
            dir: run_dir(root, kernel, &job.dir_name()),
            scenario: Some(s.path.clone()),
            shell: false,
            stream: false,
            timeout: s.timeout,
            extra: extra.clone(),
        })?;
        if outcome.boot.is_some()
            || outcome.timed_out
            || outcome.kernel_error
            || attempt == BOOT_ATTEMPTS
        {
            return Ok(outcome);
        }
        let last = outcome.console.lines().rev().find(|l| !l.trim().is_empty());
        println!(
            "note: {} {}: the VM died before the guest booted ({}); starting it again",
            kernel.alias,
            job.label(),
            last.unwrap_or("no output").trim()
        );
        attempt += 1;
    }
}
