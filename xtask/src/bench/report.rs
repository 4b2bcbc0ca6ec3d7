//! From samples to figures: medians and spreads per cell, ratios per round against the
//! reference configuration, the targets, the console table and results.json.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::run::{CowUse, Results, Sample};

/// Median, extremes and spread of a set of rounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max - min) / median, in percent: the whole range the rounds covered.
    pub spread_pct: f64,
    /// Median absolute deviation / median, in percent: the typical distance of a round
    /// from the median, blind to a single outlier round.
    pub mad_pct: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let (min, max) = (v[0], v[n - 1]);
        let rel = |x: f64| {
            if median != 0.0 {
                x / median.abs() * 100.0
            } else {
                0.0
            }
        };
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = if n % 2 == 1 {
            dev[n / 2]
        } else {
            (dev[n / 2 - 1] + dev[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min,
            max,
            spread_pct: rel(max - min),
            mad_pct: rel(mad),
            n,
        })
    }
}

/// One configuration of one workload on one device set.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub devset: String,
    pub workload: String,
    pub config: String,
    pub iops: Stat,
    pub mbps: Stat,
    pub insn_per_io: Stat,
}

/// The figure a ratio compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Metric {
    #[serde(rename = "insn/IO")]
    InsnPerIo,
    #[serde(rename = "IOPS")]
    Iops,
    #[serde(rename = "stall")]
    Stall,
    /// COW space in use after a run of the snapshot-cost part.
    #[serde(rename = "COW")]
    Cow,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::InsnPerIo => "insn/IO",
            Metric::Iops => "IOPS",
            Metric::Stall => "max lat",
            Metric::Cow => "COW",
        }
    }
}

/// A limit a ratio should stay within.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Target {
    /// ratio <= limit (costs: instructions, stalls)
    AtMost(f64),
    /// ratio >= limit (throughput)
    AtLeast(f64),
}

impl Target {
    pub fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(l) => ratio <= l,
            Target::AtLeast(l) => ratio >= l,
        }
    }

    pub fn limit(self) -> f64 {
        match self {
            Target::AtMost(l) | Target::AtLeast(l) => l,
        }
    }

    pub fn text(self) -> String {
        match self {
            Target::AtMost(l) => format!("<= {l}"),
            Target::AtLeast(l) => format!(">= {l}"),
        }
    }
}

/// `num/den` of one metric, as the median over rounds of the per-round ratio (rounds are
/// measured back to back, so pairing them cancels the drift of the emulation).
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub num: String,
    pub den: String,
    pub devset: String,
    pub workload: String,
    pub metric: Metric,
    pub ratio: Stat,
    pub target: Option<Target>,
}

impl Ratio {
    pub fn name(&self) -> String {
        format!("{}/{}", self.num, self.den)
    }

    /// `Some(true)` PASS, `Some(false)` MISS, `None` for information.
    pub fn verdict(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.ratio.median))
    }
}

/// The ratios the issue sets targets for, and those shown for information.
/// (numerator, denominator, metric, target)
#[rustfmt::skip]
pub const MATRIX_RATIOS: &[(&str, &str, Metric, Option<Target>)] = &[
    ("interposed", "dm-linear", Metric::InsnPerIo, Some(Target::AtMost(1.02))),
    ("interposed", "dm-linear", Metric::Iops, Some(Target::AtLeast(0.98))),
    ("bystander", "no-module", Metric::InsnPerIo, Some(Target::AtMost(1.005))),
    ("bystander", "no-module", Metric::Iops, Some(Target::AtLeast(0.995))),
    ("interposed", "raw", Metric::InsnPerIo, None),
    ("interposed", "raw", Metric::Iops, None),
    ("dm-linear", "raw", Metric::InsnPerIo, None),
    ("dm-linear", "raw", Metric::Iops, None),
];

/// Live snapshot through the interposer against the same snapshot stacked before use.
#[rustfmt::skip]
pub const SNAP_RATIOS: &[(&str, &str, Metric, Option<Target>)] = &[
    ("snap-interposed", "snap-stacked", Metric::InsnPerIo, Some(Target::AtMost(1.02))),
    ("snap-interposed", "snap-stacked", Metric::Iops, Some(Target::AtLeast(0.98))),
];

