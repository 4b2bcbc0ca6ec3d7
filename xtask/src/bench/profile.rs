//! `cargo xtask bench --profile`: where the instructions of each configuration go, by guest
//! function, against its reference configuration.
//!
//! The plugin writes one `prof` record per marker pair (block address, instructions); the
//! guest hands over its /proc/kallsyms (`ksyms`: the kernel's text symbols, once; `modsyms-N`:
//! the modules' symbols after each load of blk_interposer, valid from marked run N on, since
//! a module can load elsewhere each time). A run's profile is its record minus the record
//! of its fio run's one-I/O tare (the markers' own cost), divided by its I/Os.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};

use super::run::{Results, Sample};

/// The comparisons reported: (configuration, reference).
const PAIRS: &[(&str, &str)] = &[
    ("interposed", "dm-linear"),
    ("bystander", "no-module"),
    ("snap-interposed", "snap-stacked"),
    // the snapshot-cost part: each snapshot configuration against no snapshot
    ("default", "none"),
    ("4k-P", "none"),
    ("4k", "none"),
    ("8k", "none"),
    ("16k", "none"),
    ("32k", "none"),
    ("64k", "none"),
    ("256k", "none"),
];

/// Functions listed per comparison (by the size of the difference).
const TOP: usize = 30;

/// Blocks below this address are user space, all counted as one `[user]`.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// The plugin's records: for each marker pair, (block address, instructions).
pub fn parse_records(text: &str) -> Result<Vec<Vec<(u64, u64)>>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<(u64, u64)>> = None;
    for (i, line) in text.lines().enumerate() {
        match (line, cur.as_mut()) {
            ("prof", None) => cur = Some(Vec::new()),
            ("end", Some(_)) => out.extend(cur.take()),
            (_, Some(rec)) => {
                let (a, n) = line
                    .split_once(' ')
                    .with_context(|| format!("profile line {}: {line:?}", i + 1))?;
                let a = u64::from_str_radix(a, 16)
                    .with_context(|| format!("profile line {}: {line:?}", i + 1))?;
                let n: u64 = n
                    .parse()
                    .with_context(|| format!("profile line {}: {line:?}", i + 1))?;
                rec.push((a, n));
            }
            _ => bail!("profile line {}: {line:?} outside a record", i + 1),
        }
    }
    if cur.is_some() {
        bail!("the last profile record has no `end`");
    }
    Ok(out)
}

/// Text symbols, sorted by address.
#[derive(Default)]
pub struct Symbols(Vec<(u64, String)>);

impl Symbols {
    /// Add the text symbols of /proc/kallsyms lines (`ADDR TYPE NAME [MODULE]`).
    pub fn add(&mut self, kallsyms: &str) {
        for line in kallsyms.lines() {
            let mut f = line.split_whitespace();
            let (Some(a), Some(t), Some(name)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if !matches!(t, "t" | "T") {
                continue;
            }
            if let Ok(a) = u64::from_str_radix(a, 16) {
                self.0.push((a, name.to_string()));
            }
        }
        self.0.sort();
    }

    /// The function `addr` is in: the nearest symbol at or below it.
    pub fn name(&self, addr: u64) -> &str {
        if addr < KERNEL_START {
            return "[user]";
        }
        match self.0.partition_point(|(a, _)| *a <= addr) {
            0 => "[unknown]",
            i => &self.0[i - 1].1,
        }
    }
}

/// Instructions by function for one record.
fn by_function(rec: &[(u64, u64)], syms: &Symbols) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for &(a, n) in rec {
        *m.entry(syms.name(a).to_string()).or_insert(0.0) += n as f64;
    }
    m
}

/// The symbol tables of a run: the kernel's plus each module dump's, built once.
struct SymbolSets(Vec<(usize, Symbols)>);

impl SymbolSets {
    fn new(sections: &BTreeMap<String, String>) -> Result<SymbolSets> {
        let core = sections
            .get("ksyms")
            .context("the guest handed over no `ksyms` (kallsyms) section")?;
        let mut sets: Vec<(usize, Symbols)> = sections
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix("modsyms-")?.parse().ok()?;
                let mut syms = Symbols::default();
                syms.add(core);
                syms.add(v);
                Some((n, syms))
            })
            .collect();
        sets.sort_by_key(|(n, _)| *n);
        if sets.is_empty() {
            let mut syms = Symbols::default();
            syms.add(core);
            sets.push((0, syms));
        }
        Ok(SymbolSets(sets))
    }

    /// The table valid for marked run `seq`: the modules as dumped last before it (or
    /// first of all, for runs before any load: the modules loaded then never move, and
    /// blk_interposer is not loaded).
    fn for_seq(&self, seq: usize) -> &Symbols {
        let i = self.0.partition_point(|(n, _)| *n <= seq);
        &self.0[i.saturating_sub(1)].1
    }
}

/// Instructions per I/O by function of one sample, net of its tare.
fn sample_profile(
    s: &Sample,
    records: &[Vec<(u64, u64)>],
    sets: &SymbolSets,
) -> Result<HashMap<String, f64>> {
    let rec = |seq: usize| {
        records
            .get(seq.wrapping_sub(1))
            .with_context(|| format!("no profile record {seq} ({} in all)", records.len()))
    };
    let syms = sets.for_seq(s.seq);
    let mut m = by_function(rec(s.seq)?, syms);
    if s.tare_seq != 0 {
        for (f, n) in by_function(rec(s.tare_seq)?, syms) {
            *m.entry(f).or_insert(0.0) -= n;
        }
    }
    let ios = s.fio.ios.max(1) as f64;
    m.values_mut().for_each(|v| *v /= ios);
    Ok(m)
}

