//! `cargo xtask`: the build and VM test automation of blk-interposer (matklad's xtask style:
//! plain Rust, only cargo needed to start, `cargo xtask` with no task lists the tasks).

mod bench;
mod checkpatch;
mod cpus;
mod initramfs;
mod kernel;
mod kmod;
mod package;
mod report;
mod scenario;
mod setup;
mod support;
mod system;
mod test;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// The version of the project: [workspace.package] in Cargo.toml, shared by the crates, the
/// module (BLK_INTERPOSER_VERSION in kmod/Kbuild) and the Debian packages.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build blk_interposer.ko, pack an initramfs, boot Debian kernels in qemu, run the scenarios.
///
/// CI runs `.ci/run`, which is `cargo xtask setup` followed by `cargo xtask ci`
/// (fmt, clippy, unit tests, every scenario of both VM tiers on 6.1 and 6.12). Locally,
/// `cargo xtask test` is the same minus fmt and clippy.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the Debian packages the build and the VMs need (idempotent, needs root).
    Setup,
    /// Build blk_interposer.ko from kmod/ with W=1; any warning fails.
    ///
    /// When the build fails, names the first kernel API that the compiler reports missing
    /// or changed (an implicit declaration, too few/many arguments, an unknown type, an
    /// undeclared constant, a missing member).
    Kmod {
        /// 6.1, 6.12, trixie-backports, sid, all (those four), an exact release, or DIR: any
        /// kernel headers tree, e.g. /lib/modules/RELEASE/build. A DIR inside a Debian root that has its own
        /// /usr/bin/make and /usr/bin/gcc* (CHROOT/usr/src/linux-headers-RELEASE) is built
        /// there, with `chroot CHROOT make` (as root) on a copy of kmod/ in CHROOT/tmp, for
        /// kernels whose kbuild needs a newer glibc and gcc than the host's.
        #[arg(long, default_value = "all", verbatim_doc_comment)]
        kernel: String,
    },
    /// Build the module and the CLI, pack target/vm/<release>/initramfs.cpio.gz.
    Initramfs {
        #[arg(long, default_value = kernel::DEFAULT)]
        kernel: String,
    },
    /// Boot one VM; with --scenario run it, with --shell get a shell on the console.
    Vm {
        #[arg(long, default_value = kernel::DEFAULT)]
        kernel: String,
        /// Path below tests/scenarios, e.g. vm/boots-with-tools.sh, or an experiment,
        /// experiments/NAME.sh (tests/experiments: run by hand, never by `test`).
        #[arg(long)]
        scenario: Option<String>,
        /// Interactive shell (after the scenario, if one is given); Ctrl-A X quits qemu.
        #[arg(long)]
        shell: bool,
        /// qemu's -accel instead of the default (tcg,thread=single), e.g. tcg,thread=multi.
        #[arg(long)]
        accel: Option<String>,
        /// vCPUs instead of 2.
        #[arg(long)]
        smp: Option<u32>,
        /// Boot as `test --cpus` does under this CPU configuration (xtask/src/cpus.rs);
        /// --smp and --accel still apply on top.
        #[arg(long, value_name = "NAME")]
        cpu_config: Option<String>,
    },
    /// Setup, unit tests, every matching busybox scenario in its own VM on each kernel, then
    /// the matching full-system scenarios (tests/system) in one Debian boot per kernel.
    Test {
        /// default: every scenario on Debian 12's 6.1 and 6.12, and those marked
        /// `# KERNELS: all` on the newest of trixie-backports and sid (kernels that `setup`
        /// unpacks into debootstrap roots); all: every scenario on all four; or one of 6.1,
        /// 6.12, trixie-backports, sid, or an exact release (every scenario on it). The
        /// full-system tier boots Debian 12's kernels only.
        #[arg(long, default_value = kernel::STANDARD, verbatim_doc_comment)]
        kernel: String,
        /// VMs at a time (2 TCG VMs on 2 cores finish ~1.3-1.5x sooner than 1); in the
        /// system tier, kernels booted at a time.
        #[arg(long, default_value_t = test::DEFAULT_JOBS)]
        jobs: usize,
        /// Skip `cargo test --workspace`.
        #[arg(long)]
        no_unit: bool,
        /// Only the full-system tier (a debootstrapped Debian 12 with systemd, udev and
        /// DKMS that installs our packages): tests/system/*.sh.
        #[arg(long)]
        system: bool,
        /// Instead of the tiers: the attach/, reliability/ and snapshot/ scenarios under
        /// each CPU configuration of xtask/src/cpus.rs (CPU models whose mitigations make the
        /// kernel patch in return thunks or call-depth tracking, preempt=full, 4 vCPUs); a
        /// run whose kernel did not report the configuration's mitigation fails. Not in CI.
        #[arg(long)]
        cpus: bool,
        /// With --cpus: only this configuration (repeatable), e.g. zen3-srso.
        #[arg(long, value_name = "NAME", requires = "cpus")]
        cpu_config: Vec<String>,
        /// Run only scenarios whose path contains one of these strings (system scenarios
        /// are `system/NAME`).
        filters: Vec<String>,
    },
    /// The live demo: tests/scenarios/demo/live-demo.sh with the console on the terminal.
    Demo {
        #[arg(long, default_value = kernel::DEFAULT)]
        kernel: String,
    },
    /// Measure the interposer's cost in a VM: throughput and guest instructions per I/O
    /// (qemu plugin), writer stalls of attach/detach, live snapshots. See BENCHMARKS.md.
    Bench {
        /// 6.1, 6.12, trixie-backports, sid, all (those four), or an exact release.
        #[arg(long, default_value = kernel::DEFAULT)]
        kernel: String,
        /// Rounds (default 9, or 3 with --quick).
        #[arg(long)]
        rounds: Option<u32>,
        /// Short runs and 3 rounds, for development.
        #[arg(long)]
        quick: bool,
        /// Only these parts of the guest script: comma-separated calib,matrix,snap,stall (the
        /// default), and cow: what a live snapshot costs the application (~9 min a round).
        #[arg(long)]
        parts: Option<String>,
        /// Rounds of the snapshot-cost part (`cow`; default 3, or 1 with --quick).
        #[arg(long)]
        cow_rounds: Option<u32>,
        /// Its snapshot configurations, comma-separated: none (the reference), default
        /// (`snapshot create` with no chunk option), SIZE (`--chunk-size SIZE`), SIZE-P
        /// (and `--persistent`). Default: none,default,4k-P,4k,8k,16k,32k,256k.
        #[arg(long)]
        cow_configs: Option<String>,
        /// Also profile: instructions per I/O by guest function, for each configuration
        /// against its reference (target/bench/KERNEL/profile.txt). Slower; try it with
        /// `--parts matrix --rounds 1`.
        #[arg(long)]
        profile: bool,
    },
    /// What CI runs: setup, cargo fmt --check, clippy -D warnings, checkpatch --strict on kmod/,
    /// test --kernel all (the busybox tier, then the full-system tier).
    Ci,
    /// Debian packages in target/package/: blk-interposer-dkms (the module's source for DKMS)
    /// and interposer (the tool, man pages, completions, udev rule), checked with lintian.
    Package,
    /// checkpatch.pl --strict over kmod/ (part of `ci`).
    Checkpatch,
    /// Create tests/scenarios/GROUP/NAME.sh from the template.
    NewScenario {
        /// e.g. attach/detach-under-write-load-loses-no-io
        name: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false) means "ran, and something failed" (already reported).
