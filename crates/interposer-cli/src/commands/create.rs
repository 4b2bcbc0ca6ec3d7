//! `interposer create NAME [TABLE_FILE] [--table LINE]...`

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{bail, Context};
use blk_interposer::{CreateReport, Table};

use crate::cli::CreateArgs;
use crate::output;

pub fn exec(args: CreateArgs, json: bool) -> anyhow::Result<()> {
    let text = table_text(&args)?;
    let table: Table = text.parse().context("invalid table")?;
    if table.interposed().next().is_none() {
        return Err(blk_interposer::Error::NoInterpose).context("invalid table");
    }
    let devices: Vec<&Path> = table.interposed().map(|p| p.path()).collect();
    let report = super::with_system(&devices, |ops| ops.create(&args.name, &table))
        .with_context(|| format!("cannot create interposer {}", args.name))?;
    if json {
        output::json(&report)
    } else {
        output::report(human(&report))
    }
}

/// The table from --table, the file, or stdin, like dmsetup.
fn table_text(args: &CreateArgs) -> anyhow::Result<String> {
    if !args.table.is_empty() {
        return Ok(args.table.join("\n"));
    }
    match args.table_file.as_deref() {
        Some(p) if p != Path::new("-") => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the table file {}", p.display())),
        _ => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no table: give it with --table 'LINE', as TABLE_FILE, or on standard input");
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read the table from standard input")?;
            Ok(text)
        }
    }
}

fn human(r: &CreateReport) -> Vec<String> {
    vec![
        format!(
            "{} ({}) now interposes {} ({}).",
            r.name, r.dm_dev, r.device, r.dev
        ),
        format!(
            "lower device: {} ({}){}",
            r.lower,
            r.lower_dev,
            if r.lower_created { "" } else { ", reused" }
        ),
        format!("dm device:    {}", r.node.display()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_join() {
        let args = CreateArgs {
            name: "x".into(),
            table_file: None,
            table: vec!["0 8 zero".into(), "8 8 zero".into()],
        };
        assert_eq!(table_text(&args).unwrap(), "0 8 zero\n8 8 zero");
        let args = CreateArgs {
            name: "x".into(),
            table_file: Some("/nonexistent/t".into()),
            table: vec![],
        };
        let e = format!("{:#}", table_text(&args).unwrap_err());
        assert!(
            e.starts_with("cannot read the table file /nonexistent/t: "),
            "{e}"
        );
    }
}