/// The snapshot-cost part (issue 15): every configuration against `none` (no snapshot) on
/// each workload, for information; the targets apply to `default`, what `snapshot create`
/// chooses by itself when its COW store can hold the whole device.
pub const COW_WORKLOADS: &[&str] = &["dense", "second", "sparse", "snap-read"];
#[rustfmt::skip]
pub const COW_TARGETS: &[(&str, Metric, Target)] = &[
    ("dense", Metric::InsnPerIo, Target::AtMost(1.3)),
    ("dense", Metric::Iops, Target::AtLeast(0.7)),
    ("sparse", Metric::Iops, Target::AtLeast(0.7)),
];
/// The default's COW use on the sparse workload against 4 KiB chunks': at most twice.
pub const COW_SPACE_TARGET: Target = Target::AtMost(2.0);

pub const STALL_RATIOS: &[(&str, &str)] = &[("attach", "freeze"), ("detach", "freeze")];
pub const STALL_TARGET: Target = Target::AtMost(1.2);

/// The whole report of one kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub release: String,
    pub rounds: u32,
    pub quick: bool,
    pub calib: Vec<CalibFigure>,
    pub cells: Vec<Cell>,
    pub stalls: BTreeMap<String, Stat>,
    pub ratios: Vec<Ratio>,
    /// The snapshot-cost part's COW use: (config, workload) -> MiB over the rounds.
    pub cow: BTreeMap<String, BTreeMap<String, Stat>>,
    /// The chunk each configuration got, in KiB.
    pub chunk_kib: BTreeMap<String, u64>,
    pub results: Results,
}

/// One sanity loop: counted against expected instructions.
#[derive(Clone, Debug, Serialize)]
pub struct CalibFigure {
    pub expected: u64,
    pub counted: u64,
    pub error_pct: f64,
}

fn metric_of(s: &Sample, m: Metric) -> f64 {
    match m {
        Metric::InsnPerIo => s.insn_per_io(),
        Metric::Iops => s.fio.iops,
        Metric::Stall | Metric::Cow => f64::NAN,
    }
}

/// Per-round ratios of `num` over `den`, paired by round.
fn per_round(n: &[&Sample], d: &[&Sample], metric: Metric) -> Vec<f64> {
    n.iter()
        .filter_map(|a| {
            let b = d.iter().find(|b| b.round == a.round)?;
            Some(metric_of(a, metric) / metric_of(b, metric))
        })
        .collect()
}

/// Keys of a sample: (devset, workload, config).
fn key(s: &Sample) -> (String, String, String) {
    (s.devset.clone(), s.workload.clone(), s.config.clone())
}