fn run(cli: Cli) -> Result<bool> {
    let root = project_root();
    match cli.task {
        Task::Setup => setup::run()?,
        Task::Kmod { kernel } => {
            let trees = if Path::new(&kernel).is_dir() {
                vec![kmod::BuildTree::at(Path::new(&kernel))?]
            } else {
                let kernels = kernel::resolve(&kernel)?;
                kernels.iter().map(kmod::BuildTree::installed).collect()
            };
            for tree in &trees {
                if let Some(ko) = kmod::build_tree(&root, tree)? {
                    println!("kmod: {}", ko.display());
                }
            }
        }
        Task::Initramfs { kernel } => {
            let cli = initramfs::build_cli(&root)?;
            for k in kernel::resolve(&kernel)? {
                test::prepare(&root, &k, cli.as_deref())?;
            }
        }
        Task::Vm {
            kernel,
            scenario,
            shell,
            accel,
            smp,
            cpu_config,
        } => {
            let cpu = match cpu_config {
                Some(name) => Some(cpus::select(&[name])?[0]),
                None => None,
            };
            return test::boot_one(
                &root,
                &kernel,
                scenario,
                shell,
                test::Overrides { accel, smp, cpu },
            );
        }
        Task::Test {
            kernel,
            jobs,
            no_unit,
            system,
            cpus,
            cpu_config,
            filters,
        } => {
            let configs = cpus.then(|| cpus::select(&cpu_config)).transpose()?;
            setup::run()?;
            if !no_unit {
                cargo(&["test", "--workspace"])?;
            }
            if let Some(configs) = configs {
                return test::run(&root, &kernel, jobs.max(1), &filters, &configs);
            }
            return run_tiers(&root, &kernel, jobs.max(1), &filters, system);
        }
        Task::Demo { kernel } => {
            let demo = "demo/live-demo.sh";
            if !root.join("tests/scenarios").join(demo).exists() {
                bail!("tests/scenarios/{demo} does not exist yet: nothing to demo");
            }
            setup::run()?;
            return test::boot_one(
                &root,
                &kernel,
                Some(demo.into()),
                false,
                test::Overrides::default(),
            );
        }
        Task::Bench {
            kernel,
            rounds,
            quick,
            parts,
            cow_rounds,
            cow_configs,
            profile,
        } => {
            setup::run()?;
            return bench::run(
                &root,
                &bench::Options {
                    kernel,
                    rounds,
                    quick,
                    parts,
                    cow_rounds,
                    cow_configs,
                    profile,
                },
            );
        }
        Task::Ci => {
            setup::run()?;
            cargo(&["fmt", "--all", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            checkpatch::run(&root)?;
            cargo(&["test", "--workspace"])?;
            return run_tiers(&root, kernel::STANDARD, test::DEFAULT_JOBS, &[], false);
        }
        Task::Package => {
            package::run(&root)?;
        }
        Task::Checkpatch => checkpatch::run(&root)?,
        Task::NewScenario { name } => scenario::scaffold(&root, &name)?,
    }
    Ok(true)
}

/// The busybox tier (unless `system_only`), then the full-system tier, each over the
/// scenarios that match `filters`; a tier no scenario of which matches is left out, and
/// nothing matching at all is a failure.
fn run_tiers(
    root: &Path,
    kernel: &str,
    jobs: usize,
    filters: &[String],
    system_only: bool,
) -> Result<bool> {
    let busybox = !system_only && !scenario::discover(root, filters)?.is_empty();
    let full = !system::discover(root, filters)?.is_empty();
    if !busybox && !full {
        println!("no scenario matches {filters:?}");
        return Ok(false);
    }
    let mut ok = true;
    if busybox {
        ok &= test::run(root, kernel, jobs, filters, &[])?;
    }
    if full {
        ok &= system::run(root, kernel, jobs, filters)?;
    }
    Ok(ok)
}

/// The workspace root: xtask/ lives directly below it.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Run `$CARGO args` in the workspace root.
fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(&cargo, args, &[])
}

/// Run a program with inherited stdio; a non-zero exit is an error naming the command.
fn run_cmd(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let shown = format!("{program} {}", args.join(" "));
    println!("$ {shown}");
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(project_root())
        .status()
        .with_context(|| format!("starting `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Run a program and return its stdout; a non-zero exit is an error with its stderr.
fn capture(program: &str, args: &[&str]) -> Result<String> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("starting `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
