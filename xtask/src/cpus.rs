//! `cargo xtask test --cpus`: the scenarios of [`GROUPS`] under CPU models that make the
//! kernel patch in its speculation mitigations (return thunks, call-depth tracking), under
//! full preemption and with 4 vCPUs. Every other tier boots `qemu64` with 2 vCPUs and the
//! Debian kernels' voluntary preemption, where none of those code paths runs.
//!
//! Each configuration names the kernel line that proves the guest took the path it is
//! meant to exercise; a run whose dmesg lacks it fails (a scenario cannot see that a qemu
//! or kernel update quietly turned the mitigation off).
//!
//! Expected lines are the kernel's own strings: arch/x86/kernel/cpu/bugs.c of Debian's
//! 6.1.192 (linux-source-6.1) and 6.12.117 (linux-source-6.12, checked against the strings
//! of the installed 6.12.95 image). Under TCG, qemu 10 drops IBRS/IBPB/SPEC_CTRL and
//! ARCH_CAPABILITIES from these models (query-cpu-definitions lists them unavailable), so
//! the guest has no eIBRS and no IBPB-extending microcode: the lines below are those of
//! that case.

use crate::scenario;

/// Scenario groups the tier runs (filters apply on top).
pub const GROUPS: &[&str] = &["attach/", "reliability/", "snapshot/"];

/// Which kernels an expectation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    All,
    /// 6.1.y (and older).
    V6_1,
    /// 6.12 and later.
    From6_12,
}

impl Kernels {
    fn covers(self, release: &str) -> bool {
        let from_6_12 = crate::kernel::version_key(release) >= vec![6, 12];
        match self {
            Kernels::All => true,
            Kernels::V6_1 => !from_6_12,
            Kernels::From6_12 => from_6_12,
        }
    }
}

/// A kernel message the guest must have printed at boot: any one of `any_of`, compared
/// with the dmesg line after its timestamp.
#[derive(Debug)]
pub struct Expect {
    pub kernels: Kernels,
    pub any_of: &'static [&'static str],
}

/// One CPU configuration of the tier.
#[derive(Debug)]
pub struct CpuConfig {
    pub name: &'static str,
    /// qemu's `-cpu`. Every model keeps the default VM's `+rdrand,-cx16` (xtask/src/vm.rs:
    /// TCG's CMPXCHG16B breaks SLUB on 6.12, 6.1 soft-locks in urandom without RDRAND);
    /// neither Debian kernel requires CX16.
    pub cpu: &'static str,
    /// Added to the kernel command line.
    pub append: &'static [&'static str],
    pub smp: u32,
    /// Which kernel path it makes run, in one line.
    pub why: &'static str,
    pub expect: &'static [Expect],
}

