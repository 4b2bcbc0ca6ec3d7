//! `interposer`: dmsetup-like verbs over the `blk_interposer` library.
//! `main` prints an error's chain once on standard error (and, with
//! `--json`, as an object on standard output) and exits with the status
//! `interposer_cli::exit` chooses; a closed pipe (`interposer ls | head -1`)
//! is success.

mod commands;
mod output;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use interposer_cli::cli;
use interposer_cli::exit::{self, Classified, ErrorReport, Kind};

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage(e),
    };
    output::set_quiet(cli.quiet);
    init_log(cli.verbose, cli.quiet);
    log::debug!("verb: {:?}", cli.command);
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let c = exit::classify(&err);
            // The library's errors by variant, the rest (context) as text.
            let chain: Vec<String> = err
                .chain()
                .map(|e| match e.downcast_ref::<blk_interposer::Error>() {
                    Some(lib) => format!("{lib:?}"),
                    None => e.to_string(),
                })
                .collect();
            log::debug!(
                "exit status {} ({}) from: {}",
                c.kind.code(),
                c.kind.as_str(),
                chain.join(" <- ")
            );
            let message = format!("{err:#}");
            eprintln!("interposer: error: {message}");
            if json {
                print_json_error(message, &c);
            }
            ExitCode::from(c.kind.code())
        }
    }
}

/// clap's own errors: help and version on stdout with status 0, usage
/// errors on stderr with status 2 (and, with --json, the error object).
fn usage(e: clap::Error) -> ! {
    if e.use_stderr() && json_asked() {
        let message = match e.kind() {
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                "arguments are missing; see --help".to_string()
            }
            _ => {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                first.strip_prefix("error: ").unwrap_or(first).to_string()
            }
        };
        print_json_error(
            message,
            &Classified {
                kind: Kind::Usage,
                left_behind: Vec::new(),
            },
        );
    }
    e.exit()
}

/// Whether `--json` is among the arguments, when clap did not get so far.
fn json_asked() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn print_json_error(message: String, c: &Classified) {
    let mut out = io::stdout().lock();
    // Nothing more to say if stdout is gone too.
    let _ = serde_json::to_writer_pretty(&mut out, &ErrorReport::new(message, c))
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out));
}

/// `-v`: our debug lines and the devicemapper crate's on stderr; `-vv`
/// adds trace lines; `-q` or neither: none.
fn init_log(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) | (false, 0) => log::LevelFilter::Off,
        (false, 1) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, r| {
            writeln!(
                buf,
                "interposer: {}: {}: {}",
                r.level().as_str().to_ascii_lowercase(),
                r.target(),
                r.args()
            )
        })
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_is_success() {
        let e = Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("cannot write")
            .unwrap_err();
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("no table")));
    }
}
