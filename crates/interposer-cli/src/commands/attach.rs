//! `interposer attach DEVICE INTERPOSER`, `interposer detach DEVICE` and
//! `interposer switch DEVICE=INTERPOSER...`

use std::path::Path;

use anyhow::Context;
use blk_interposer::SwitchReport;

use crate::cli::{AttachArgs, DetachArgs, SwitchArgs};
use crate::output;

pub fn exec_attach(args: AttachArgs, json: bool) -> anyhow::Result<()> {
    let report = super::with_system(&[&args.device, &args.interposer], |ops| {
        ops.attach(&args.device, &args.interposer)
    })
    .with_context(|| {
        format!(
            "cannot attach {} to {}",
            args.device.display(),
            args.interposer.display()
        )
    })?;
    print(&report, json)
}

pub fn exec_detach(args: DetachArgs, json: bool) -> anyhow::Result<()> {
    let report = super::with_system(&[&args.device], |ops| ops.detach(&args.device))
        .with_context(|| format!("cannot detach {}", args.device.display()))?;
    print(&report, json)
}

pub fn exec_switch(args: SwitchArgs, json: bool) -> anyhow::Result<()> {
    let moves: Vec<_> = args
        .moves
        .iter()
        .map(|(d, to)| (d.as_path(), to.as_deref()))
        .collect();
    let devices: Vec<&Path> = moves
        .iter()
        .flat_map(|(d, to)| [*d].into_iter().chain(*to))
        .collect();
    let reports = super::with_system(&devices, |ops| ops.switch(&moves))
        .context("switch not done; no device has changed")?;
    if json {
        return output::json(&reports);
    }
    output::report(reports.iter().map(line))
}

fn print(r: &SwitchReport, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(r);
    }
    output::report(vec![line(r)])
}

fn line(r: &SwitchReport) -> String {
    match r.interposer {
        Some(to) => format!(
            "{} ({}) now redirects to {to}; lower device {}.",
            r.device, r.dev, r.lower
        ),
        None => format!(
            "{} ({}) is detached; lower device {} kept.",
            r.device, r.dev, r.lower
        ),
    }
}
