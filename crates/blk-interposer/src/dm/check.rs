//! Checks on a table before anything is created: exactly one interposed
//! device, and no plain argument that would send bios back into the
//! interposer (the device itself, or a dm device stacked on it).

use std::path::Path;

use crate::dm::mapper::DeviceMapper;
use crate::dm::path::InterposePath;
use crate::dm::table::Table;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::types::DevNo;

/// How deep to follow dm dependencies looking for a loop.
const MAX_DEPTH: usize = 16;

/// The device a table interposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interposed {
    /// The first `[interpose]` argument, as written.
    pub path: InterposePath,
    /// Its device number.
    pub dev: DevNo,
}

/// Find the one interposed device of `table` and check that no plain argument
/// names it, directly or through dm devices stacked on it (best effort).
pub fn check_table(table: &Table, host: &dyn Host, dm: &dyn DeviceMapper) -> Result<Interposed> {
    let mut found: Option<Interposed> = None;
    for p in table.interposed() {
        let dev = host.resolve(p.path())?;
        match &found {
            None => {
                found = Some(Interposed {
                    path: p.clone(),
                    dev,
                })
            }
            Some(f) if f.dev == dev => {}
            Some(f) => {
                return Err(Error::TwoInterposed {
                    first: f.path.path().display().to_string(),
                    second: p.path().display().to_string(),
                })
            }
        }
    }
    let found = found.ok_or(Error::NoInterpose)?;
    for arg in table.plain_args() {
        let Some(d) = plain_device(arg, host) else {
            continue;
        };
        let why = if d == found.dev {
            "is"
        } else if stacked_on(dm, d, found.dev, 0) {
            "is stacked on"
        } else {
            continue;
        };
        return Err(Error::TableLoops {
            arg: arg.to_string(),
            why,
            dev: found.path.path().display().to_string(),
        });
    }
    Ok(found)
}

/// The device a plain argument names, if it looks like one and resolves.
fn plain_device(arg: &str, host: &dyn Host) -> Option<DevNo> {
    if let Ok(d) = arg.parse::<DevNo>() {
        return Some(d);
    }
    arg.starts_with('/')
        .then(|| host.resolve(Path::new(arg)).ok())
        .flatten()
}

/// Whether dm device `dev` uses `target`, directly or further down.
fn stacked_on(dm: &dyn DeviceMapper, dev: DevNo, target: DevNo, depth: usize) -> bool {
    if depth >= MAX_DEPTH {
        return false;
    }
    let Ok(deps) = dm.deps(dev) else { return false };
    deps.iter()
        .any(|&d| d == target || stacked_on(dm, d, target, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::mock::{Mock, DEV, OTHER};

    fn check(table: &str, m: &Mock) -> Result<Interposed> {
        check_table(&table.parse().unwrap(), m, m)
    }

    #[test]
    fn finds_the_one_device() {
        let m = Mock::new();
        let i = check(
            "0 8 linear [interpose]/dev/vdb 0\n8 8 linear [interpose]/dev/disk/by-id/vdb 8",
            &m,
        )
        .unwrap();
        assert_eq!(i.dev, DEV);
        assert_eq!(i.path.path(), Path::new("/dev/vdb"));
    }

    #[test]
    fn rejects_none_two_and_loops() {
        let m = Mock::new();
        assert!(matches!(
            check("0 8 linear /dev/vdc 0", &m),
            Err(Error::NoInterpose)
        ));
        let e = check(
            "0 8 linear [interpose]/dev/vdb 0\n8 8 linear [interpose]/dev/vdc 0",
            &m,
        );
        assert!(matches!(e, Err(Error::TwoInterposed { .. })), "{e:?}");
        let e = check("0 8 raid1 [interpose]/dev/vdb /dev/vdb", &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "table argument `/dev/vdb` is /dev/vdb: its bios would loop back into the interposer; write `[interpose]/dev/vdb` to reach the device beneath it"
        );
        let e = check(&format!("0 8 era {DEV} [interpose]/dev/vdb 128"), &m).unwrap_err();
        assert!(matches!(e, Error::TableLoops { why: "is", .. }), "{e:?}");
        assert!(check("0 8 linear [interpose]/dev/vdx 0", &m).is_err());
    }

    #[test]
    fn rejects_a_dm_device_stacked_on_the_device() {
        let m = Mock::new();
        // 253:5 uses 253:4 uses the interposed device.
        m.deps
            .borrow_mut()
            .insert(DevNo::new(253, 5), vec![OTHER, DevNo::new(253, 4)]);
        m.deps.borrow_mut().insert(DevNo::new(253, 4), vec![DEV]);
        let e = check("0 8 era 253:5 [interpose]/dev/vdb 128", &m).unwrap_err();
        assert!(
            matches!(
                e,
                Error::TableLoops {
                    why: "is stacked on",
                    ..
                }
            ),
            "{e:?}"
        );
        check("0 8 era /dev/vdc [interpose]/dev/vdb 128", &m).unwrap();
    }
}
