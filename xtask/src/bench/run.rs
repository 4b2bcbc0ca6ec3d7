//! What one bench VM hands back, parsed: the `=== NAME` sections the guest wrote to
//! /dev/vda (tests/bench/guest.sh), the fio JSON in them, and the marker counts the plugin
//! wrote (crates/insn-count-plugin), paired with the runs in marker order.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

/// One marked fio run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// `matrix` or `snap`.
    pub part: String,
    /// `null_blk`, `virtio`.
    pub devset: String,
    /// `raw`, `dm-linear`, `interposed`, `bystander`, `no-module`, `snap-stacked`, ...
    pub config: String,
    pub workload: String,
    pub round: u32,
    pub fio: FioFigures,
    /// Guest instructions between the markers.
    pub insns: u64,
    /// Instructions between the markers of the one-I/O `tare` job of the same fio run:
    /// the cost of the markers themselves (a shell starting `insn-marker`, twice).
    pub tare: u64,
    /// The fio JSON the figures come from.
    pub file: String,
    /// Position in marker order (1-based): the index of its profile record.
    pub seq: usize,
    /// The `seq` of its tare.
    pub tare_seq: usize,
}

impl Sample {
    /// Instructions per I/O, net of the tare.
    pub fn insn_per_io(&self) -> f64 {
        self.insns.saturating_sub(self.tare) as f64 / self.fio.ios.max(1) as f64
    }
}

/// One `insn-marker loop N`: 2N instructions expected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calib {
    pub loops: u64,
    pub insns: u64,
}

/// One writer run around an attach, a detach or a bare fsfreeze.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stall {
    /// `freeze`, `attach`, `detach`.
    pub event: String,
    pub round: u32,
    /// The writer's highest completion latency, ms.
    pub max_ms: f64,
}

/// COW space in use after one write run of the snapshot-cost part.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CowUse {
    /// `none`, `default`, `4k-P`, `64k`, ...
    pub config: String,
    /// `dense`, `second`, `sparse`.
    pub workload: String,
    pub round: u32,
    /// Sectors in use, data and metadata (dm-snapshot's status).
    pub sectors: u64,
    /// The snapshot's chunk in sectors (0: no snapshot).
    pub chunk: u64,
}

/// Everything one VM measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Results {
    pub calib: Vec<Calib>,
    pub samples: Vec<Sample>,
    pub stalls: Vec<Stall>,
    pub cow: Vec<CowUse>,
}

/// The figures of one fio job (read and write added up).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FioFigures {
    pub ios: u64,
    pub iops: f64,
    pub mbps: f64,
    /// Highest total latency of any I/O, ms.
    pub lat_max_ms: f64,
}

/// The job that every fio run of the guest starts with: one I/O between the markers.
pub const TARE: &str = "tare";

