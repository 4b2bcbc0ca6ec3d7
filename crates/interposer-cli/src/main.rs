//! `interposer`: dmsetup-like verbs over the `blk_interposer` library.
//! `main` maps errors to exit code 1, printing the chain once; a closed pipe
//! (`interposer ls | head -1`) is success.

mod commands;
mod output;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use interposer_cli::cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("interposer: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
