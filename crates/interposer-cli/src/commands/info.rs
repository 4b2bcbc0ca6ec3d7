//! `interposer info NAME_OR_DEVICE` (alias `status`)

use anyhow::Context;
use blk_interposer::Entry;

use crate::cli::InfoArgs;
use crate::output;

pub fn exec(args: InfoArgs, json: bool) -> anyhow::Result<()> {
    let entry = super::with_system(&[args.what.as_ref()], |ops| ops.info(&args.what))
        .with_context(|| format!("cannot show {}", args.what))?;
    if json {
        output::json(&entry)
    } else {
        output::lines(render(&entry))
    }
}

fn render(e: &Entry) -> Vec<String> {
    let interposer = match (&e.interposer, e.interposer_dev) {
        (Some(n), Some(d)) => format!("{n} ({d})"),
        (None, Some(d)) => d.to_string(),
        _ => "-".into(),
    };
    [
        ("device", format!("{} ({})", e.device, e.dev)),
        (
            "size",
            format!("{} sectors ({})", e.sectors, output::size(e.sectors.0)),
        ),
        ("lower", format!("{} ({})", e.lower, e.lower_dev)),
        ("interposer", interposer),
        ("state", e.state.as_str().into()),
        ("redirected", format!("{} bios", e.counters.redirected)),
        ("lower bios", e.counters.lower_bios.to_string()),
        ("deferred", e.counters.deferred.to_string()),
        ("attaches", e.counters.attaches.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| format!("{:<12}{v}", format!("{k}:")))
    .collect()
}
