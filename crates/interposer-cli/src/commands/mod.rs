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

use std::path::Path;

use blk_interposer::{DeviceSpec, Ops};

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

/// The library's operations on the real system.
type SystemOps = Ops<blk_interposer::Control, blk_interposer::Dm, blk_interposer::System>;

/// The real system (module control device and device-mapper).
fn system() -> anyhow::Result<SystemOps> {
    log::debug!(
        "opening {} (`modprobe blk_interposer` once if it is missing)",
        blk_interposer::ctl::CONTROL_PATH
    );
    Ok(Ops::system()?)
}

/// Run `op` on the real system once the `devices` a verb was given passed
/// the checks that need no kernel ([`DeviceSpec::check`]: a path exists and
/// is a block device): opening the control device may load the module, and
/// a wrong path must not be reported as a module that does not load.
fn with_system<T>(
    devices: &[&Path],
    op: impl FnOnce(&SystemOps) -> blk_interposer::Result<T>,
) -> anyhow::Result<T> {
    for d in devices {
        let spec = DeviceSpec::parse(d);
        log::debug!("device argument {}: {spec:?}", d.display());
        spec.check(&blk_interposer::System)?;
    }
    Ok(op(&system()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_arguments_are_checked_before_the_module_is_touched() {
        let never = |_: &SystemOps| -> blk_interposer::Result<()> { panic!("reached the kernel") };
        for (args, msg) in [
            (&["/etc/passwd"][..], "/etc/passwd is not a block device"),
            (&["/nonexistent"], "/nonexistent does not exist"),
            (
                &["254:16", "/nonexistent/x"],
                "/nonexistent/x does not exist",
            ),
        ] {
            let paths: Vec<&Path> = args.iter().map(Path::new).collect();
            let e = with_system(&paths, never).unwrap_err();
            assert_eq!(format!("{e:#}"), msg);
        }
    }
}
