//! Seeded random and mutated inputs for the table parser: it must never
//! panic, and every table it accepts must print (`Display`) as text that
//! parses back to the same table.  Likewise `InterposePath` and `DevNo`.
//! Deterministic (fixed seeds), a few seconds in debug builds.

use std::str::FromStr;

use blk_interposer::{DevNo, InterposePath, Table};

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const VALID: &[&str] = &[
    "0 2048 linear [interpose]/dev/vdb 0",
    "0 1024 linear [interpose]/dev/vdb 0\n1024 2048 era /dev/vdc [interpose]/dev/vdb 128\n",
    "# comment\n\n0 8 snapshot-origin [interpose]254:16\n",
    "0 524288 flakey [interpose]/dev/disk/by-id/virtio-x 0 5 1 1 error_writes",
    "  0   16   zero  \n16 16 error\n\t\n32 1 linear /dev/vdd 7\n",
];

const TOKENS: &[&str] = &[
    "0",
    "1",
    "8",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "+5",
    "0x10",
    "1e3",
    "linear",
    "era",
    "snapshot-origin",
    "averyveryverylongtarget",
    "[interpose]",
    "[interpose]/dev/vdb",
    "[interpose][interpose]/dev/x",
    "[INTERPOSE]/dev/vdb",
    "[interpose]254:16",
    "/dev/vdb",
    "#",
    "# c",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\u{a0}",
    "\u{2028}",
    "é",
    "линейный",
    "🦀",
    "\0",
    "\u{feff}",
    "[interpose]🦀",
    "ﬁ",
];

/// Parsing must not panic; an accepted table round-trips through Display.
fn check(text: &str) {
    let Ok(t) = Table::from_str(text) else {
        return;
    };
    let printed = t.to_string();
    let again = Table::from_str(&printed)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its Display {printed:?} does not: {e}"));
    assert_eq!(again, t, "{text:?} -> {printed:?} changed the table");
    assert_eq!(again.to_string(), printed);
    assert!(!t.lines.is_empty());
    // The other accessors must not panic either.
    let _ = t.size();
    let _ = t.targets();
    let _ = t.interposed().count() + t.plain_args().count();
    let r = t.rewrite_interposed(DevNo::new(259, 0));
    assert_eq!(r.interposed().count(), 0);
    assert_eq!(r.lines.len(), t.lines.len());
}

fn mutate(rng: &mut Rng, s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = if b.is_empty() {
            0
        } else {
            rng.below(b.len() + 1)
        };
        match rng.below(6) {
            0 if !b.is_empty() && at < b.len() => b[at] = rng.next() as u8,
            1 if at < b.len() => {
                b.remove(at);
            }
            2 => {
                const BYTES: &[u8] = b" \n#09[]:\xff";
                b.insert(at, BYTES[rng.below(BYTES.len())]);
            }
            3 => {
                let tok = rng.pick(TOKENS).as_bytes().to_vec();
                b.splice(at..at, tok);
            }
            4 if at < b.len() => {
                let end = (at + rng.below(8)).min(b.len());
                let dup = b[at..end].to_vec();
                b.splice(at..at, dup);
            }
            _ => b.truncate(at),
        }
    }
    // Table::from_str takes &str: invalid UTF-8 is decoded lossily, as a caller reading
    // a file would have to.
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn valid_tables_mutated_bytewise() {
    let mut rng = Rng(0x5EED_0001);
    for v in VALID {
        check(v);
        assert!(Table::from_str(v).is_ok(), "{v:?} must parse");
    }
    for _ in 0..20_000 {
        let base = rng.pick(VALID);
        let m = mutate(&mut rng, base);
        check(&m);
    }
}

#[test]
fn random_token_soup() {
    let mut rng = Rng(0x5EED_0002);
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..rng.below(12) {
            s.push_str(rng.pick(TOKENS));
            s.push_str(rng.pick(&[" ", " ", "\t", "\n", ""]));
        }
        check(&s);
    }
}

#[test]
fn contiguous_random_tables_round_trip() {
    let mut rng = Rng(0x5EED_0003);
    for _ in 0..5_000 {
        let mut s = String::new();
        let mut start: u64 = 0;
        for _ in 0..=rng.below(5) {
            let len = match rng.below(4) {
                0 => u64::MAX - start,
                _ => 1 + rng.next() % (1 << 40),
            };
            let target = rng.pick(&["linear", "era", "zero", "error", "x"]);
            s.push_str(&format!("{start} {len} {target}"));
            for _ in 0..rng.below(5) {
                s.push(' ');
                s.push_str(rng.pick(&TOKENS[..20]).trim());
            }
            s.push_str(rng.pick(&["\n", "\n\n", "\n# c\n", "\r\n"]));
            start = start.saturating_add(len);
        }
        check(&s);
    }
}

#[test]
fn huge_numbers_and_long_lines() {
    for text in [
        format!("0 {} linear [interpose]/dev/vdb 0", u64::MAX),
        format!(
            "0 {} linear /dev/a 0\n{} 1 linear /dev/a 0",
            u64::MAX,
            u64::MAX
        ),
        format!("0 1 linear {}", "[interpose]/dev/".repeat(10_000)),
        format!("0 1 linear {}", "x ".repeat(50_000)),
        "\n".repeat(100_000),
        format!("{}0 8 zero", "# c\n".repeat(10_000)),
        "0 99999999999999999999999999 linear /dev/a 0".to_string(),
    ] {
        check(&text);
    }
}

#[test]
fn interpose_path_and_devno_never_panic() {
    let mut rng = Rng(0x5EED_0004);
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..rng.below(4) {
            s.push_str(rng.pick(TOKENS));
        }
        if let Some(Ok(p)) = InterposePath::from_arg(&s) {
            let shown = p.to_string();
            let back = InterposePath::from_arg(&shown)
                .expect("Display keeps the marker")
                .expect("and a non-empty device");
            assert_eq!(back, p, "{s:?}");
        }
        if let Ok(d) = DevNo::from_str(&s) {
            assert_eq!(d.to_string().parse::<DevNo>(), Ok(d), "{s:?}");
        }
        let d = DevNo::new(rng.next() as u32, rng.next() as u32);
        assert_eq!(d.to_string().parse::<DevNo>(), Ok(d));
    }
}
