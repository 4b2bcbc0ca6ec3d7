//! `interposer ls`

use anyhow::Context;
use blk_interposer::Entry;

use crate::output;

/// Column headers of the human listing.
pub const HEADER: [&str; 6] = [
    "DEVICE",
    "LOWER",
    "INTERPOSER",
    "STATE",
    "REDIRECTED",
    "LOWER-BIOS",
];

pub fn exec(json: bool) -> anyhow::Result<()> {
    let entries = super::system()?
        .list()
        .context("cannot list interposed devices")?;
    if json {
        output::json(&entries)
    } else if entries.is_empty() {
        output::lines(["No interposed devices.".to_string()])
    } else {
        output::lines(render(&entries))
    }
}

fn render(entries: &[Entry]) -> Vec<String> {
    let mut rows = vec![HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    rows.extend(entries.iter().map(|e| {
        vec![
            e.device.clone(),
            e.lower.clone(),
            e.interposer
                .clone()
                .or_else(|| e.interposer_dev.map(|d| d.to_string()))
                .unwrap_or_else(|| "-".into()),
            e.state.as_str().to_string(),
            e.counters.redirected.to_string(),
            e.counters.lower_bios.to_string(),
        ]
    }));
    output::table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blk_interposer::{Counters, DevNo, Sectors, State};

    #[test]
    fn renders_a_table() {
        let e = Entry {
            device: "/dev/vdb".into(),
            dev: DevNo::new(254, 16),
            lower: "/dev/interposer/vdb".into(),
            lower_dev: DevNo::new(252, 0),
            interposer: Some("vdb-lin".into()),
            interposer_dev: Some(DevNo::new(253, 0)),
            state: State::Attached,
            sectors: Sectors(2048),
            counters: Counters {
                redirected: 10,
                lower_bios: 20,
                deferred: 0,
                attaches: 1,
            },
        };
        let idle = Entry {
            interposer: None,
            interposer_dev: None,
            state: State::Idle,
            ..e.clone()
        };
        assert_eq!(
            render(&[e, idle]),
            [
                "DEVICE    LOWER                INTERPOSER  STATE     REDIRECTED  LOWER-BIOS",
                "/dev/vdb  /dev/interposer/vdb  vdb-lin     attached  10          20",
                "/dev/vdb  /dev/interposer/vdb  -           idle      10          20",
            ]
        );
    }
}
