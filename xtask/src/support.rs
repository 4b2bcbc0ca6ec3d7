//! The README's kernel-support table: one row per kernel, rewritten by `cargo xtask test`
//! from the runs it just made, between the `kernel-support` markers.
//!
//! Only a run of the busybox tier with no scenario filter and no `--cpus` writes rows (a
//! filtered run says nothing of the whole suite); rows of kernels the run did not boot stay.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::kernel::{version_key, Kernel};

const BEGIN: &str = "<!-- kernel-support: written by `cargo xtask test`, do not edit -->";
const END: &str = "<!-- kernel-support: end -->";
const HEAD: &str =
    "| Kernel | From | Arch | Module build (`W=1`) | Busybox-tier scenarios | Date |\n\
                    |---|---|---|---|---|---|";

/// What one run found on one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub release: String,
    pub from: String,
    pub arch: String,
    pub build: String,
    pub suite: String,
    pub date: String,
}

impl Row {
    /// The row of a kernel whose module built and whose scenarios ran: `passed` of `total`
    /// (the whole suite, or the `# KERNELS: all` subset when `full` is false).
    pub fn ran(kernel: &Kernel, date: &str, counts: [usize; 3], full: bool) -> Self {
        let [passed, failed, skipped] = counts;
        let total = passed + failed + skipped;
        let which = if full {
            "every scenario"
        } else {
            "the `# KERNELS: all` subset"
        };
        let mut verdict = if failed == 0 {
            format!("{passed}/{total} pass")
        } else {
            format!("**{failed} of {total} fail**")
        };
        if skipped > 0 {
            verdict.push_str(&format!(", {skipped} skipped"));
        }
        verdict.push_str(&format!(" ({which})"));
        Row {
            release: kernel.release.clone(),
            from: from(kernel),
            arch: "x86-64".into(),
            build: "clean".into(),
            suite: verdict,
            date: date.into(),
        }
    }

    /// The row of a kernel the module did not build for: nothing ran.
    pub fn build_failed(kernel: &Kernel, date: &str, why: &str) -> Self {
        Row {
            release: kernel.release.clone(),
            from: from(kernel),
            arch: "x86-64".into(),
            build: format!("**fails**: {}", why.replace('|', "/")),
            suite: "not run".into(),
            date: date.into(),
        }
    }

    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.release, self.from, self.arch, self.build, self.suite, self.date
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let cells: Vec<&str> = line
            .trim()
            .strip_prefix('|')?
            .strip_suffix('|')?
            .split(" | ")
            .map(str::trim)
            .collect();
        let [release, from, arch, build, suite, date] = cells[..] else {
            return None;
        };
        Some(Row {
            release: release.into(),
            from: from.into(),
            arch: arch.into(),
            build: build.into(),
            suite: suite.into(),
            date: date.into(),
        })
    }
}

/// Where a kernel comes from, in Debian's words.
fn from(kernel: &Kernel) -> String {
    match kernel.alias.as_str() {
        "6.1" => "bookworm".into(),
        "6.12" => "bookworm-backports".into(),
        alias if alias == kernel.release => "installed".into(),
        alias => alias.into(),
    }
}

/// `text` with `rows` put into its table (replacing the rows of the same kernel and arch),
/// the table sorted by arch and version.
pub fn rewrite(text: &str, rows: &[Row]) -> Result<String> {
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("the README has no kernel-support markers ({BEGIN} ... {END})");
    };
    if e < b {
        bail!("the README's kernel-support markers are out of order");
    }
    let mut table: Vec<Row> = text[b + BEGIN.len()..e]
        .lines()
        .filter_map(Row::parse)
        // The heading; the `|---|` line has one cell and does not parse.
        .filter(|r| r.release != "Kernel")
        .collect();
    for row in rows {
        table.retain(|r| !(r.release == row.release && r.arch == row.arch));
        table.push(row.clone());
    }
    table.sort_by(|a, b| {
        (a.arch.as_str(), version_key(&a.release)).cmp(&(b.arch.as_str(), version_key(&b.release)))
    });
    let mut out = String::with_capacity(text.len() + 256);
    out.push_str(&text[..b + BEGIN.len()]);
    out.push('\n');
    out.push_str(HEAD);
    out.push('\n');
    for r in &table {
        out.push_str(&r.line());
        out.push('\n');
    }
    out.push_str(&text[e..]);
    Ok(out)
}

/// Put `rows` into `root`/README.md.
pub fn record(root: &Path, rows: &[Row]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let path = root.join("README.md");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let new = rewrite(&text, rows)?;
    if new != text {
        fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "support: README.md's kernel table now has the rows of {}",
            rows.iter()
                .map(|r| r.release.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Today in UTC, `2026-12-02`, as coreutils' `date` says it.
pub fn today() -> Result<String> {
    Ok(crate::capture("date", &["-u", "+%F"])?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(alias: &str, release: &str) -> Kernel {
        let mut k = Kernel::host(alias, release);
        if alias == "sid" {
            k.root = "/var/cache/x/chroot-sid".into();
        }
        k
    }

    #[test]
    fn rows_replace_their_kernel_and_keep_the_others_in_version_order() {
        let readme = format!("intro\n{BEGIN}\n{HEAD}\n| 6.12.95+deb12-cloud-amd64 | bookworm-backports | x86-64 | clean | 34/34 pass (every scenario) | 2026-11-30 |\n{END}\nrest\n");
        let rows = [
            Row::ran(
                &kernel("sid", "7.2.13+deb14-cloud-amd64"),
                "2026-12-02",
                [11, 0, 0],
                false,
            ),
            Row::ran(
                &kernel("6.1", "6.1.0-57-cloud-amd64"),
                "2026-12-02",
                [33, 1, 0],
                true,
            ),
        ];
        let out = rewrite(&readme, &rows).unwrap();
        let table: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(
            table,
            [
                "| Kernel | From | Arch | Module build (`W=1`) | Busybox-tier scenarios | Date |",
                "| 6.1.0-57-cloud-amd64 | bookworm | x86-64 | clean | **1 of 34 fail** (every scenario) | 2026-12-02 |",
                "| 6.12.95+deb12-cloud-amd64 | bookworm-backports | x86-64 | clean | 34/34 pass (every scenario) | 2026-11-30 |",
                "| 7.2.13+deb14-cloud-amd64 | sid | x86-64 | clean | 11/11 pass (the `# KERNELS: all` subset) | 2026-12-02 |",
            ]
        );
        assert!(out.starts_with("intro\n") && out.ends_with(&format!("{END}\nrest\n")));
        // Written again, the same rows change nothing.
        assert_eq!(rewrite(&out, &rows).unwrap(), out);
        let again = Row::ran(
            &kernel("6.1", "6.1.0-57-cloud-amd64"),
            "2026-12-03",
            [34, 0, 0],
            true,
        );
        let out2 = rewrite(&out, &[again]).unwrap();
        assert!(out2.contains("| 6.1.0-57-cloud-amd64 | bookworm | x86-64 | clean | 34/34 pass (every scenario) | 2026-12-03 |"));
        assert_eq!(out2.matches("6.1.0-57").count(), 1);
    }

    #[test]
    fn a_readme_without_markers_is_an_error() {
        assert!(rewrite("no table here", &[]).is_err());
    }
}