/// The configurations, in the order they run.
pub const CONFIGS: &[CpuConfig] = &[
    CpuConfig {
        name: "zen3-srso",
        cpu: "EPYC-Milan,+rdrand,-cx16",
        append: &["spec_rstack_overflow=safe-ret"],
        smp: 2,
        why: "AMD family 19h: SRSO safe RET, every `ret` goes through srso_alias_return_thunk",
        expect: &[
            Expect {
                kernels: Kernels::V6_1,
                any_of: &[
                    "Speculative Return Stack Overflow: Mitigation: safe RET, no microcode",
                    "Speculative Return Stack Overflow: Mitigation: safe RET",
                ],
            },
            Expect {
                kernels: Kernels::From6_12,
                any_of: &[
                    "Speculative Return Stack Overflow: Vulnerable: Safe RET, no microcode",
                    "Speculative Return Stack Overflow: Mitigation: Safe RET",
                ],
            },
        ],
    },
    CpuConfig {
        name: "skylake-stuff",
        cpu: "Skylake-Server,+rdrand,-cx16",
        append: &["spectre_v2=retpoline", "retbleed=stuff"],
        smp: 2,
        why: "6.12: call-depth tracking (call thunks, call_depth_return_thunk); 6.1 has no \
              retbleed=stuff: retpolines and the ITS return thunk",
        expect: &[
            Expect {
                kernels: Kernels::V6_1,
                any_of: &["ITS: Mitigation: Aligned branch/return thunks"],
            },
            Expect {
                kernels: Kernels::From6_12,
                any_of: &["RETBleed: Mitigation: Stuffing"],
            },
        ],
    },
    CpuConfig {
        name: "icelake",
        cpu: "Icelake-Server,+rdrand,-cx16",
        append: &[],
        smp: 2,
        why: "Intel guest without ITS_NO: ITS aligned branch/return thunks (its_return_thunk)",
        expect: &[Expect {
            kernels: Kernels::All,
            any_of: &["ITS: Mitigation: Aligned branch/return thunks"],
        }],
    },
    CpuConfig {
        name: "preempt-full",
        cpu: crate::vm::DEFAULT_CPU,
        append: &["preempt=full"],
        smp: 2,
        why: "full preemption (PREEMPT_DYNAMIC): preempted inside the hook and the bio path",
        expect: &[Expect {
            kernels: Kernels::All,
            any_of: &["Dynamic Preempt: full"],
        }],
    },
    CpuConfig {
        name: "smp4",
        cpu: crate::vm::DEFAULT_CPU,
        append: &[],
        smp: 4,
        why: "4 vCPUs: more submitters and completions at once than the default 2",
        expect: &[Expect {
            kernels: Kernels::All,
            any_of: &["smp: Brought up 1 node, 4 CPUs"],
        }],
    },
];

impl CpuConfig {
    /// How its VM departs from the default one, on top of the scenario's own (`# ACCEL:`).
    pub fn apply(&self, extra: &mut crate::vm::QemuExtra) {
        extra.cpu = Some(self.cpu.to_string());
        extra.smp = Some(self.smp);
        extra
            .append
            .extend(self.append.iter().map(|a| a.to_string()));
    }

    /// `zen3-srso: -cpu EPYC-Milan,+rdrand,-cx16 -smp 2, kernel spec_rstack_overflow=safe-ret: why`.
    pub fn describe(&self) -> String {
        let append = if self.append.is_empty() {
            String::new()
        } else {
            format!(", kernel {}", self.append.join(" "))
        };
        format!(
            "{}: -cpu {} -smp {}{append}: {}",
            self.name, self.cpu, self.smp, self.why
        )
    }

    /// None if the guest's kernel log (the console) shows every expected line for
    /// `release`; else why not, with what the kernel printed instead.
    pub fn check(&self, release: &str, console: &str) -> Option<String> {
        let messages = kernel_messages(console);
        let e = self
            .expect
            .iter()
            .filter(|e| e.kernels.covers(release))
            .find(|e| !e.any_of.iter().any(|want| messages.contains(want)))?;
        let said = on_topic(&messages, &[e.topic()]);
        Some(format!(
            "{}: the kernel did not print `{}`; it printed {}",
            self.name,
            e.any_of.join("` or `"),
            if said.is_empty() {
                format!("no `{}:` line", e.topic())
            } else {
                format!("`{}`", said.join("` and `"))
            }
        ))
    }

    /// The kernel's lines about the path this configuration exercises, for the log.
    pub fn report<'a>(&self, console: &'a str) -> Vec<&'a str> {
        let topics: Vec<&str> = self.expect.iter().map(Expect::topic).collect();
        let mut out = on_topic(&kernel_messages(console), &topics);
        out.dedup();
        out
    }
}

impl Expect {
    /// "Speculative Return Stack Overflow": the prefix of the kernel's lines on the subject.
    fn topic(&self) -> &'static str {
        self.any_of[0].split(": ").next().unwrap_or_default()
    }
}

/// Every kernel message on the console, without its timestamp.
fn kernel_messages(console: &str) -> Vec<&str> {
    console
        .lines()
        .flat_map(scenario::kernel_messages)
        .map(str::trim)
        .collect()
}

