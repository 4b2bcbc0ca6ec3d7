//! A qemu TCG plugin that counts guest instructions, for `cargo xtask bench`.
//!
//! Every translated block gets an inline add of its instruction count to a per-vCPU
//! counter (a qemu scoreboard), so counting costs one host add per executed block and no
//! callback. The guest brackets what it wants measured with *marker instructions*: multi-byte
//! NOPs that nothing else emits,
//!
//! ```text
//!   0f 1f 80 01 00 1b 1b    nopl 0x1b1b0001(%rax)    start
//!   0f 1f 80 02 00 1b 1b    nopl 0x1b1b0002(%rax)    stop
//! ```
//!
//! (`insn-marker` in crates/vm-tools executes them). At translation time the plugin spots
//! them by their bytes and registers a callback on exactly those instructions; the callback
//! appends `start <count>` or `stop <count>` to the file given as the plugin argument
//! `out=PATH` (or, without one, prints it with `qemu_plugin_outs`). `<count>` is the sum over
//! all vCPUs of the instructions executed since qemu started, so the host gets the guest's
//! instructions between two markers by subtraction.
//!
//! Precision: a block's count is added when the block starts, so a marker's count includes
//! the rest of its own block (a few instructions, the same every time). Use with
//! `-accel tcg,thread=single` for a deterministic interleaving of the vCPUs.
//!
//! The FFI below is written by hand from qemu's `include/qemu/qemu-plugin.h` (qemu does not
//! ship the header in Debian); it needs plugin API version 3 (qemu 9.0) or newer: scoreboards,
//! `..._tb_exec_inline_per_vcpu` and the copying `qemu_plugin_insn_data`.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// The marker instructions' bytes, without the kind byte at index [`KIND_AT`].
pub const MARKER: [u8; 7] = [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x1b, 0x1b];
/// Index of the byte that tells start from stop.
pub const KIND_AT: usize = 3;
/// Marker kinds, the byte at [`KIND_AT`].
pub const START: u8 = 1;
pub const STOP: u8 = 2;

/// The kind of the marker `bytes` encodes, if it is one.
pub fn marker_kind(bytes: &[u8]) -> Option<u8> {
    if bytes.len() != MARKER.len() {
        return None;
    }
    let same = bytes
        .iter()
        .zip(MARKER)
        .enumerate()
        .all(|(i, (b, m))| i == KIND_AT || *b == m);
    let kind = bytes[KIND_AT];
    (same && (kind == START || kind == STOP)).then_some(kind)
}

/// The line the plugin writes for a marker.
pub fn marker_line(kind: u8, count: u64) -> String {
    let name = if kind == START { "start" } else { "stop" };
    format!("{name} {count}\n")
}

// ---- qemu's plugin API, by hand (include/qemu/qemu-plugin.h) ----

type PluginId = u64;

#[repr(C)]
struct Tb {
    _opaque: [u8; 0],
}

#[repr(C)]
struct Insn {
    _opaque: [u8; 0],
}

#[repr(C)]
struct Scoreboard {
    _opaque: [u8; 0],
}

/// `qemu_plugin_u64`: a u64 at `offset` in each vCPU's scoreboard entry.
#[repr(C)]
#[derive(Clone, Copy)]
struct PluginU64 {
    score: *mut Scoreboard,
    offset: usize,
}

/// `QEMU_PLUGIN_INLINE_ADD_U64`.
const INLINE_ADD_U64: c_int = 0;
/// `QEMU_PLUGIN_CB_NO_REGS`.
const CB_NO_REGS: c_int = 0;

unsafe extern "C" {
    fn qemu_plugin_scoreboard_new(element_size: usize) -> *mut Scoreboard;
    fn qemu_plugin_register_vcpu_tb_trans_cb(
        id: PluginId,
        cb: unsafe extern "C" fn(PluginId, *mut Tb),
    );
    fn qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(
        tb: *mut Tb,
        op: c_int,
        entry: PluginU64,
        imm: u64,
    );
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
    fn qemu_plugin_insn_data(insn: *const Insn, dest: *mut c_void, len: usize) -> usize;
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: unsafe extern "C" fn(c_uint, *mut c_void),
        flags: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_u64_sum(entry: PluginU64) -> u64;
    fn qemu_plugin_outs(string: *const c_char);
}

