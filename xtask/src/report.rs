//! Progress lines, failure details and the summary of `cargo xtask test`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The outcome of one scenario on one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Skip(String),
    Fail(String),
}

/// One finished run, as the runner reports it.
pub struct Finished<'a> {
    pub kernel: &'a str,
    pub scenario: &'a str,
    pub verdict: &'a Verdict,
    pub wall: Duration,
    pub boot: Option<Duration>,
    pub log: &'a Path,
    pub console: &'a str,
}

/// Lines of the console shown when a scenario fails.
const TAIL_LINES: usize = 60;

/// Where the interesting part of a failed run's console ends: a bit after the first kernel
/// error, else at `SCENARIO-EXIT` (the dmesg dump after it repeats the kernel lines), else
/// at the end (the VM died).
fn tail_end(lines: &[&str]) -> usize {
    let kernel_error = lines
        .iter()
        .position(|l| crate::scenario::is_kernel_error(l));
    let exit = lines.iter().position(|l| l.starts_with("SCENARIO-EXIT"));
    match (kernel_error, exit) {
        (Some(i), _) => (i + 30).min(lines.len()),
        (None, Some(i)) => i + 1,
        (None, None) => lines.len(),
    }
}

#[derive(Default)]
pub struct Summary {
    failures: Vec<String>,
    /// Passed, failed, skipped, by the kernel name of the progress lines.
    by_kernel: BTreeMap<String, [usize; 3]>,
}

impl Summary {
    /// Print `[3/10] 6.12 attach/linear-live ... PASS (74 s)` and, for a failure, the log tail.
    pub fn record(&mut self, index: usize, total: usize, run: &Finished) {
        let boot = run
            .boot
            .map(|b| format!(", boot {} s", b.as_secs()))
            .unwrap_or_default();
        let head = format!("[{index}/{total}] {} {} ...", run.kernel, run.scenario);
        let time = format!("({} s{boot})", run.wall.as_secs());
        let slot = match run.verdict {
            Verdict::Pass => 0,
            Verdict::Fail(_) => 1,
            Verdict::Skip(_) => 2,
        };
        self.by_kernel.entry(run.kernel.to_string()).or_default()[slot] += 1;
        match run.verdict {
            Verdict::Pass => {
                println!("{head} PASS {time}");
            }
            Verdict::Skip(reason) => {
                println!("{head} SKIP {time}: {reason}");
            }
            Verdict::Fail(reason) => {
                println!("{head} FAIL {time}: {reason}");
                let lines: Vec<&str> = run.console.lines().collect();
                let end = tail_end(&lines);
                let from = end.saturating_sub(TAIL_LINES);
                println!(
                    "---- lines {}-{end} of {} ----",
                    from + 1,
                    run.log.display()
                );
                for line in &lines[from..end] {
                    println!("| {line}");
                }
                println!("----");
                self.failures.push(format!(
                    "{} {}: {reason} (log: {})",
                    run.kernel,
                    run.scenario,
                    run.log.display()
                ));
            }
        }
    }

    /// Passed, failed and skipped runs on `kernel`, if it ran any.
    pub fn counts(&self, kernel: &str) -> Option<[usize; 3]> {
        self.by_kernel.get(kernel).copied()
    }

    /// Print the failures again and `12 passed, 0 failed, 1 skipped`; true if all went well.
    pub fn finish(&self) -> bool {
        if !self.failures.is_empty() {
            println!("\nfailed:");
            for f in &self.failures {
                println!("  {f}");
            }
        }
        let [passed, failed, skipped] = self
            .by_kernel
            .values()
            .fold([0; 3], |t, c| [t[0] + c[0], t[1] + c[1], t[2] + c[2]]);
        println!("{passed} passed, {failed} failed, {skipped} skipped");
        failed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_summary_counts_each_kernel_and_fails_on_any_failure() {
        let mut s = Summary::default();
        let verdicts = [
            ("6.1", Verdict::Pass),
            ("sid", Verdict::Pass),
            ("sid", Verdict::Fail("x".into())),
            ("sid", Verdict::Skip("y".into())),
        ];
        for (i, (kernel, verdict)) in verdicts.iter().enumerate() {
            s.record(
                i + 1,
                verdicts.len(),
                &Finished {
                    kernel,
                    scenario: "a/b",
                    verdict,
                    wall: Duration::ZERO,
                    boot: None,
                    log: Path::new("/nonexistent"),
                    console: "",
                },
            );
        }
        assert_eq!(s.counts("6.1"), Some([1, 0, 0]));
        assert_eq!(s.counts("sid"), Some([1, 1, 1]));
        assert_eq!(s.counts("6.12"), None);
        assert!(!s.finish());
        assert!(Summary::default().finish());
    }
}
