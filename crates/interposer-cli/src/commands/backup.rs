//! `interposer backup DEVICE... --to DIR | --stdout`, `backup verify`, `backup restore`

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use blk_interposer::backup::{BackupDir, RestoreReport, VerifyReport};
use blk_interposer::{BackupReport, BackupRequest, GroupBackupRequest, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::snapshot::cow_store;
use crate::cli::{BackupArgs, BackupCommand, BackupRestoreArgs, BackupVerifyArgs};
use crate::output;

pub fn exec(args: BackupArgs, json: bool) -> anyhow::Result<()> {
    match args.command {
        Some(BackupCommand::Verify(a)) => verify(a, json),
        Some(BackupCommand::Restore(a)) => restore(a, json),
        None => backup(args, json),
    }
}

/// Where progress goes: a bar on standard error for people, JSON lines
/// for tools (`--json`), or nowhere.
struct Shown {
    bar: Option<ProgressBar>,
    /// JSON lines here, at most one progress event a second.
    json: Option<Box<dyn Write>>,
    phase: String,
    done: u64,
    total: u64,
    last: Option<Instant>,
}

impl Shown {
    /// `to_stderr`: JSON events go to standard error (standard output
    /// carries the image).
    fn new(json: bool, quiet: bool, to_stderr: bool) -> Self {
        let bar = (!json && !quiet && io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:7} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b
        });
        let json = json.then(|| -> Box<dyn Write> {
            if to_stderr {
                Box::new(io::stderr())
            } else {
                Box::new(io::stdout())
            }
        });
        Shown {
            bar,
            json,
            phase: String::new(),
            done: 0,
            total: 0,
            last: None,
        }
    }

    fn event<T: Serialize>(&mut self, value: &T) {
        if let Some(w) = &mut self.json {
            // Progress is best effort: a closed pipe shows in the result.
            let _ = serde_json::to_writer(&mut *w, value);
            let _ = writeln!(w);
            let _ = w.flush();
        }
    }

    fn progress_event(&mut self) {
        let e = serde_json::json!({
            "event": "progress", "phase": self.phase, "done": self.done, "total": self.total,
        });
        self.event(&e);
        self.last = Some(Instant::now());
    }

    /// The final report: one JSON line after the events, or text lines.
    fn finish<T: Serialize>(mut self, report: &T, text: Vec<String>) -> anyhow::Result<()> {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.json.is_some() {
            self.event(&serde_json::json!({ "event": "done", "report": report }));
            Ok(())
        } else {
            output::lines(text)
        }
    }
}

impl Progress for Shown {
    fn start(&mut self, phase: &str, total: u64) {
        if self.json.is_some() && self.total > 0 {
            self.progress_event();
        }
        (self.phase, self.done, self.total) = (phase.to_string(), 0, total);
        if let Some(b) = &self.bar {
            b.set_message(phase.to_string());
            b.set_length(total);
            b.set_position(0);
            b.reset_eta();
        }
        self.progress_event();
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if self.json.is_some() && (due || self.done == self.total) {
            self.progress_event();
        }
    }

