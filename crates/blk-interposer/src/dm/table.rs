//! dmsetup-style tables: one `START LENGTH TARGET ARGS...` per line, blank
//! lines and `#` comments ignored.  `Display` prints what `FromStr` accepts.

use std::fmt;
use std::str::FromStr;

use crate::dm::path::InterposePath;
use crate::error::Error;
use crate::types::{DevNo, Sectors};

/// Longest target type name dm accepts (`DM_MAX_TYPE_NAME` minus the NUL).
pub const MAX_TARGET_NAME: usize = 15;

/// One argument of a target line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Passed to dm as written.
    Plain(String),
    /// `[interpose]DEV`: rewritten to the lower device before loading.
    Interpose(InterposePath),
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Plain(s) => f.write_str(s),
            Arg::Interpose(p) => p.fmt(f),
        }
    }
}

/// One line of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableLine {
    /// First sector this target maps.
    pub start: Sectors,
    /// How many sectors it maps.
    pub length: Sectors,
    /// Target type: `linear`, `era`, `snapshot-origin`, ...
    pub target: String,
    /// Target arguments.
    pub args: Vec<Arg>,
}

impl TableLine {
    /// The arguments as one string, as dm takes them.
    pub fn params(&self) -> String {
        self.args
            .iter()
            .map(Arg::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.start, self.length, self.target)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// A whole table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its lines, in order, contiguous from sector 0.
    pub lines: Vec<TableLine>,
}

impl Table {
    /// Every `[interpose]` argument, in order.
    pub fn interposed(&self) -> impl Iterator<Item = &InterposePath> {
        self.lines
            .iter()
            .flat_map(|l| &l.args)
            .filter_map(|a| match a {
                Arg::Interpose(p) => Some(p),
                Arg::Plain(_) => None,
            })
    }

    /// Every plain argument, in order.
    pub fn plain_args(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .flat_map(|l| &l.args)
            .filter_map(|a| match a {
                Arg::Plain(s) => Some(s.as_str()),
                Arg::Interpose(_) => None,
            })
    }

    /// The same table with every `[interpose]DEV` replaced by `lower` as `MAJ:MIN`.
    pub fn rewrite_interposed(&self, lower: DevNo) -> Table {
        let mut t = self.clone();
        for a in t.lines.iter_mut().flat_map(|l| &mut l.args) {
            if let Arg::Interpose(_) = a {
                *a = Arg::Plain(lower.to_string());
            }
        }
        t
    }

    /// Total length in sectors.
    pub fn size(&self) -> Sectors {
        Sectors(self.lines.iter().map(|l| l.length.0).sum())
    }

    /// `(start, length, target, params)` per line, as device-mapper loads them.
    pub fn targets(&self) -> Vec<(u64, u64, String, String)> {
        self.lines
            .iter()
            .map(|l| (l.start.0, l.length.0, l.target.clone(), l.params()))
            .collect()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

fn parse_line(line: usize, text: &str) -> Result<TableLine, Error> {
    let err = |what: String| Error::TableSyntax { line, what };
    let mut words = text.split_whitespace();
    let mut number = |what: &str| -> Result<Sectors, Error> {
        let w = words.next().ok_or_else(|| err(format!("missing {what}")))?;
        w.parse()
            .map_err(|_| err(format!("{what} `{w}` is not a number of sectors")))
    };
    let start = number("start sector")?;
    let length = number("length")?;
    let target = words
        .next()
        .ok_or_else(|| err("missing target type".into()))?;
    if target.len() > MAX_TARGET_NAME || !target.is_ascii() {
        return Err(err(format!("`{target}` is not a target type")));
    }
    if length.0 == 0 {
        return Err(err("length must not be 0".into()));
    }
    let args = words
        .map(|w| match InterposePath::from_arg(w) {
            None => Ok(Arg::Plain(w.to_string())),
            Some(Ok(p)) => Ok(Arg::Interpose(p)),
            Some(Err(why)) => Err(err(why.to_string())),
        })
        .collect::<Result<_, _>>()?;
    Ok(TableLine {
        start,
        length,
        target: target.to_string(),
        args,
    })
}

impl FromStr for Table {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut lines: Vec<TableLine> = Vec::new();
        for (i, text) in s.lines().enumerate() {
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let l = parse_line(i + 1, trimmed)?;
            if l.start.0.checked_add(l.length.0).is_none() {
                // size() would overflow; dm could not map it either.
                return Err(Error::TableSyntax {
                    line: i + 1,
                    what: format!(
                        "{} + {} sectors ends beyond the largest sector number",
                        l.start, l.length
                    ),
                });
            }
            let expect = lines
                .last()
                .map_or(0, |p| p.start.0.saturating_add(p.length.0));
            if l.start.0 != expect {
                return Err(Error::TableSyntax {
                    line: i + 1,
                    what: format!(
                        "starts at sector {}, expected {expect}: lines must be contiguous from 0",
                        l.start
                    ),
                });
            }
            lines.push(l);
        }
        if lines.is_empty() {
            return Err(Error::TableSyntax {
                line: 0,
                what: "the table is empty".into(),
            });
        }
        Ok(Table { lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERA: &str = "# era over a live partition\n\n0 1024 linear [interpose]/dev/vdb 0\n1024 2048 era /dev/vdc [interpose]/dev/vdb 128\n";

    #[test]
    fn round_trips() {
        let t: Table = ERA.parse().unwrap();
        assert_eq!(t.lines.len(), 2);
        assert_eq!(
            t.to_string(),
            "0 1024 linear [interpose]/dev/vdb 0\n1024 2048 era /dev/vdc [interpose]/dev/vdb 128\n"
        );
        assert_eq!(t.to_string().parse::<Table>().unwrap(), t);
        assert_eq!(t.size(), Sectors(3072));
        assert_eq!(t.interposed().count(), 2);
        assert_eq!(t.plain_args().collect::<Vec<_>>(), ["0", "/dev/vdc", "128"]);
    }

    #[test]
    fn rewrites_interposed_to_lower_devno() {
        let t: Table = ERA.parse().unwrap();
        let r = t.rewrite_interposed(DevNo::new(252, 0));
        assert_eq!(r.interposed().count(), 0);
        assert_eq!(
            r.targets()[1],
            (1024, 2048, "era".into(), "/dev/vdc 252:0 128".into())
        );
    }

    #[test]
    fn rejects_bad_lines() {
        for (bad, what) in [
            ("", "empty"),
            ("# only\n", "empty"),
            ("0", "missing length"),
            ("0 x linear", "not a number"),
            ("0 8", "missing target"),
            ("0 0 linear /dev/a 0", "must not be 0"),
            ("8 8 linear /dev/a 0", "expected 0"),
            ("0 8 linear /dev/a 0\n9 8 linear /dev/a 0", "expected 8"),
            ("0 8 averyveryverylongtarget x", "not a target"),
            ("0 8 linear [interpose] 0", "needs a device"),
            (
                "0 18446744073709551615 zero\n18446744073709551615 1 zero",
                "beyond the largest",
            ),
        ] {
            let e = bad.parse::<Table>().unwrap_err().to_string();
            assert!(e.contains(what), "{bad:?}: {e}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = "# c\n0 8 linear /dev/a 0\n8 x y"
            .parse::<Table>()
            .unwrap_err();
        assert!(e.to_string().starts_with("table line 3:"), "{e}");
    }
}