/// The API version this plugin was written against (qemu refuses versions it does not know).
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 3;

static SCORE: AtomicPtr<Scoreboard> = AtomicPtr::new(std::ptr::null_mut());
static OUT: Mutex<Option<File>> = Mutex::new(None);

fn counter() -> PluginU64 {
    PluginU64 {
        score: SCORE.load(Ordering::Relaxed),
        offset: 0,
    }
}

fn emit(line: &str) {
    let mut out = OUT.lock().unwrap_or_else(|e| e.into_inner());
    match out.as_mut() {
        // One write per line, unbuffered: qemu may be killed, the lines must be there.
        Some(file) => {
            let _ = file.write_all(line.as_bytes());
        }
        None => {
            if let Ok(text) = CString::new(line) {
                // SAFETY: a valid NUL-terminated string that outlives the call.
                unsafe { qemu_plugin_outs(text.as_ptr()) };
            }
        }
    }
}

unsafe extern "C" fn on_marker(_vcpu: c_uint, userdata: *mut c_void) {
    // SAFETY: the scoreboard lives as long as qemu (never freed).
    let count = unsafe { qemu_plugin_u64_sum(counter()) };
    emit(&marker_line(userdata as usize as u8, count));
}

unsafe extern "C" fn on_translate(_id: PluginId, tb: *mut Tb) {
    // SAFETY: qemu hands us a block being translated; its instructions are valid for the
    // duration of this callback, which is when the API allows registering on them.
    unsafe {
        let n = qemu_plugin_tb_n_insns(tb);
        qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, INLINE_ADD_U64, counter(), n as u64);
        for i in 0..n {
            let insn = qemu_plugin_tb_get_insn(tb, i);
            if qemu_plugin_insn_size(insn) != MARKER.len() {
                continue;
            }
            let mut bytes = [0u8; MARKER.len()];
            let got = qemu_plugin_insn_data(insn, bytes.as_mut_ptr().cast(), bytes.len());
            if let Some(kind) = marker_kind(&bytes[..got]) {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_marker,
                    CB_NO_REGS,
                    kind as usize as *mut c_void,
                );
            }
        }
    }
}

/// Entry point: `-plugin PATH/libinsn_count_plugin.so[,out=FILE]`.
///
/// # Safety
/// Called by qemu with its plugin id and `argc` valid C strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: qemu passes argc valid C strings.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) }.to_string_lossy();
        match arg.split_once('=') {
            Some(("out", path)) => match File::create(path) {
                Ok(f) => *OUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(f),
                Err(e) => {
                    emit(&format!("insn-count: cannot create {path}: {e}\n"));
                    return -1;
                }
            },
            _ => {
                emit(&format!(
                    "insn-count: unknown argument {arg} (want out=FILE)\n"
                ));
                return -1;
            }
        }
    }
    // SAFETY: plain API calls during install, as the API intends.
    unsafe {
        SCORE.store(qemu_plugin_scoreboard_new(8), Ordering::Relaxed);
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_recognised_by_their_bytes() {
        assert_eq!(
            marker_kind(&[0x0f, 0x1f, 0x80, 1, 0, 0x1b, 0x1b]),
            Some(START)
        );
        assert_eq!(
            marker_kind(&[0x0f, 0x1f, 0x80, 2, 0, 0x1b, 0x1b]),
            Some(STOP)
        );
        // other kinds, other displacements, other lengths: ordinary NOPs
        assert_eq!(marker_kind(&[0x0f, 0x1f, 0x80, 3, 0, 0x1b, 0x1b]), None);
        assert_eq!(marker_kind(&[0x0f, 0x1f, 0x80, 0, 0, 0, 0]), None);
        assert_eq!(marker_kind(&[0x0f, 0x1f, 0x80, 1, 0, 0x1b]), None);
        assert_eq!(marker_line(START, 42), "start 42\n");
        assert_eq!(marker_line(STOP, 7), "stop 7\n");
    }
}