pub fn build(kernel: &str, release: &str, rounds: u32, quick: bool, results: Results) -> Report {
    let mut groups: BTreeMap<(String, String, String), Vec<&Sample>> = BTreeMap::new();
    for s in &results.samples {
        groups.entry(key(s)).or_default().push(s);
    }
    let stat = |v: &[&Sample], f: &dyn Fn(&Sample) -> f64| {
        Stat::of(&v.iter().map(|s| f(s)).collect::<Vec<_>>())
    };
    let cells = groups
        .iter()
        .filter_map(|((devset, workload, config), v)| {
            Some(Cell {
                devset: devset.clone(),
                workload: workload.clone(),
                config: config.clone(),
                iops: stat(v, &|s| s.fio.iops)?,
                mbps: stat(v, &|s| s.fio.mbps)?,
                insn_per_io: stat(v, &|s| s.insn_per_io())?,
            })
        })
        .collect();

    let mut ratios = Vec::new();
    // every (devset, workload) that has samples, in a stable order
    let mut pairs: Vec<(String, String, String)> = results
        .samples
        .iter()
        .map(|s| (s.part.clone(), s.devset.clone(), s.workload.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    for (part, devset, workload) in &pairs {
        let table = match part.as_str() {
            "snap" => SNAP_RATIOS,
            "cow" => continue,
            _ => MATRIX_RATIOS,
        };
        for &(num, den, metric, target) in table {
            let get =
                |config: &str| groups.get(&(devset.clone(), workload.clone(), config.to_string()));
            let (Some(n), Some(d)) = (get(num), get(den)) else {
                continue;
            };
            if let Some(ratio) = Stat::of(&per_round(n, d, metric)) {
                ratios.push(Ratio {
                    num: num.into(),
                    den: den.into(),
                    devset: devset.clone(),
                    workload: workload.clone(),
                    metric,
                    ratio,
                    target,
                });
            }
        }
    }
    cow_ratios(&results, &groups, &mut ratios);

    let mut stalls = BTreeMap::new();
    for event in ["freeze", "attach", "detach"] {
        let v: Vec<f64> = results
            .stalls
            .iter()
            .filter(|s| s.event == event)
            .map(|s| s.max_ms)
            .collect();
        if let Some(st) = Stat::of(&v) {
            stalls.insert(event.to_string(), st);
        }
    }
    for &(num, den) in STALL_RATIOS {
        let per_round: Vec<f64> = results
            .stalls
            .iter()
            .filter(|a| a.event == num)
            .filter_map(|a| {
                let b = results
                    .stalls
                    .iter()
                    .find(|b| b.event == den && b.round == a.round)?;
                Some(a.max_ms / b.max_ms)
            })
            .collect();
        if let Some(ratio) = Stat::of(&per_round) {
            ratios.push(Ratio {
                num: num.into(),
                den: den.into(),
                devset: "virtio".into(),
                workload: "ext4 sync 4k".into(),
                metric: Metric::Stall,
                ratio,
                target: Some(STALL_TARGET),
            });
        }
    }

    let calib = results
        .calib
        .iter()
        .map(|c| {
            let expected = 2 * c.loops;
            CalibFigure {
                expected,
                counted: c.insns,
                error_pct: (c.insns as f64 - expected as f64) / expected as f64 * 100.0,
            }
        })
        .collect();

    let mut cow: BTreeMap<String, BTreeMap<String, Stat>> = BTreeMap::new();
    let mut chunk_kib = BTreeMap::new();
    let mut by: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for c in &results.cow {
        by.entry((c.config.clone(), c.workload.clone()))
            .or_default()
            .push(c.sectors as f64 / 2048.0);
        chunk_kib.insert(c.config.clone(), c.chunk / 2);
    }
    for ((config, workload), v) in by {
        if let Some(st) = Stat::of(&v) {
            cow.entry(config).or_default().insert(workload, st);
        }
    }

    Report {
        kernel: kernel.into(),
        release: release.into(),
        rounds,
        quick,
        calib,
        cells,
        stalls,
        ratios,
        cow,
        chunk_kib,
        results,
    }
}

/// The snapshot-cost part's ratios: each configuration against `none`, and the
/// default's COW use against 4 KiB chunks'.
fn cow_ratios(
    results: &Results,
    groups: &BTreeMap<(String, String, String), Vec<&Sample>>,
    ratios: &mut Vec<Ratio>,
) {
    let mut configs: Vec<&str> = results
        .samples
        .iter()
        .filter(|s| s.part == "cow" && s.config != "none")
        .map(|s| s.config.as_str())
        .collect();
    configs.sort();
    configs.dedup();
    for config in configs {
        for &workload in COW_WORKLOADS {
            let get = |c: &str| groups.get(&("virtio".into(), workload.into(), c.to_string()));
            let (Some(n), Some(d)) = (get(config), get("none")) else {
                continue;
            };
            for metric in [Metric::InsnPerIo, Metric::Iops] {
                let target = COW_TARGETS
                    .iter()
                    .find(|t| config == "default" && t.0 == workload && t.1 == metric)
                    .map(|t| t.2);
                if let Some(ratio) = Stat::of(&per_round(n, d, metric)) {
                    ratios.push(Ratio {
                        num: config.into(),
                        den: "none".into(),
                        devset: "virtio".into(),
                        workload: workload.into(),
                        metric,
                        ratio,
                        target,
                    });
                }
            }
        }
    }
    let sparse = |config: &str| -> Vec<&CowUse> {
        results
            .cow
            .iter()
            .filter(|c| c.config == config && c.workload == "sparse")
            .collect()
    };
    let (d, base) = (sparse("default"), sparse("4k"));
    let per_round: Vec<f64> = d
        .iter()
        .filter_map(|a| {
            let b = base.iter().find(|b| b.round == a.round)?;
            Some(a.sectors as f64 / b.sectors as f64)
        })
        .collect();
    if let Some(ratio) = Stat::of(&per_round) {
        ratios.push(Ratio {
            num: "default".into(),
            den: "4k".into(),
            devset: "virtio".into(),
            workload: "sparse".into(),
            metric: Metric::Cow,
            ratio,
            target: Some(COW_SPACE_TARGET),
        });
    }
}

fn verdict_text(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "info",
    }
}

/// The console table: sanity loops, absolute figures, then the ratios with PASS/MISS.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "bench: kernel {} ({}), {} round(s){}",
        r.kernel,
        r.release,
        r.rounds,
        if r.quick { ", --quick" } else { "" }
    );
    for c in &r.calib {
        let _ = writeln!(
            o,
            "sanity loop: expected {} instructions, counted {} ({:+.4}%)",
            c.expected, c.counted, c.error_pct
        );
    }
    let tares: Vec<f64> = r.results.samples.iter().map(|s| s.tare as f64).collect();
    if let Some(t) = Stat::of(&tares) {
        let _ = writeln!(
            o,
            "marker tare (a one-I/O job, subtracted from each job of its fio run): median {:.0} \
             instructions, MAD {:.2}%",
            t.median, t.mad_pct
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<9} {:<14} {:<16} {:>10} {:>7} {:>9} {:>12} {:>7}",
        "devices", "workload", "config", "IOPS", "spread", "MB/s", "insn/IO", "spread"
    );
    for c in &r.cells {
        let _ = writeln!(
            o,
            "{:<9} {:<14} {:<16} {:>10.0} {:>6.1}% {:>9.1} {:>12.0} {:>6.2}%",
            c.devset,
            c.workload,
            c.config,
            c.iops.median,
            c.iops.spread_pct,
            c.mbps.median,
            c.insn_per_io.median,
            c.insn_per_io.spread_pct
        );
    }
    let mut mads: Vec<(f64, f64, String)> = r
        .cells
        .iter()
        .map(|c| {
            let name = format!("{} {} {}", c.devset, c.workload, c.config);
            (c.insn_per_io.mad_pct, c.insn_per_io.spread_pct, name)
        })
        .collect();
    mads.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(mid), Some(worst)) = (mads.get(mads.len() / 2), mads.last()) {
        let ranges = Stat::of(&mads.iter().map(|m| m.1).collect::<Vec<_>>());
        let _ = writeln!(
            o,
            "insn/IO stability over the rounds: median cell MAD {:.2}%, worst MAD {:.2}% ({}); \
             median cell range {:.2}%",
            mid.0,
            worst.0,
            worst.2,
            ranges.map_or(0.0, |s| s.median)
        );
    }
    if !r.stalls.is_empty() {
        let _ = writeln!(o);
        for (event, s) in &r.stalls {
            let _ = writeln!(
                o,
                "writer stall during {event:<7} median {:>8.2} ms (min {:.2}, max {:.2}, {} rounds)",
                s.median, s.min, s.max, s.n
            );
        }
    }
    if !r.cow.is_empty() {
        let _ = writeln!(o);
        o.push_str(&cow_curve(r));
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<30} {:<9} {:<14} {:<8} {:>7} {:>7} {:>8} {:>5}",
        "ratio", "devices", "workload", "metric", "median", "spread", "target", ""
    );
    for x in &r.ratios {
        let _ = writeln!(
            o,
            "{:<30} {:<9} {:<14} {:<8} {:>7.3} {:>6.1}% {:>8} {:>5}",
            x.name(),
            x.devset,
            x.workload,
            x.metric.label(),
            x.ratio.median,
            x.ratio.spread_pct,
            x.target.map_or(String::new(), Target::text),
            verdict_text(x.verdict())
        );
    }
    let (pass, miss) = r.ratios.iter().fold((0, 0), |(p, m), x| match x.verdict() {
        Some(true) => (p + 1, m),
        Some(false) => (p, m + 1),
        None => (p, m),
    });
    let _ = writeln!(o, "\ntargets: {pass} PASS, {miss} MISS");
    o
}

