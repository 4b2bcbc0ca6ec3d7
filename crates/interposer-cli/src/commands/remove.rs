//! `interposer remove NAME`

use anyhow::Context;
use blk_interposer::RemoveReport;

use crate::cli::RemoveArgs;
use crate::output;

pub fn exec(args: RemoveArgs, json: bool) -> anyhow::Result<()> {
    let report = super::system()?
        .remove(&args.name)
        .with_context(|| format!("cannot remove interposer {}", args.name))?;
    if json {
        output::json(&report)
    } else {
        output::report(human(&report))
    }
}

pub(super) fn human(r: &RemoveReport) -> Vec<String> {
    let mut v = vec![format!(
        "{} removed; {} {}.",
        r.name,
        r.device,
        if r.detached {
            "is detached"
        } else {
            "was not attached"
        }
    )];
    v.push(match &r.lower_kept {
        None => format!("lower device {} removed.", r.lower),
        Some(why) => format!("lower device {} kept: {why}", r.lower),
    });
    v
}
