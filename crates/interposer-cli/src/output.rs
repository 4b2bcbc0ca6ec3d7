//! Printing: JSON for `--json`, aligned columns for people.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Pretty JSON and a newline on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `-q`: no reports of what was done, no notes; data and errors still.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Set by `main` from `-q` before any verb runs.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Lines that report what a verb did (`vdb-lin removed; ...`) on stdout,
/// unless `-q`.  Data a script reads (`ls`, `era checkpoint`) goes through
/// [`lines`], and JSON through [`json`], whatever `-q` says.
pub fn report<I: IntoIterator<Item = String>>(text: I) -> anyhow::Result<()> {
    if !for_people() {
        return Ok(());
    }
    lines(text)
}

/// A note for people on stderr, unless `-q`.
pub fn note(text: &str) {
    if for_people() {
        eprintln!("{text}");
    }
}

/// Whether reports and notes are printed: not under `-q`.
fn for_people() -> bool {
    !quiet()
}

/// `-q` was given: no progress bars either.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Text lines on stdout.
pub fn lines<I: IntoIterator<Item = String>>(lines: I) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

/// Rows as left-aligned columns separated by two spaces; the first row is
/// the header.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| format!("{s:<w$}", w = width[c]))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// Sectors as a human size: `2.0 GiB`.
pub fn size(sectors: u64) -> String {
    let bytes = sectors.saturating_mul(512);
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = "KiB";
    for next in ["MiB", "GiB", "TiB", "PiB"] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = next;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(&[
            vec!["DEVICE".into(), "STATE".into()],
            vec!["/dev/nvme0n1p2".into(), "attached".into()],
        ]);
        assert_eq!(t, ["DEVICE          STATE", "/dev/nvme0n1p2  attached"]);
    }

    #[test]
    fn quiet_silences_reports_and_notes_only() {
        assert!(for_people());
        set_quiet(true);
        assert!(!for_people());
        // Reports are dropped before they reach stdout; data is not gated.
        assert!(report(["not printed".to_string()]).is_ok());
        set_quiet(false);
        assert!(for_people());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(1), "512 B");
        assert_eq!(size(2048), "1.0 MiB");
        assert_eq!(size(4 << 21), "4.0 GiB");
    }
}