/// The messages that start with one of `topics` and a colon.
fn on_topic<'a>(messages: &[&'a str], topics: &[&str]) -> Vec<&'a str> {
    messages
        .iter()
        .filter(|m| {
            topics
                .iter()
                .any(|t| m.strip_prefix(t).is_some_and(|r| r.starts_with(": ")))
        })
        .copied()
        .collect()
}

/// The configurations `names` selects (all if empty), or an error naming the known ones.
pub fn select(names: &[String]) -> anyhow::Result<Vec<&'static CpuConfig>> {
    if names.is_empty() {
        return Ok(CONFIGS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            CONFIGS.iter().find(|c| c.name == n).ok_or_else(|| {
                let known: Vec<&str> = CONFIGS.iter().map(|c| c.name).collect();
                anyhow::anyhow!("unknown CPU configuration {n:?}: one of {known:?}")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R61: &str = "6.1.0-57-cloud-amd64";
    const R612: &str = "6.12.95+deb12-cloud-amd64";

    fn config(name: &str) -> &'static CpuConfig {
        select(&[name.to_string()]).unwrap()[0]
    }

    /// The console of a run: scenario output, then the dmesg dump (tests/common/init).
    fn console(dmesg: &[&str]) -> String {
        let mut text = String::from("VM-BOOTED kernel x\nSCENARIO-EXIT 0\n===DMESG===\n");
        for (i, line) in dmesg.iter().enumerate() {
            text.push_str(&format!("[    0.{:06}] {line}\n", 100 + i));
        }
        text.push_str("===END===\n");
        text
    }

    #[test]
    fn names_are_unique_and_models_keep_rdrand_and_no_cx16() {
        for (i, c) in CONFIGS.iter().enumerate() {
            assert!(CONFIGS[..i].iter().all(|o| o.name != c.name), "{}", c.name);
            assert!(c.cpu.ends_with(",+rdrand,-cx16"), "{}", c.cpu);
            assert!(!c.expect.is_empty(), "{}", c.name);
        }
        assert!(select(&["nehalem".into()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), CONFIGS.len());
    }

    #[test]
    fn each_config_sets_cpu_smp_and_command_line() {
        let cases: &[(&str, &str, u32, &[&str])] = &[
            (
                "zen3-srso",
                "EPYC-Milan,+rdrand,-cx16",
                2,
                &["spec_rstack_overflow=safe-ret"],
            ),
            (
                "skylake-stuff",
                "Skylake-Server,+rdrand,-cx16",
                2,
                &["spectre_v2=retpoline", "retbleed=stuff"],
            ),
            ("icelake", "Icelake-Server,+rdrand,-cx16", 2, &[]),
            ("preempt-full", "qemu64,+rdrand,-cx16", 2, &["preempt=full"]),
            ("smp4", "qemu64,+rdrand,-cx16", 4, &[]),
        ];
        assert_eq!(cases.len(), CONFIGS.len());
        for (name, cpu, smp, append) in cases {
            // On top of a scenario that asks for multi-threaded TCG.
            let mut extra = crate::vm::QemuExtra {
                accel: Some("tcg,thread=multi".into()),
                ..Default::default()
            };
            config(name).apply(&mut extra);
            assert_eq!(extra.cpu.as_deref(), Some(*cpu), "{name}");
            assert_eq!(extra.smp, Some(*smp), "{name}");
            assert_eq!(extra.append, *append, "{name}");
            assert_eq!(extra.accel.as_deref(), Some("tcg,thread=multi"), "{name}");
        }
    }

    #[test]
    fn the_readme_table_shows_every_configuration() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### CPU models and preemption: `cargo xtask test --cpus`")
            .nth(1)
            .expect("README has the section");
        for c in CONFIGS {
            let row = section
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", c.name)))
                .unwrap_or_else(|| panic!("README: no row for {}", c.name));
            assert!(row.contains(&format!("`{}`", c.cpu)), "{row}");
            for a in c.append {
                assert!(row.contains(a), "{row}");
            }
            assert!(row.contains(&format!("| {} |", c.smp)), "{row}");
            for e in c.expect {
                assert!(row.contains(e.any_of[0]), "{row}: {}", e.any_of[0]);
            }
        }
    }

    #[test]
    fn kernels_are_told_apart_by_release() {
        assert!(Kernels::V6_1.covers(R61));
        assert!(!Kernels::V6_1.covers(R612));
        assert!(Kernels::From6_12.covers(R612));
        assert!(Kernels::From6_12.covers("7.2.1+deb14-cloud-amd64"));
        assert!(!Kernels::From6_12.covers(R61));
        assert!(Kernels::All.covers(R61));
    }

    /// What 6.12 prints on EPYC-Milan under TCG (no IBPB-extending microcode).
    const SRSO_612: &[&str] = &[
        "Speculative Return Stack Overflow: IBPB-extending microcode not applied!",
        "Speculative Return Stack Overflow: WARNING: See https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation options.",
        "Speculative Return Stack Overflow: Vulnerable: Safe RET, no microcode",
    ];

    #[test]
    fn srso_safe_ret_is_found_in_the_dmesg_of_either_kernel() {
        let c = config("zen3-srso");
        let log612 = console(SRSO_612);
        assert_eq!(c.check(R612, &log612), None);
        let log61 =
            console(&["Speculative Return Stack Overflow: Mitigation: safe RET, no microcode"]);
        assert_eq!(c.check(R61, &log61), None);
        // 6.1's spelling does not satisfy 6.12.
        let err = c.check(R612, &log61).unwrap();
        assert!(err.starts_with("zen3-srso: the kernel did not print `Speculative Return Stack Overflow: Vulnerable: Safe RET, no microcode` or `"), "{err}");
        assert!(err.contains("it printed `Speculative Return Stack Overflow: Mitigation: safe RET, no microcode`"), "{err}");
        assert_eq!(c.report(&log612), SRSO_612);
    }

    #[test]
    fn a_missing_mitigation_names_what_the_kernel_chose() {
        let c = config("skylake-stuff");
        let fell_back = console(&[
            "Spectre V2 : Mitigation: IBRS",
            "RETBleed: WARNING: retbleed=stuff depends on spectre_v2=retpoline",
            "RETBleed: Mitigation: IBRS",
        ]);
        let err = c.check(R612, &fell_back).unwrap();
        assert_eq!(
            err,
            "skylake-stuff: the kernel did not print `RETBleed: Mitigation: Stuffing`; it printed \
             `RETBleed: WARNING: retbleed=stuff depends on spectre_v2=retpoline` and \
             `RETBleed: Mitigation: IBRS`"
        );
        let stuffed = console(&[
            "Spectre V2 : Mitigation: Retpolines",
            "RETBleed: Mitigation: Stuffing",
            "ITS: Mitigation: Retpolines, Stuffing RSB",
        ]);
        assert_eq!(c.check(R612, &stuffed), None);
        // 6.1 knows no retbleed=stuff: the ITS return thunk is what it patches in.
        let its = console(&[
            "RETBleed: Ignoring unknown retbleed option (stuff).",
            "ITS: Mitigation: Aligned branch/return thunks",
        ]);
        assert_eq!(c.check(R61, &its), None);
        assert!(c.check(R612, &its).is_some());
        let none = console(&["smp: Brought up 1 node, 2 CPUs"]);
        assert!(c
            .check(R61, &none)
            .unwrap()
            .ends_with("it printed no `ITS:` line"));
    }

    #[test]
    fn scenario_output_is_not_mistaken_for_the_kernel_line() {
        // Only a timestamped kernel message counts.
        let c = config("preempt-full");
        let text = "echo Dynamic Preempt: full\nDynamic Preempt: full\n";
        assert!(c.check(R612, text).is_some());
        let ok = console(&["Dynamic Preempt: full"]);
        assert_eq!(c.check(R612, &ok), None);
        let smp = config("smp4");
        assert!(smp
            .check(R61, &console(&["smp: Brought up 1 node, 2 CPUs"]))
            .is_some());
        assert_eq!(
            smp.check(R61, &console(&["smp: Brought up 1 node, 4 CPUs"])),
            None
        );
    }
}
