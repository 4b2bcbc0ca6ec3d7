//! `cargo xtask bench`: the cost of the interposer, measured in one VM boot per kernel.
//!
//! The guest (tests/bench/guest.sh) runs fio (direct, libaio, iodepth 16) round-robin over
//! the configurations in every round: raw, dm-linear stacked before use, interposed live,
//! a bystander device while another is interposed, and that device with the module not
//! loaded; on null_blk and on virtio disks; then a live snapshot against one stacked before
//! use, and the writer stall of an attach and a detach against a bare fsfreeze.
//!
//! Two figures per run: throughput (fio's JSON), and guest instructions per I/O, counted by
//! a qemu TCG plugin (crates/insn-count-plugin) between two marker instructions that fio's
//! exec_prerun/exec_postrun execute (`insn-marker`). The VM runs with `-accel
//! tcg,thread=single` and one vCPU: the count is deterministic apart from interrupts and
//! timers, and a second vCPU would only take turns on the same host thread, adding
//! cross-CPU completion paths whose cost depends on scheduling.
//!
//! Throughput under emulation swings by tens of percent, which is why rounds alternate and
//! ratios are taken within a round; instructions per I/O are the stable figure.
//! The bench fails only on errors; a missed target is printed as MISS.

mod profile;
mod report;
mod run;
mod svg;

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::kernel::{self, Kernel};
use crate::report::Verdict;
use crate::vm::{self, QemuExtra, VmConfig};
use crate::{initramfs, scenario, test};

/// What `cargo xtask bench` was asked for.
pub struct Options {
    pub kernel: String,
    pub rounds: Option<u32>,
    pub quick: bool,
    /// Parts of the guest script to run (calib,matrix,snap,cow,stall).
    pub parts: Option<String>,
    /// Rounds of the snapshot-cost part.
    pub cow_rounds: Option<u32>,
    /// Its configurations (guest `bench.cowconfigs=`).
    pub cow_configs: Option<String>,
    /// Profile by guest function too (plugin `profile=`, guest `bench.profile=1`).
    pub profile: bool,
}

/// The guest's knobs, from --quick or the defaults.
struct Params {
    rounds: u32,
    /// I/Os of one 4k fio job (1M jobs do a quarter).
    ios: u32,
    /// Length of each sanity loop.
    calib: u64,
    /// MiB written per snapshot run (into fresh chunks of a 64 MiB COW device).
    cow_mib: u32,
    /// Seconds of one stall writer run (the event comes after 1 s).
    stall: u32,
    /// Rounds of the snapshot-cost part (each visits every configuration).
    cow_rounds: u32,
}

impl Params {
    fn new(opts: &Options) -> Params {
        let mut p = if opts.quick {
            Params {
                rounds: 3,
                ios: 2048,
                calib: 20_000_000,
                cow_mib: 8,
                stall: 3,
                cow_rounds: 1,
            }
        } else {
            Params {
                rounds: 9,
                ios: 3072,
                calib: 50_000_000,
                cow_mib: 16,
                stall: 3,
                cow_rounds: 3,
            }
        };
        if let Some(r) = opts.rounds {
            p.rounds = r.max(1);
        }
        if let Some(r) = opts.cow_rounds {
            p.cow_rounds = r.max(1);
        }
        p
    }

    fn append(&self, opts: &Options) -> Vec<String> {
        let mut v = vec![
            "scenario=../bench/guest.sh".to_string(),
            format!("bench.rounds={}", self.rounds),
            format!("bench.ios={}", self.ios),
            format!("bench.calib={}", self.calib),
            format!("bench.cow={}", self.cow_mib),
            format!("bench.stall={}", self.stall),
            format!("bench.cowrounds={}", self.cow_rounds),
        ];
        if let Some(p) = &opts.parts {
            v.push(format!("bench.parts={p}"));
        }
        if let Some(c) = &opts.cow_configs {
            v.push(format!("bench.cowconfigs={c}"));
        }
        if opts.profile {
            v.push("bench.profile=1".into());
        }
        v
    }
}