/// The profile table of every comparison the results allow.
pub fn report(
    sections: &BTreeMap<String, String>,
    results: &Results,
    text: &str,
) -> Result<String> {
    let records = parse_records(text)?;
    let sets = SymbolSets::new(sections)?;
    // mean profile per (devset, workload, config)
    type Key = (String, String, String);
    let mut sums: BTreeMap<Key, (HashMap<String, f64>, usize)> = BTreeMap::new();
    for s in &results.samples {
        let p = sample_profile(s, &records, &sets)?;
        let e = sums
            .entry((s.devset.clone(), s.workload.clone(), s.config.clone()))
            .or_default();
        for (f, n) in p {
            *e.0.entry(f).or_insert(0.0) += n;
        }
        e.1 += 1;
    }
    let mean = |k: &Key| {
        sums.get(k).map(|(m, n)| {
            m.iter()
                .map(|(f, v)| (f.clone(), v / *n as f64))
                .collect::<HashMap<_, _>>()
        })
    };
    let mut out = String::new();
    // the keys are sorted, so the configurations of a cell are adjacent
    let mut cells: Vec<(String, String)> = sums
        .keys()
        .map(|(d, w, _)| (d.clone(), w.clone()))
        .collect();
    cells.dedup();
    for (devset, workload) in &cells {
        for (cfg, reference) in PAIRS {
            let key = |c: &str| (devset.clone(), workload.clone(), c.to_string());
            let (Some(a), Some(b)) = (mean(&key(cfg)), mean(&key(reference))) else {
                continue;
            };
            out.push_str(&render(devset, workload, cfg, reference, &a, &b));
        }
    }
    if out.is_empty() {
        bail!("no configuration had its reference in the same run: nothing to compare");
    }
    Ok(out)
}

/// One comparison: totals, then the functions whose cost differs most.
fn render(
    devset: &str,
    workload: &str,
    cfg: &str,
    reference: &str,
    a: &HashMap<String, f64>,
    b: &HashMap<String, f64>,
) -> String {
    let total = |m: &HashMap<String, f64>| m.values().sum::<f64>();
    let (ta, tb) = (total(a), total(b));
    let mut rows: Vec<(&String, f64, f64)> = a
        .keys()
        .chain(b.keys())
        .map(|f| {
            (
                f,
                a.get(f).copied().unwrap_or(0.0),
                b.get(f).copied().unwrap_or(0.0),
            )
        })
        .collect();
    rows.sort_by(|x, y| {
        (y.1 - y.2)
            .abs()
            .total_cmp(&(x.1 - x.2).abs())
            .then(x.0.cmp(y.0))
    });
    rows.dedup_by(|x, y| x.0 == y.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== {devset} {workload}: {cfg} against {reference}, instructions per I/O"
    );
    let _ = writeln!(
        s,
        "{:<40} {:>10} {:>10} {:>9}",
        "function", cfg, reference, "delta"
    );
    let _ = writeln!(
        s,
        "{:<40} {:>10.0} {:>10.0} {:>+9.0}  ({:.3}x)",
        "TOTAL",
        ta,
        tb,
        ta - tb,
        if tb > 0.0 { ta / tb } else { 0.0 }
    );
    for (f, x, y) in rows.iter().take(TOP) {
        if (x - y).abs() < 0.5 {
            break;
        }
        let _ = writeln!(s, "{f:<40} {x:>10.1} {y:>10.1} {:>+9.1}", x - y);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_reject_garbage() {
        let r = parse_records("prof\nffffffff81000000 10\n400000 5\nend\nprof\nend\n").unwrap();
        assert_eq!(
            r,
            vec![vec![(0xffff_ffff_8100_0000, 10), (0x40_0000, 5)], vec![]]
        );
        assert!(parse_records("prof\nzz 1\nend\n").is_err());
        assert!(parse_records("ffff 1\n").is_err());
        assert!(parse_records("prof\n1 1\n").is_err());
    }

    #[test]
    fn addresses_resolve_to_the_symbol_below() {
        let mut s = Symbols::default();
        s.add(
            "ffffffff81000000 T _stext\nffffffff81000100 t foo\nffffffff82000000 D data\n\
             ffffffffc0000000 t bar\t[blk_interposer]\n",
        );
        assert_eq!(s.name(0xffff_ffff_8100_0150), "foo");
        assert_eq!(s.name(0xffff_ffff_8100_0000), "_stext");
        assert_eq!(s.name(0xffff_ffff_c000_0010), "bar");
        assert_eq!(s.name(0x40_0000), "[user]");
        assert_eq!(s.name(0xffff_ffff_8000_0000), "[unknown]");
        // data symbols do not end a function
        assert_eq!(s.name(0xffff_ffff_8200_0010), "foo");
    }

    #[test]
    fn runs_take_the_module_symbols_dumped_last_before_them() {
        let mut sec = BTreeMap::new();
        sec.insert("ksyms".to_string(), "ffffffff81000000 T core\n".to_string());
        sec.insert(
            "modsyms-5".to_string(),
            "ffffffffc0000000 t a\t[m]\n".to_string(),
        );
        sec.insert(
            "modsyms-12".to_string(),
            "ffffffffc0000000 t b\t[m]\n".to_string(),
        );
        let sets = SymbolSets::new(&sec).unwrap();
        let at = |seq| sets.for_seq(seq).name(0xffff_ffff_c000_0001).to_string();
        assert_eq!(at(1), "a", "before any dump: the first one");
        assert_eq!(at(5), "a");
        assert_eq!(at(11), "a");
        assert_eq!(at(12), "b");
        assert_eq!(sets.for_seq(40).name(0xffff_ffff_8100_0001), "core");
        assert!(SymbolSets::new(&BTreeMap::new()).is_err());
    }
}
