//! One file per verb: each turns its arguments into one library call and
//! prints the result.

mod attach;
mod backup;
mod create;
mod era;
mod info;
mod ls;
mod remove;
mod snapshot;
mod version;

use blk_interposer::Ops;

use crate::cli::{Cli, Command};

/// Run the verb.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Create(args) => create::exec(args, cli.json),
        Command::Remove(args) => remove::exec(args, cli.json),
        Command::Ls => ls::exec(cli.json),
        Command::Info(args) => info::exec(args, cli.json),
        Command::Attach(args) => attach::exec_attach(args, cli.json),
        Command::Detach(args) => attach::exec_detach(args, cli.json),
        Command::Era(args) => era::exec(args, cli.json),
        Command::Switch(args) => attach::exec_switch(args, cli.json),
        Command::Snapshot(cmd) => snapshot::exec(cmd, cli.json),
        Command::Backup(args) => backup::exec(args, cli.json),
        Command::Version => version::exec(cli.json),
    }
}

/// The real system (module control device and device-mapper).
fn system(
) -> anyhow::Result<Ops<blk_interposer::Control, blk_interposer::Dm, blk_interposer::System>> {
    Ok(Ops::system()?)
}
