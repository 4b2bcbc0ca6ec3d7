//! `interposer version`

use blk_interposer::{Kernel, Version};
use serde::Serialize;

use crate::output;

#[derive(Serialize)]
struct Versions {
    /// This tool.
    cli: &'static str,
    /// The ABI it was built with.
    abi: Version,
    /// The loaded module's ABI, when it answers.
    module: Option<Version>,
    /// Why it did not.
    module_error: Option<String>,
}

pub fn exec(json: bool) -> anyhow::Result<()> {
    let module = blk_interposer::Control::open().and_then(|c| c.version());
    let v = Versions {
        cli: env!("CARGO_PKG_VERSION"),
        abi: Version::OURS,
        module: module.as_ref().ok().copied(),
        module_error: module.as_ref().err().map(|e| e.to_string()),
    };
    if json {
        return output::json(&v);
    }
    output::lines([
        format!("interposer {}", v.cli),
        format!("ABI:        {}", v.abi),
        match (&v.module, &v.module_error) {
            (Some(m), _) => format!("module ABI: {m}"),
            (None, e) => format!(
                "module ABI: unknown ({})",
                e.as_deref().unwrap_or("no answer")
            ),
        },
    ])
}