/// The snapshot-cost part as one line per configuration: chunk, the cost ratios against
/// no snapshot (medians over rounds), and the COW space used.
fn cow_curve(r: &Report) -> String {
    let mut o = String::new();
    let ratio = |config: &str, workload: &str, metric: Metric| {
        r.ratios
            .iter()
            .find(|x| {
                x.num == config && x.den == "none" && x.workload == workload && x.metric == metric
            })
            .map_or("-".to_string(), |x| format!("{:.2}x", x.ratio.median))
    };
    let mib = |config: &str, workload: &str| {
        r.cow
            .get(config)
            .and_then(|w| w.get(workload))
            .map_or("-".to_string(), |s| format!("{:.1}", s.median))
    };
    let _ = writeln!(
        o,
        "snapshot cost against no snapshot (medians of per-round ratios; COW in MiB):"
    );
    let _ = writeln!(
        o,
        "{:<9} {:>6} {:>11} {:>10} {:>11} {:>11} {:>10} {:>11} {:>9} {:>10}",
        "config",
        "chunk",
        "dense insn",
        "dense IOPS",
        "2nd insn",
        "sparse insn",
        "sparse IOPS",
        "snap read",
        "COW dense",
        "COW sparse"
    );
    for (config, kib) in &r.chunk_kib {
        if config == "none" {
            continue;
        }
        let _ = writeln!(
            o,
            "{:<9} {:>5}K {:>11} {:>10} {:>11} {:>11} {:>10} {:>11} {:>9} {:>10}",
            config,
            kib,
            ratio(config, "dense", Metric::InsnPerIo),
            ratio(config, "dense", Metric::Iops),
            ratio(config, "second", Metric::InsnPerIo),
            ratio(config, "sparse", Metric::InsnPerIo),
            ratio(config, "sparse", Metric::Iops),
            ratio(config, "snap-read", Metric::Iops),
            mib(config, "dense"),
            mib(config, "sparse"),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::super::run::{FioFigures, Stall};
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert!((s.spread_pct - 100.0).abs() < 1e-9);
        assert!((s.mad_pct - 50.0).abs() < 1e-9);
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        // one wild round moves the range, not the MAD
        let w = Stat::of(&[100.0, 101.0, 99.0, 100.0, 5000.0]).unwrap();
        assert_eq!(w.median, 100.0);
        assert!((w.mad_pct - 1.0).abs() < 1e-9);
        assert!(w.spread_pct > 4000.0);
        assert!(Stat::of(&[]).is_none());
        assert!(Stat::of(&[f64::NAN]).is_none());
    }

    fn sample(config: &str, round: u32, iops: f64, insns: u64) -> Sample {
        Sample {
            part: "matrix".into(),
            devset: "null_blk".into(),
            config: config.into(),
            workload: "randread".into(),
            round,
            fio: FioFigures {
                ios: 1000,
                iops,
                mbps: iops * 4096.0 / 1e6,
                lat_max_ms: 1.0,
            },
            insns,
            tare: 0,
            file: String::new(),
            seq: 0,
            tare_seq: 0,
        }
    }

    #[test]
    fn ratios_pair_rounds_and_judge_targets() {
        let mut res = Results::default();
        for r in 1..=3 {
            // the emulation drifts from round to round; the ratio within a round does not
            let speed = r as f64;
            res.samples
                .push(sample("dm-linear", r, 1000.0 * speed, 10_000_000));
            res.samples
                .push(sample("interposed", r, 990.0 * speed, 10_100_000));
            res.samples
                .push(sample("raw", r, 1200.0 * speed, 8_000_000));
        }
        for (event, ms) in [("freeze", 10.0), ("attach", 11.0), ("detach", 14.0)] {
            res.stalls.push(Stall {
                event: event.into(),
                round: 1,
                max_ms: ms,
            });
        }
        let rep = build("6.12", "6.12.x", 3, true, res);
        let find = |num: &str, den: &str, m: Metric| {
            rep.ratios
                .iter()
                .find(|x| x.num == num && x.den == den && x.metric == m)
                .unwrap()
        };
        let insn = find("interposed", "dm-linear", Metric::InsnPerIo);
        assert!((insn.ratio.median - 1.01).abs() < 1e-9);
        assert_eq!(insn.verdict(), Some(true));
        let iops = find("interposed", "dm-linear", Metric::Iops);
        assert!((iops.ratio.median - 0.99).abs() < 1e-9);
        assert!(
            iops.ratio.spread_pct < 1e-6,
            "paired rounds cancel the drift"
        );
        assert_eq!(find("interposed", "raw", Metric::Iops).verdict(), None);
        assert_eq!(
            find("attach", "freeze", Metric::Stall).verdict(),
            Some(true)
        );
        assert_eq!(
            find("detach", "freeze", Metric::Stall).verdict(),
            Some(false)
        );
        // no bystander samples: no bystander ratio
        assert!(rep.ratios.iter().all(|x| x.num != "bystander"));
        let text = render(&rep);
        assert!(text.contains("interposed/dm-linear"), "{text}");
        assert!(text.contains("MISS") && text.contains("PASS"), "{text}");
        assert!(text.contains("targets: 3 PASS, 1 MISS"), "{text}");
        assert_eq!(rep.cells.len(), 3);
    }

    #[test]
    fn targets() {
        assert!(Target::AtMost(1.02).met(1.02));
        assert!(!Target::AtMost(1.02).met(1.03));
        assert!(Target::AtLeast(0.98).met(0.99));
        assert!(!Target::AtLeast(0.98).met(0.97));
        assert_eq!(Target::AtLeast(0.98).text(), ">= 0.98");
    }

    #[test]
    fn cow_part_compares_with_no_snapshot_and_judges_the_default() {
        let mut samples = Vec::new();
        for round in [1, 2] {
            for (config, dense, sparse) in [
                ("none", 20_000, 20_000),
                ("default", 36_000, 60_000),
                ("4k", 42_000, 40_000),
            ] {
                for (workload, insns) in [("dense", dense), ("sparse", sparse)] {
                    samples.push(Sample {
                        part: "cow".into(),
                        devset: "virtio".into(),
                        workload: workload.into(),
                        ..sample(config, round, 1000.0, insns * 1000)
                    });
                }
            }
        }
        let cow = |config: &str, sectors: u64, round: u32| CowUse {
            config: config.into(),
            workload: "sparse".into(),
            round,
            sectors,
            chunk: if config == "4k" { 8 } else { 128 },
        };
        let results = Results {
            samples,
            cow: vec![
                cow("default", 400, 1),
                cow("4k", 32, 1),
                cow("default", 416, 2),
                cow("4k", 32, 2),
            ],
            ..Default::default()
        };
        let r = build("6.12", "6.12.0", 2, false, results);
        let get = |num: &str, den: &str, workload: &str, metric: Metric| {
            r.ratios
                .iter()
                .find(|x| {
                    x.num == num && x.den == den && x.workload == workload && x.metric == metric
                })
                .unwrap_or_else(|| panic!("no {num}/{den} {workload} {metric:?}"))
        };
        let d = get("default", "none", "dense", Metric::InsnPerIo);
        assert!((d.ratio.median - 1.8).abs() < 1e-9);
        assert_eq!(
            (d.target, d.verdict()),
            (Some(Target::AtMost(1.3)), Some(false))
        );
        let k = get("4k", "none", "sparse", Metric::InsnPerIo);
        assert!((k.ratio.median - 2.0).abs() < 1e-9);
        assert_eq!(k.target, None, "targets are the default's only");
        let c = get("default", "4k", "sparse", Metric::Cow);
        assert!((c.ratio.median - 12.75).abs() < 1e-9);
        assert_eq!(c.verdict(), Some(false));
        assert_eq!(r.chunk_kib["default"], 64);
        assert!((r.cow["4k"]["sparse"].median - 32.0 / 2048.0).abs() < 1e-12);
        let curve = cow_curve(&r);
        assert!(curve.contains("default      64K       1.80x"), "{curve}");
    }
}
