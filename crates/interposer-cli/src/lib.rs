//! The command line of `interposer`, as a library: the binary parses it, and
//! `cargo xtask package` generates the man pages and shell completions from
//! the same clap definitions.

pub mod cli;
pub mod exit;
pub mod size;