/// The `=== NAME` sections of the results disk, up to `=== END`.
pub fn sections(disk: &[u8]) -> Result<BTreeMap<String, String>> {
    let text = String::from_utf8_lossy(disk);
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.split('\n') {
        if let Some(name) = line.strip_prefix("=== ") {
            if let Some((n, body)) = current.take() {
                out.insert(n, body);
            }
            if name == "END" {
                return Ok(out);
            }
            current = Some((name.to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    bail!("the results disk has no `=== END`: the guest did not finish writing it")
}

/// The job named `job` in fio's `--output-format=json`; text around the JSON (exec_prerun's
/// "Saving output" notes) is skipped.
pub fn parse_fio(text: &str, job: &str) -> Result<FioFigures> {
    let start = text
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| text.starts_with('{').then_some(0))
        .context("no JSON object in the fio output")?;
    let end = text.rfind('}').context("unterminated fio JSON")?;
    let v: serde_json::Value =
        serde_json::from_str(&text[start..=end]).context("parsing fio's JSON")?;
    let job = v["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["jobname"] == job))
        .with_context(|| format!("fio's JSON has no job {job}"))?;
    let mut f = FioFigures {
        ios: 0,
        iops: 0.0,
        mbps: 0.0,
        lat_max_ms: 0.0,
    };
    for dir in ["read", "write"] {
        let d = &job[dir];
        f.ios += d["total_ios"].as_u64().unwrap_or(0);
        f.iops += d["iops"].as_f64().unwrap_or(0.0);
        f.mbps += d["bw_bytes"].as_f64().unwrap_or(0.0) / 1e6;
        let lat = d["lat_ns"]["max"].as_f64().unwrap_or(0.0) / 1e6;
        f.lat_max_ms = f.lat_max_ms.max(lat);
    }
    Ok(f)
}

/// The plugin's `start N` / `stop N` lines as the instructions between each pair.
pub fn marker_spans(text: &str) -> Result<Vec<u64>> {
    let mut spans = Vec::new();
    let mut open = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (kind, n) = line
            .split_once(' ')
            .with_context(|| format!("marker line {}: {line:?}", i + 1))?;
        let n: u64 = n
            .trim()
            .parse()
            .with_context(|| format!("marker line {}: {line:?}", i + 1))?;
        match (kind, open) {
            ("start", None) => open = Some(n),
            ("stop", Some(s)) => {
                ensure!(n >= s, "marker line {}: the count went backwards", i + 1);
                spans.push(n - s);
                open = None;
            }
            _ => bail!(
                "marker line {}: {kind} out of order (starts and stops must alternate)",
                i + 1
            ),
        }
    }
    ensure!(open.is_none(), "the last start marker has no stop");
    Ok(spans)
}

/// Pair the guest's `runs` index with the marker spans and the fio files.
pub fn assemble(sections: &BTreeMap<String, String>, markers: &str) -> Result<Results> {
    let spans = marker_spans(markers)?;
    let runs = sections
        .get("runs")
        .context("the results have no `runs` index")?;
    let mut res = Results::default();
    let mut marked = 0usize;
    for line in runs.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let fio = |name: &str, job: &str| -> Result<FioFigures> {
            let text = sections
                .get(name)
                .with_context(|| format!("no section {name} for `{line}`"))?;
            parse_fio(text, job).with_context(|| format!("{name} (`{line}`)"))
        };
        let span = |seq: &str| -> Result<u64> {
            let seq: usize = seq
                .parse()
                .with_context(|| format!("bad sequence in `{line}`"))?;
            spans.get(seq.wrapping_sub(1)).copied().with_context(|| {
                format!(
                    "`{line}`: no marker pair {seq} (the plugin saw {} pairs)",
                    spans.len()
                )
            })
        };
        match f[..] {
            [seq, "calib", n] => {
                marked += 1;
                res.calib.push(Calib {
                    loops: n.parse()?,
                    insns: span(seq)?,
                });
            }
            [seq, "fio", part, devset, config, workload, round, file] => {
                marked += 1;
                res.samples.push(Sample {
                    part: part.into(),
                    devset: devset.into(),
                    config: config.into(),
                    workload: workload.into(),
                    round: round.parse()?,
                    fio: fio(file, workload)?,
                    insns: span(seq)?,
                    tare: 0,
                    file: file.into(),
                    seq: seq.parse()?,
                    tare_seq: 0,
                });
            }
            ["-", "stall", event, round, file] => res.stalls.push(Stall {
                event: event.into(),
                round: round.parse()?,
                max_ms: fio(file, "stall")?.lat_max_ms,
            }),
            ["-", "cow", config, workload, round, sectors, chunk] => res.cow.push(CowUse {
                config: config.into(),
                workload: workload.into(),
                round: round.parse()?,
                sectors: sectors.parse()?,
                chunk: chunk.parse()?,
            }),
            _ => bail!("unknown line in the runs index: `{line}`"),
        }
    }
    ensure!(
        marked == spans.len(),
        "{marked} marked runs but {} marker pairs: they cannot be paired",
        spans.len()
    );
    let tares: BTreeMap<String, (u64, usize)> = res
        .samples
        .iter()
        .filter(|s| s.workload == TARE)
        .map(|s| (s.file.clone(), (s.insns, s.seq)))
        .collect();
    res.samples.retain(|s| s.workload != TARE);
    for s in &mut res.samples {
        (s.tare, s.tare_seq) = tares.get(&s.file).copied().unwrap_or((0, 0));
    }
    Ok(res)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const FIO_JSON: &str = r#"b: Saving output of prerun in b.prerun.txt
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "randread",
      "read" : { "io_bytes" : 409600, "bw_bytes" : 2000000, "iops" : 488.5, "total_ios" : 100,
                 "lat_ns" : { "min" : 1000, "max" : 2500000, "mean" : 5.0 } },
      "write" : { "io_bytes" : 0, "bw_bytes" : 1000000, "iops" : 11.5, "total_ios" : 20,
                  "lat_ns" : { "min" : 0, "max" : 7000000, "mean" : 0.0 } }
    },
    {
      "jobname" : "stall",
      "read" : { "bw_bytes" : 0, "iops" : 0.0, "total_ios" : 0, "lat_ns" : { "max" : 0 } },
      "write" : { "bw_bytes" : 4096000, "iops" : 1000.0, "total_ios" : 3000,
                  "lat_ns" : { "min" : 0, "max" : 58000000, "mean" : 0.0 } }
    }
  ]
}
b: Saving output of postrun in b.postrun.txt
"#;

    #[test]
    fn fio_json_is_parsed_after_the_prerun_note() {
        let f = parse_fio(FIO_JSON, "randread").unwrap();
        assert_eq!(f.ios, 120);
        assert!((f.iops - 500.0).abs() < 1e-9);
        assert!((f.mbps - 3.0).abs() < 1e-9);
        assert!((f.lat_max_ms - 7.0).abs() < 1e-9);
        assert_eq!(parse_fio(FIO_JSON, "stall").unwrap().ios, 3000);
        assert!(parse_fio(FIO_JSON, "seqwrite").is_err());
        assert!(parse_fio("fio: no such file", "randread").is_err());
    }

    #[test]
    fn markers_pair_up() {
        assert_eq!(
            marker_spans("start 10\nstop 25\n\nstart 30\nstop 30\n").unwrap(),
            vec![15, 0]
        );
        assert!(marker_spans("start 1\nstart 2\n").is_err());
        assert!(marker_spans("stop 1\n").is_err());
        assert!(marker_spans("start 1\n").is_err());
        assert!(marker_spans("start 5\nstop 4\n").is_err());
        assert!(marker_spans("start x\n").is_err());
    }

    #[test]
    fn sections_end_at_end() {
        let s = sections(b"=== a\n1\n2\n\n=== b\nx\n=== END\n\0\0garbage").unwrap();
        assert_eq!(s["a"], "1\n2\n\n");
        assert_eq!(s["b"], "x\n");
        assert!(sections(b"=== a\n1\n").is_err());
    }

    #[test]
    fn runs_are_paired_with_markers_in_order() {
        let mut s = BTreeMap::new();
        s.insert(
            "runs".to_string(),
            "1 calib 100\n2 fio matrix virtio raw tare 1 0002.json\n\
             3 fio matrix virtio raw randread 1 0002.json\n- stall attach 1 st.json\n\
             - cow 64k dense 2 160000 128\n"
                .to_string(),
        );
        s.insert("st.json".to_string(), FIO_JSON.to_string());
        s.insert(
            "0002.json".to_string(),
            FIO_JSON.replace("\"stall\"", "\"tare\""),
        );
        let markers = "start 0\nstop 205\nstart 50\nstop 2450\nstart 1000\nstop 13000\n";
        let r = assemble(&s, markers).unwrap();
        assert_eq!(
            r.calib,
            vec![Calib {
                loops: 100,
                insns: 205
            }]
        );
        assert_eq!(r.samples.len(), 1, "the tare is not a sample");
        assert_eq!((r.samples[0].insns, r.samples[0].tare), (12000, 2400));
        assert!((r.samples[0].insn_per_io() - 80.0).abs() < 1e-9);
        assert_eq!(r.samples[0].config, "raw");
        assert!((r.stalls[0].max_ms - 58.0).abs() < 1e-9);
        assert_eq!(
            r.cow,
            vec![CowUse {
                config: "64k".into(),
                workload: "dense".into(),
                round: 2,
                sectors: 160000,
                chunk: 128
            }]
        );
        // one pair too many or too few is an error, not a silent shift
        assert!(assemble(&s, "start 0\nstop 1\nstart 2\nstop 3\n").is_err());
        assert!(assemble(&s, &format!("{markers}start 4\nstop 5\n")).is_err());
    }
}