pub fn run(root: &Path, opts: &Options) -> Result<bool> {
    let kernels = kernel::resolve(&opts.kernel)?;
    let params = Params::new(opts);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::run_cmd(
        &cargo,
        &["build", "--release", "-p", "insn-count-plugin"],
        &[],
    )?;
    let plugin = root.join("target/release/libinsn_count_plugin.so");
    let cli = initramfs::build_cli(root)?;
    for k in &kernels {
        let initrd = test::prepare(root, k, cli.as_deref())?;
        let out = root.join("target/bench").join(&k.alias);
        fs::create_dir_all(&out)?;
        let report = bench_one(root, k, &initrd, &plugin, &params, opts, &out)?;
        let table = report::render(&report);
        print!("{table}");
        fs::write(out.join("table.txt"), &table)?;
        fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        fs::write(out.join("bench.svg"), svg::render(&report))?;
        println!(
            "bench: {} written (results.json, table.txt, bench.svg)",
            out.display()
        );
    }
    Ok(true)
}

fn bench_one(
    root: &Path,
    k: &Kernel,
    initrd: &Path,
    plugin: &Path,
    params: &Params,
    opts: &Options,
    out_dir: &Path,
) -> Result<report::Report> {
    let dir = test::run_dir(root, k, "bench");
    let markers = dir.join("markers.txt");
    let prof = dir.join("profile.txt");
    let _ = fs::remove_file(&markers);
    let _ = fs::remove_file(&prof);
    fs::create_dir_all(&dir)?;
    let mut plugin_arg = format!("{},out={}", plugin.display(), markers.display());
    if opts.profile {
        plugin_arg.push_str(&format!(",profile={}", prof.display()));
    }
    // the snapshot-cost part runs only when asked for (not in the guest's default parts)
    let cow = opts
        .parts
        .as_deref()
        .is_some_and(|p| p.split(',').any(|x| x == "cow"));
    let cfg = VmConfig {
        kernel: k,
        initramfs: initrd,
        dir: dir.clone(),
        scenario: None,
        shell: false,
        stream: true,
        // generous: 9 rounds take ~15 min on an idle 2-core host, a round of the
        // snapshot-cost part ~10 min
        timeout: Duration::from_secs(
            600 + 300 * u64::from(params.rounds)
                + if cow {
                    1200 * u64::from(params.cow_rounds)
                } else {
                    0
                },
        ),
        extra: QemuExtra {
            accel: Some("tcg,thread=single".into()),
            smp: Some(1),
            append: params.append(opts),
            // vdf: the snapshot-cost part's ext4 (a 256 MiB and a 700 MiB file), vdg: its
            // COW store, larger than vdf
            scratch_mib: if cow { vec![1280, 1536] } else { Vec::new() },
            args: vec!["-plugin".into(), plugin_arg],
            ..Default::default()
        },
    };
    println!(
        "bench: kernel {} ({}): {} round(s), fio jobs of {} I/Os; console in {}",
        k.alias,
        k.release,
        params.rounds,
        params.ios,
        dir.join("console.log").display()
    );
    let out = vm::run(&cfg)?;
    if let Verdict::Fail(why) = scenario::verdict(&out.console, out.timed_out) {
        bail!(
            "the bench VM failed on {}: {why} (log {})",
            k.alias,
            out.log.display()
        );
    }
    println!("bench: VM done in {} s", out.wall.as_secs());
    let disk = fs::read(dir.join("vda.img")).context("reading the results disk vda.img")?;
    let sections = run::sections(&disk)?;
    let marker_text = fs::read_to_string(&markers)
        .with_context(|| format!("reading {} (did the plugin load?)", markers.display()))?;
    let results = run::assemble(&sections, &marker_text)?;
    if opts.profile {
        let text = fs::read_to_string(&prof)
            .with_context(|| format!("reading the profile {}", prof.display()))?;
        let table = profile::report(&sections, &results, &text)?;
        print!("{table}");
        fs::write(out_dir.join("profile.txt"), &table)?;
        println!(
            "bench: profile in {}",
            out_dir.join("profile.txt").display()
        );
    }
    Ok(report::build(
        &k.alias,
        &k.release,
        params.rounds,
        opts.quick,
        results,
    ))
}