    fn message(&mut self, text: &str) {
        if self.json.is_some() {
            self.event(&serde_json::json!({ "event": "message", "text": text }));
        } else if let Some(b) = &self.bar {
            b.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

fn backup(args: BackupArgs, json: bool) -> anyhow::Result<()> {
    let (device, several) = match args.device.as_slice() {
        [] => bail!("name the device to back up: `interposer backup DEVICE --to DIR --cow DEV`"),
        [d] => (d.clone(), false),
        [d, ..] => (d.clone(), true),
    };
    if several && args.stdout {
        bail!("--stdout streams one device's image: name one device, or back several up --to DIR");
    }
    let ops = super::system()?;
    if several {
        return backup_group(&ops, args, json);
    }
    if args.stdout {
        if io::stdout().is_terminal() {
            bail!("--stdout writes a disk image: pipe it into a program (`| restic backup --stdin`) or redirect it to a file");
        }
        let mut shown = Shown::new(json, output::quiet(), true);
        let mut out = io::stdout().lock();
        let r = ops
            .backup_stream(
                &device,
                &cow_store(args.cow),
                args.name.as_deref(),
                &mut out,
                &mut shown,
            )
            .with_context(|| format!("cannot stream an image of {}", device.display()))?;
        if let Some(b) = shown.bar.take() {
            b.finish_and_clear();
        }
        if json {
            shown.event(&serde_json::json!({ "event": "done", "report": r }));
        } else if !output::quiet() {
            eprintln!(
                "Streamed {} ({} bytes), sha256 {}.",
                r.device, r.size, r.sha256
            );
        }
        return Ok(());
    }
    let Some(dir) = args.to.clone() else {
        bail!("give the backup directory with --to DIR, or --stdout");
    };
    let req = BackupRequest {
        full: args.full,
        keep_snapshot: args.keep_snapshot,
        name: args.name.clone(),
        overwrite: args.yes,
        ..BackupRequest::new(device.clone(), dir.clone(), cow_store(args.cow))
    };
    let mut shown = Shown::new(json, output::quiet(), false);
    let r = ops
        .backup(&req, &mut shown)
        .with_context(|| format!("cannot back up {} to {}", device.display(), dir.display()))?;
    shown.finish(&r, human_backup(&r))
}

/// Several devices at one point in time, each into DIR/<kernel name>.
fn backup_group(ops: &super::SystemOps, args: BackupArgs, json: bool) -> anyhow::Result<()> {
    let Some(dir) = args.to.clone() else {
        bail!("give the backup directory with --to DIR");
    };
    let names: Vec<String> = args
        .device
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let what = || format!("cannot back up {} to {}", names.join(", "), dir.display());
    let req = GroupBackupRequest {
        members: ops
            .backup_group_members(&args.device, &dir)
            .with_context(what)?,
        cow: cow_store(args.cow),
        full: args.full,
        keep_snapshot: args.keep_snapshot,
        name: args.name.clone(),
        overwrite: args.yes,
    };
    let mut shown = Shown::new(json, output::quiet(), false);
    let r = ops.backup_group(&req, &mut shown).with_context(what)?;
    let text = r.iter().flat_map(human_backup).collect();
    shown.finish(&r, text)
}

/// One line per fact.
fn human_backup(r: &BackupReport) -> Vec<String> {
    let s = &r.source;
    let mut v = vec![format!(
        "Backup version {} of {} in {}: {}{}.",
        r.version,
        s.device,
        r.dir.display(),
        s.kind,
        r.previous
            .filter(|_| s.kind == blk_interposer::backup::Kind::Incremental)
            .map_or_else(String::new, |p| format!(", on version {p}"))
    )];
    if let Some(why) = &s.full_reason {
        v.push(format!("Full because: {why}."));
    }
    v.push(format!(
        "Copied {} of {} in {} pieces, read back and compared with the snapshot.",
        output::size(r.copied_bytes / 512),
        output::size(s.size / 512),
        r.pieces
    ));
    match &s.checkpoint {
        Some(c) => v.push(format!(
            "Checkpoint {c}: the next backup copies what is written after this snapshot."
        )),
        None => v.push("No checkpoint: the next backup is full as well.".into()),
    }
    v.push(format!(
        "Data {}, manifest {}.",
        r.data.display(),
        r.manifest.display()
    ));
    if let Some(name) = &r.snapshot {
        v.push(format!(
            "Snapshot kept: {} ({}); remove it with `interposer snapshot remove {name}`.",
            name,
            r.snapshot_path
                .as_ref()
                .map_or_else(|| "-".into(), |p| p.display().to_string())
        ));
    }
    v
}

fn verify(args: BackupVerifyArgs, json: bool) -> anyhow::Result<()> {
    let dir = BackupDir::open(&args.dir)?;
    let mut shown = Shown::new(json, output::quiet(), false);
    let r = dir
        .verify(args.version, &mut shown)
        .with_context(|| format!("verify of {} failed", args.dir.display()))?;
    shown.finish(&r, human_verify(&r))
}

fn human_verify(r: &VerifyReport) -> Vec<String> {
    let mut rows = vec![vec![
        "VERSION".to_string(),
        "KIND".into(),
        "ON".into(),
        "HOLDS".into(),
    ]];
    for v in &r.versions {
        rows.push(vec![
            v.version.to_string(),
            v.kind.to_string(),
            v.previous.map_or_else(|| "-".into(), |p| p.to_string()),
            output::size(v.bytes / 512),
        ]);
    }
    let mut lines = output::table(&rows);
    lines.push(format!(
        "{}: {} version{} verified ({} read).",
        r.dir.display(),
        r.versions.len(),
        if r.versions.len() == 1 { "" } else { "s" },
        output::size(r.bytes_read / 512)
    ));
    lines
}

fn restore(args: BackupRestoreArgs, json: bool) -> anyhow::Result<()> {
    let dir = BackupDir::open(&args.dir)?;
    let mut shown = Shown::new(json, output::quiet(), false);
    let r = dir
        .restore(args.version, &args.to, &mut shown)
        .with_context(|| {
            format!(
                "cannot restore {} to {}",
                args.dir.display(),
                args.to.display()
            )
        })?;
    shown.finish(&r, human_restore(&r))
}

fn human_restore(r: &RestoreReport) -> Vec<String> {
    let applied: Vec<String> = r.applied.iter().map(u32::to_string).collect();
    vec![
        format!(
            "Restored version {} of {} to {} ({}): applied versions {}.",
            r.version,
            r.dir.display(),
            r.target.display(),
            output::size(r.size / 512),
            applied.join(", ")
        ),
        format!("{} written, synced.", output::size(r.bytes_written / 512)),
    ]
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::PathBuf;
    use std::rc::Rc;

    use blk_interposer::backup::{FullReason, Kind, NewVersion, Source};

    use super::*;

    /// A writer the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn source(kind: Kind) -> Source {
        Source {
            device: "/dev/sdb1".into(),
            identity: Default::default(),
            size: 3 << 20,
            kind,
            full_reason: (kind == Kind::Full).then_some(FullReason::NoTracking),
            checkpoint: None,
            block_bytes: None,
            group: None,
        }
    }

    #[test]
    fn json_progress_is_one_object_per_line_ending_with_the_report() {
        let out = Shared::default();
        let mut shown = Shown::new(false, true, false);
        shown.json = Some(Box::new(out.clone()));
        let tmp = tempfile::tempdir().unwrap();
        let disk = tmp.path().join("disk");
        std::fs::write(&disk, vec![5u8; 3 << 20]).unwrap();
        let dir = BackupDir::create(&tmp.path().join("bk")).unwrap();
        let new = NewVersion {
            source: source(Kind::Full),
            ranges: vec![],
        };
        let m = dir
            .stage(&new, &std::fs::File::open(&disk).unwrap(), &mut shown)
            .unwrap()
            .commit()
            .unwrap();
        shown.finish(&m, Vec::new()).unwrap();
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let phases: Vec<(&str, u64)> = events
            .iter()
            .filter(|e| e["event"] == "progress")
            .map(|e| (e["phase"].as_str().unwrap(), e["done"].as_u64().unwrap()))
            .collect();
        assert_eq!(phases.first(), Some(&("copy", 0)));
        assert!(phases.contains(&("copy", 3 << 20)), "{phases:?}");
        assert_eq!(phases.last(), Some(&("verify", 3 << 20)));
        let last = events.last().unwrap();
        assert_eq!(last["event"], "done");
        assert_eq!(last["report"]["kind"], "full");
        assert_eq!(last["report"]["full_reason"]["why"], "no-tracking");
    }

    #[test]
    fn text_says_one_fact_per_line() {
        let r = BackupReport {
            dir: "/bk".into(),
            version: 3,
            source: Source {
                checkpoint: Some("12@3f9a1c02d4e5b6a7".parse().unwrap()),
                ..source(Kind::Incremental)
            },
            previous: Some(2),
            copied_bytes: 1 << 20,
            pieces: 2,
            data: "/bk/000003.delta".into(),
            manifest: "/bk/000003.json".into(),
            snapshot: Some("backup-sdb1".into()),
            snapshot_path: Some(PathBuf::from("/dev/mapper/backup-sdb1-sdb1-snap")),
        };
        assert_eq!(
            human_backup(&r),
            [
                "Backup version 3 of /dev/sdb1 in /bk: incremental, on version 2.",
                "Copied 1.0 MiB of 3.0 MiB in 2 pieces, read back and compared with the snapshot.",
                "Checkpoint 12@3f9a1c02d4e5b6a7: the next backup copies what is written after this snapshot.",
                "Data /bk/000003.delta, manifest /bk/000003.json.",
                "Snapshot kept: backup-sdb1 (/dev/mapper/backup-sdb1-sdb1-snap); remove it with `interposer snapshot remove backup-sdb1`.",
            ]
        );
        let full = BackupReport {
            source: source(Kind::Full),
            snapshot: None,
            ..r
        };
        let t = human_backup(&full);
        assert_eq!(t[0], "Backup version 3 of /dev/sdb1 in /bk: full.");
        assert!(
            t[1].starts_with("Full because: no changed-block tracking"),
            "{t:?}"
        );
    }
}
