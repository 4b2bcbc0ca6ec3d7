//! `interposer attach DEVICE INTERPOSER` and `interposer detach DEVICE`

use anyhow::Context;
use blk_interposer::SwitchReport;

use crate::cli::{AttachArgs, DetachArgs};
use crate::output;

pub fn exec_attach(args: AttachArgs, json: bool) -> anyhow::Result<()> {
    let report = super::system()?
        .attach(&args.device, &args.interposer)
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
    let report = super::system()?
        .detach(&args.device)
        .with_context(|| format!("cannot detach {}", args.device.display()))?;
    print(&report, json)
}

fn print(r: &SwitchReport, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(r);
    }
    output::lines(vec![match r.interposer {
        Some(to) => format!(
            "{} ({}) now redirects to {to}; lower device {}.",
            r.device, r.dev, r.lower
        ),
        None => format!(
            "{} ({}) is detached; lower device {} kept.",
            r.device, r.dev, r.lower
        ),
    }])
}
