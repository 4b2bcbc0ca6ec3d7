//! insn-marker: execute the marker instructions that the instruction-counting qemu plugin
//! of `cargo xtask bench` (crates/insn-count-plugin) recognises.
//!
//! ```text
//! insn-marker start     nopl 0x1b1b0001(%rax): the plugin records the running count
//! insn-marker stop      nopl 0x1b1b0002(%rax): likewise
//! insn-marker loop N    start, a loop of exactly 2*N instructions, stop: the sanity check
//! ```
//!
//! The markers are NOPs, so without the plugin (or on KVM) the tool does nothing visible.
//! The bench runs fio with `--exec_prerun='insn-marker start' --exec_postrun='insn-marker stop'`.

use std::process::ExitCode;

#[cfg(target_arch = "x86_64")]
fn start() {
    // SAFETY: a NOP; touches no memory and no register.
    unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x1f, 0x80, 0x01, 0x00, 0x1b, 0x1b",
            options(nostack)
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn stop() {
    // SAFETY: a NOP; touches no memory and no register.
    unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x1f, 0x80, 0x02, 0x00, 0x1b, 0x1b",
            options(nostack)
        )
    }
}

/// start, then `dec; jnz` `n` times (2n instructions), then stop.
#[cfg(target_arch = "x86_64")]
fn counted_loop(n: u64) {
    // SAFETY: NOPs and a loop on a scratch register.
    unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x1f, 0x80, 0x01, 0x00, 0x1b, 0x1b",
            "2:",
            "dec {n}",
            "jnz 2b",
            ".byte 0x0f, 0x1f, 0x80, 0x02, 0x00, 0x1b, 0x1b",
            n = inout(reg) n.max(1) => _,
            options(nostack),
        )
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["start"] => start(),
        ["stop"] => stop(),
        ["loop", n] => match n.parse() {
            Ok(n) => counted_loop(n),
            Err(_) => {
                eprintln!("insn-marker: loop wants a count, not {n:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: insn-marker start|stop|loop N");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
