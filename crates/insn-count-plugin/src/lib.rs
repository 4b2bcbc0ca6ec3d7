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
//! With `profile=FILE` it also profiles: every translated block gets a second inline add, of
//! its instruction count to its own slot (one slot per block start address), so at a stop
//! marker the plugin knows how many instructions ran in each block since the start marker.
//! It appends them to FILE as one record per marker pair,
//!
//! ```text
//!   prof
//!   ffffffff81234560 1234        block start address (hex), instructions executed there
//!   ...
//!   end
//! ```
//!
//! and the host attributes the addresses to functions with the guest's /proc/kallsyms
//! (`cargo xtask bench --profile`). It costs a second host add per executed block.
//!
//! The FFI below is written by hand from qemu's `include/qemu/qemu-plugin.h` (qemu does not
//! ship the header in Debian); it needs plugin API version 3 (qemu 9.0) or newer: scoreboards,
//! `..._tb_exec_inline_per_vcpu` and the copying `qemu_plugin_insn_data`.

use std::collections::HashMap;
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
    fn qemu_plugin_tb_vaddr(tb: *const Tb) -> u64;
    fn qemu_plugin_scoreboard_find(score: *mut Scoreboard, vcpu_index: c_uint) -> *mut c_void;
    fn qemu_plugin_num_vcpus() -> c_int;
    fn qemu_plugin_outs(string: *const c_char);
}

/// The API version this plugin was written against (qemu refuses versions it does not know).
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 3;

static SCORE: AtomicPtr<Scoreboard> = AtomicPtr::new(std::ptr::null_mut());
static OUT: Mutex<Option<File>> = Mutex::new(None);

/// Profile slots: one u64 per distinct block start address. Slot 0 takes the blocks that
/// found the table full (reported at address 0); a kernel profile needs some ten thousand.
const SLOTS: usize = 1 << 20;
static PROF_SCORE: AtomicPtr<Scoreboard> = AtomicPtr::new(std::ptr::null_mut());

/// Which slot each block start address counts in, and back.
struct Profile {
    out: File,
    slot_of: HashMap<u64, usize>,
    addr_of: Vec<u64>,
}

static PROFILE: Mutex<Option<Profile>> = Mutex::new(None);

impl Profile {
    fn new(out: File) -> Profile {
        Profile {
            out,
            slot_of: HashMap::new(),
            addr_of: vec![0],
        }
    }

    /// The slot of the block at `vaddr`, allocated on first sight.
    fn slot(&mut self, vaddr: u64) -> usize {
        if let Some(&s) = self.slot_of.get(&vaddr) {
            return s;
        }
        if self.addr_of.len() == SLOTS {
            return 0;
        }
        self.addr_of.push(vaddr);
        self.slot_of.insert(vaddr, self.addr_of.len() - 1);
        self.addr_of.len() - 1
    }

    /// The record of one marker pair: the non-zero slots of `counts` (summed over vCPUs).
    fn record(&self, counts: &[u64]) -> String {
        let mut text = String::from("prof\n");
        for (slot, &n) in counts.iter().enumerate().take(self.addr_of.len()) {
            if n != 0 {
                text.push_str(&format!("{:x} {n}\n", self.addr_of[slot]));
            }
        }
        text.push_str("end\n");
        text
    }
}

/// Each vCPU's profile slots, as a slice.
///
/// # Safety
/// The profile scoreboard must exist, and no vCPU may run meanwhile (markers run with
/// `thread=single`, so the callback's vCPU is the only one running).
unsafe fn prof_slots(vcpu: c_uint) -> &'static mut [u64] {
    // SAFETY: the caller's contract; an entry is SLOTS u64s.
    unsafe {
        let p = qemu_plugin_scoreboard_find(PROF_SCORE.load(Ordering::Relaxed), vcpu);
        std::slice::from_raw_parts_mut(p.cast::<u64>(), SLOTS)
    }
}

/// At a start marker: zero the slots. At a stop marker: write them out.
fn on_profile_marker(kind: u8) {
    let mut guard = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(prof) = guard.as_mut() else { return };
    // SAFETY: plain API call.
    let vcpus = unsafe { qemu_plugin_num_vcpus() }.max(1) as c_uint;
    if kind == START {
        for v in 0..vcpus {
            // SAFETY: profiling is on, so the scoreboard exists; see prof_slots.
            unsafe { prof_slots(v) }.fill(0);
        }
        return;
    }
    let mut sum = vec![0u64; prof.addr_of.len()];
    for v in 0..vcpus {
        // SAFETY: as above.
        let slots = unsafe { prof_slots(v) };
        for (s, n) in sum.iter_mut().zip(slots.iter()) {
            *s += n;
        }
    }
    let text = prof.record(&sum);
    let _ = prof.out.write_all(text.as_bytes());
}

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
    let kind = userdata as usize as u8;
    emit(&marker_line(kind, count));
    on_profile_marker(kind);
}

unsafe extern "C" fn on_translate(_id: PluginId, tb: *mut Tb) {
    // SAFETY: qemu hands us a block being translated; its instructions are valid for the
    // duration of this callback, which is when the API allows registering on them.
    unsafe {
        let n = qemu_plugin_tb_n_insns(tb);
        qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, INLINE_ADD_U64, counter(), n as u64);
        let mut guard = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prof) = guard.as_mut() {
            let entry = PluginU64 {
                score: PROF_SCORE.load(Ordering::Relaxed),
                offset: prof.slot(qemu_plugin_tb_vaddr(tb)) * 8,
            };
            qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, INLINE_ADD_U64, entry, n as u64);
        }
        drop(guard);
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
            Some(("profile", path)) => match File::create(path) {
                Ok(f) => *PROFILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Profile::new(f)),
                Err(e) => {
                    emit(&format!("insn-count: cannot create {path}: {e}\n"));
                    return -1;
                }
            },
            _ => {
                emit(&format!(
                    "insn-count: unknown argument {arg} (want out=FILE or profile=FILE)\n"
                ));
                return -1;
            }
        }
    }
    // SAFETY: plain API calls during install, as the API intends.
    unsafe {
        SCORE.store(qemu_plugin_scoreboard_new(8), Ordering::Relaxed);
        if PROFILE.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            PROF_SCORE.store(qemu_plugin_scoreboard_new(SLOTS * 8), Ordering::Relaxed);
        }
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

    #[test]
    fn profile_slots_are_stable_and_records_skip_zeros() {
        let mut p = Profile::new(tempfile());
        assert_eq!(p.slot(0xffff_1000), 1);
        assert_eq!(p.slot(0x4000), 2);
        assert_eq!(
            p.slot(0xffff_1000),
            1,
            "a retranslated block keeps its slot"
        );
        assert_eq!(p.record(&[0, 5, 0]), "prof\nffff1000 5\nend\n");
        assert_eq!(p.record(&[3, 0, 7]), "prof\n0 3\n4000 7\nend\n");
    }

    fn tempfile() -> File {
        let path = std::env::temp_dir().join(format!("insn-prof-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }
}
