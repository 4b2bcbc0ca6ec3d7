//! hostile-ioctl: malformed, hostile and racing calls on `/dev/blk-interposer`.
//!
//! ```text
//! hostile-ioctl --dev /dev/vdc --small /dev/vdd --spare /dev/vdd [--iterations N]
//! ```
//!
//! `--dev` is the device to interpose (nothing may be interposed when this
//! starts), `--small` a device smaller than it, `--spare` one for the
//! LOWER_CREATE/LOWER_REMOVE race.  The program
//!
//! 1. makes single calls that must each be refused with one exact errno (or
//!    succeed with exact output): bad ioctl numbers and sizes, versions,
//!    header sizes and offsets, bad pointers, device numbers out of range,
//!    devices that do not exist, STATUS/LIST with short buffers, and every
//!    command in a state where it makes no sense; it prints a table `call |
//!    expected | got` and counts mismatches;
//! 2. runs races from several threads, each with its own file descriptor:
//!    ATTACH against DETACH while a thread writes and reads back the device;
//!    LOWER_CREATE against LOWER_REMOVE, STATUS, LIST and opens of the
//!    lower device; ATTACH against the creation and removal of the dm device
//!    it names.  Each call may only end in the errnos that its state allows,
//!    and afterwards the module's list must be consistent and empty;
//! 3. exits 0 only if every check held.
//!
//! The scenario then checks that `rmmod` works, which proves that no
//! reference leaked.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use blk_interposer::abi::{
    self, Cmd, IoctlHeader, RawStatus, RawSwitch, BUFFER_FULL, HEADER_SIZE, STATUS_SIZE,
};
use blk_interposer::{DevNo, DeviceMapper, Dm, Table};
use nix::errno::Errno;
use nix::libc;
use vm_tools::{devno_of, AlignedBuf, Rng};

const CTL: &str = "/dev/blk-interposer";
/// A block major that no driver in the VM registers (local/experimental range).
const NO_SUCH_MAJOR: u32 = 240;

type Req = libc::c_ulong;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("hostile-ioctl: {msg}");
    std::process::exit(2)
}

fn open_ctl() -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(CTL)
        .unwrap_or_else(|e| die(format!("open {CTL}: {e}")))
}

/// One raw ioctl; `Ok(rc)` or the errno.
fn raw_ioctl(fd: RawFd, req: Req, arg: *mut libc::c_void) -> Result<i32, Errno> {
    // SAFETY: the kernel validates `arg`; the callers pass either buffers
    // they own or addresses chosen to be invalid, which the kernel must refuse.
    let rc = unsafe { libc::ioctl(fd, req as _, arg) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

fn req(cmd: Cmd) -> Req {
    cmd.request() as Req
}

/// A header for `dev` (and `interposer`), payload of `payload` bytes.
fn header(dev: DevNo, interposer: DevNo, payload: usize) -> IoctlHeader {
    IoctlHeader {
        version: [abi::VERSION_MAJOR, abi::VERSION_MINOR, abi::VERSION_PATCH],
        data_size: (HEADER_SIZE + payload) as u32,
        data_start: HEADER_SIZE as u32,
        dev: dev.into(),
        interposer: interposer.into(),
        ..Default::default()
    }
}

/// A header plus payload in 8-aligned storage.
struct Buf {
    words: Vec<u64>,
}

impl Buf {
    fn new(hdr: IoctlHeader, payload: usize) -> Buf {
        let mut b = Buf {
            words: vec![0u64; (HEADER_SIZE + payload).div_ceil(8)],
        };
        b.set(hdr);
        b
    }

    fn ptr(&mut self) -> *mut libc::c_void {
        self.words.as_mut_ptr().cast()
    }

    fn set(&mut self, hdr: IoctlHeader) {
        // SAFETY: at least HEADER_SIZE bytes, 8-aligned.
        unsafe { self.words.as_mut_ptr().cast::<IoctlHeader>().write(hdr) }
    }

    fn hdr(&self) -> IoctlHeader {
        // SAFETY: as above.
        unsafe { self.words.as_ptr().cast::<IoctlHeader>().read() }
    }

    fn status(&self, i: usize) -> RawStatus {
        // SAFETY: callers only read entries the kernel said it wrote and
        // that fit in the buffer (checked by `entries`).
        unsafe {
            self.words
                .as_ptr()
                .cast::<u8>()
                .add(HEADER_SIZE + i * STATUS_SIZE)
                .cast::<RawStatus>()
                .read_unaligned()
        }
    }

    fn room(&self) -> usize {
        (self.words.len() * 8 - HEADER_SIZE) / STATUS_SIZE
    }
}

/// One call on `fd`: returns the errno (or 0) and the buffer the kernel wrote.
fn call(fd: RawFd, cmd: Cmd, hdr: IoctlHeader, payload: usize) -> (i32, Buf) {
    let mut b = Buf::new(hdr, payload);
    let p = b.ptr();
    let e = match raw_ioctl(fd, req(cmd), p) {
        Ok(_) => 0,
        Err(e) => e as i32,
    };
    (e, b)
}

/// SWITCH with `entries` in a payload of `room` entries and `count` in the
/// header (which may lie about the entries); returns the errno or 0.
fn switch_call(fd: RawFd, entries: &[(DevNo, DevNo)], count: u32, room: usize) -> i32 {
    let size = std::mem::size_of::<RawSwitch>();
    let none = DevNo::default();
    let hdr = IoctlHeader {
        count,
        ..header(none, none, room * size)
    };
    let mut b = Buf::new(hdr, room.max(entries.len()) * size);
    let p = b.ptr().cast::<u8>();
    for (i, (dev, to)) in entries.iter().enumerate() {
        let raw = RawSwitch {
            dev: (*dev).into(),
            interposer: (*to).into(),
        };
        // SAFETY: the buffer holds max(room, entries) entries after the header.
        unsafe {
            p.add(HEADER_SIZE + i * size)
                .cast::<RawSwitch>()
                .write_unaligned(raw)
        };
    }
    match raw_ioctl(fd, req(Cmd::Switch), b.ptr()) {
        Ok(_) => 0,
        Err(e) => e as i32,
    }
}

/// Two pages, the second one inaccessible: for buffers that run off the end.
struct GuardPages {
    base: *mut u8,
    page: usize,
}

impl GuardPages {
    fn new() -> GuardPages {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a fresh anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            die("mmap failed");
        }
        let base = base.cast::<u8>();
        // SAFETY: the second page of our own mapping.
        if unsafe { libc::mprotect(base.add(page).cast(), page, libc::PROT_NONE) } != 0 {
            die("mprotect failed");
        }
        GuardPages { base, page }
    }

    /// A header that ends `tail` bytes before the guard page (negative: runs into it).
    fn header_at_end(&self, hdr: IoctlHeader, overlap: usize) -> *mut libc::c_void {
        // SAFETY: the header written lies within the first page.
        unsafe {
            let at = self.base.add(self.page - HEADER_SIZE);
            at.cast::<IoctlHeader>().write_unaligned(hdr);
            at.add(overlap).cast()
        }
    }

    /// Make the first page read-only after writing `hdr` at its start.
    fn read_only_header(&self, hdr: IoctlHeader) -> *mut libc::c_void {
        // SAFETY: our own first page.
        unsafe {
            libc::mprotect(
                self.base.cast(),
                self.page,
                libc::PROT_READ | libc::PROT_WRITE,
            );
            self.base.cast::<IoctlHeader>().write(hdr);
            libc::mprotect(self.base.cast(), self.page, libc::PROT_READ);
            self.base.cast()
        }
    }

    fn writable(&self) {
        // SAFETY: our own first page.
        unsafe {
            libc::mprotect(
                self.base.cast(),
                self.page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
    }
}

/// The table of single calls.
struct Report {
    rows: usize,
    bad: usize,
}

fn name(e: i32) -> String {
    if e == 0 {
        "0".into()
    } else {
        format!("{:?}", Errno::from_raw(e))
    }
}

impl Report {
    fn row(&mut self, what: &str, expected: &[i32], got: i32, extra: Result<(), String>) {
        self.rows += 1;
        let exp = expected
            .iter()
            .map(|&e| name(e))
            .collect::<Vec<_>>()
            .join("|");
        let mut ok = expected.contains(&got);
        let mut note = String::new();
        if let Err(why) = extra {
            ok = false;
            note = format!("  ({why})");
        }
        if !ok {
            self.bad += 1;
        }
        println!(
            "{:>3} {:<62} {:<14} {:<10} {}{note}",
            self.rows,
            what,
            exp,
            name(got),
            if ok { "ok" } else { "MISMATCH" }
        );
    }

    fn check(&mut self, what: &str, expected: i32, got: i32) {
        self.row(what, &[expected], got, Ok(()));
    }
}

fn ensure(cond: bool, why: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why.into())
    }
}

fn version_back(b: &Buf) -> Result<(), String> {
    let v = b.hdr().version;
    ensure(
        v == [abi::VERSION_MAJOR, abi::VERSION_MINOR, abi::VERSION_PATCH],
        format!("the kernel wrote back version {v:?}"),
    )
}

/// Every lower device the module lists, read with a buffer big enough.
fn list(fd: RawFd) -> Result<Vec<RawStatus>, Errno> {
    let (e, b) = call(
        fd,
        Cmd::List,
        header(DevNo::default(), DevNo::default(), 64 * STATUS_SIZE),
        64 * STATUS_SIZE,
    );
    if e != 0 {
        return Err(Errno::from_raw(e));
    }
    let h = b.hdr();
    if h.flags & BUFFER_FULL != 0 || h.count as usize > b.room() {
        die(format!("LIST of {} entries does not fit 64", h.count));
    }
    Ok((0..h.count as usize).map(|i| b.status(i)).collect())
}

fn linear_over(lower: DevNo, sectors: u64) -> Table {
    format!("0 {sectors} linear {lower} 0")
        .parse()
        .unwrap_or_else(|e| die(format!("table: {e}")))
}

fn sectors_of(path: &Path) -> u64 {
    let f = std::fs::File::open(path).unwrap_or_else(|e| die(format!("{}: {e}", path.display())));
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), 0x8008_1272u32 as _, &mut size) };
    if rc < 0 {
        die(format!(
            "BLKGETSIZE64 {}: {}",
            path.display(),
            Errno::last()
        ));
    }
    size / 512
}

struct Devs {
    dev: DevNo,
    dev_path: PathBuf,
    dev_sectors: u64,
    small: DevNo,
    spare: DevNo,
    spare_name: String,
}

#[allow(clippy::too_many_lines)]
fn single_calls(fd: RawFd, d: &Devs, rep: &mut Report) {
    let none = DevNo::default();
    let dev = d.dev;
    let nosuch = DevNo::new(NO_SUCH_MAJOR, 77);
    let h0 = header(none, none, 0);

    println!("--- ioctl numbers, versions, header fields ---");
    let (e, b) = call(fd, Cmd::Version, h0, 0);
    rep.row("VERSION, well-formed", &[0], e, version_back(&b));
    let hdr_size = HEADER_SIZE as u32;
    for (what, magic, nr, size, expect) in [
        (
            "magic 0xB8 instead of 0xB7",
            0xB8u8,
            0u8,
            hdr_size,
            libc::ENOTTY,
        ),
        ("magic 0x00", 0x00, 0, hdr_size, libc::ENOTTY),
        ("magic 0xFD (dm-ioctl's)", 0xFD, 0, hdr_size, libc::ENOTTY),
        (
            "unknown command nr 8 (first unused)",
            0xB7,
            8,
            hdr_size,
            libc::ENOTTY,
        ),
        ("unknown command nr 128", 0xB7, 128, hdr_size, libc::ENOTTY),
        ("unknown command nr 255", 0xB7, 255, hdr_size, libc::ENOTTY),
        (
            "_IOWR size 80 (header minus 8)",
            0xB7,
            0,
            hdr_size - 8,
            libc::EINVAL,
        ),
        (
            "_IOWR size 96 (header plus 8)",
            0xB7,
            0,
            hdr_size + 8,
            libc::EINVAL,
        ),
        ("_IOWR size 0", 0xB7, 0, 0, libc::EINVAL),
    ] {
        let r = nix::request_code_readwrite!(magic, nr, size) as Req;
        let mut b = Buf::new(h0, 0);
        let p = b.ptr();
        let got = raw_ioctl(fd, r, p).map_or_else(|e| e as i32, |_| 0);
        rep.check(what, expect, got);
    }
    for (what, r) in [
        (
            "_IOR instead of _IOWR",
            nix::request_code_read!(0xB7, 0, HEADER_SIZE) as Req,
        ),
        (
            "_IOW instead of _IOWR",
            nix::request_code_write!(0xB7, 0, HEADER_SIZE) as Req,
        ),
        (
            "_IO (no size, no direction)",
            nix::request_code_none!(0xB7, 0) as Req,
        ),
        (
            "LIST number with _IOR",
            nix::request_code_read!(0xB7, 6, HEADER_SIZE) as Req,
        ),
    ] {
        let mut b = Buf::new(h0, 0);
        let p = b.ptr();
        let got = raw_ioctl(fd, r, p).map_or_else(|e| e as i32, |_| 0);
        rep.check(what, libc::EINVAL, got);
    }
    for (what, v) in [
        ("version major 0", [0, 0, 0]),
        ("version major 2", [2, 0, 0]),
        ("version major u32::MAX", [u32::MAX, 0, 0]),
    ] {
        let (e, b) = call(fd, Cmd::Version, IoctlHeader { version: v, ..h0 }, 0);
        rep.row(what, &[libc::EINVAL], e, version_back(&b));
    }
    let (e, b) = call(
        fd,
        Cmd::Version,
        IoctlHeader {
            version: [1, 999, 999],
            ..h0
        },
        0,
    );
    rep.row(
        "version 1.999.999 (newer minor: compatible)",
        &[0],
        e,
        version_back(&b),
    );
    for (what, size, start) in [
        ("data_size 0", 0u32, hdr_size),
        (
            "data_size 87 (smaller than the header)",
            hdr_size - 1,
            hdr_size,
        ),
        ("data_start 0 (payload over the header)", hdr_size, 0),
        ("data_start 87", hdr_size, hdr_size - 1),
        ("data_start beyond data_size", hdr_size, hdr_size + 1),
        ("data_start u32::MAX, data_size 88", hdr_size, u32::MAX),
    ] {
        for cmd in [Cmd::Version, Cmd::List] {
            let (e, _) = call(
                fd,
                cmd,
                IoctlHeader {
                    data_size: size,
                    data_start: start,
                    ..h0
                },
                0,
            );
            rep.check(&format!("{}: {what}", cmd.c_name()), libc::EINVAL, e);
        }
    }

    println!("--- bad pointers ---");
    let guard = GuardPages::new();
    for (what, addr) in [
        ("NULL", 0usize),
        ("address 1", 1),
        ("address 0xfff (first page)", 0xfff),
        ("kernel text 0xffffffff81000000", 0xffff_ffff_8100_0000),
        (
            "kernel direct map 0xffff888000000000",
            0xffff_8880_0000_0000,
        ),
        ("non-canonical 0x8000000000000000", 0x8000_0000_0000_0000),
        ("the last byte of the address space", usize::MAX),
    ] {
        for cmd in [Cmd::Version, Cmd::List, Cmd::Attach] {
            let got =
                raw_ioctl(fd, req(cmd), addr as *mut libc::c_void).map_or_else(|e| e as i32, |_| 0);
            rep.check(&format!("{}: arg {what}", cmd.c_name()), libc::EFAULT, got);
        }
    }
    let p = guard.header_at_end(h0, 40);
    let got = raw_ioctl(fd, req(Cmd::Version), p).map_or_else(|e| e as i32, |_| 0);
    rep.check(
        "VERSION: header runs into an unmapped page",
        libc::EFAULT,
        got,
    );
    let p = guard.read_only_header(h0);
    let got = raw_ioctl(fd, req(Cmd::Version), p).map_or_else(|e| e as i32, |_| 0);
    rep.check("VERSION: header in a read-only page", libc::EFAULT, got);
    guard.writable();

    println!("--- device numbers ---");
    for (what, d) in [
        ("0:0", none),
        ("major 4096 (beyond 12 bits)", DevNo::new(4096, 0)),
        ("minor 1<<20 (beyond 20 bits)", DevNo::new(8, 1 << 20)),
        ("u32::MAX:u32::MAX", DevNo::new(u32::MAX, u32::MAX)),
    ] {
        for cmd in [
            Cmd::LowerCreate,
            Cmd::LowerRemove,
            Cmd::Attach,
            Cmd::Detach,
            Cmd::Status,
        ] {
            let (e, _) = call(fd, cmd, header(d, dev, STATUS_SIZE), STATUS_SIZE);
            rep.check(&format!("{}: dev {what}", cmd.c_name()), libc::ENODEV, e);
        }
    }
    let (e, _) = call(fd, Cmd::LowerCreate, header(nosuch, none, 0), 0);
    rep.check("LOWER_CREATE: dev 240:77 does not exist", libc::ENXIO, e);

    println!("--- commands before the lower device exists ---");
    for cmd in [Cmd::LowerRemove, Cmd::Attach, Cmd::Detach, Cmd::Status] {
        let (e, _) = call(fd, cmd, header(dev, d.small, STATUS_SIZE), STATUS_SIZE);
        rep.check(
            &format!(
                "{}: {} has no lower device",
                cmd.c_name(),
                d.dev_path.display()
            ),
            libc::ENOENT,
            e,
        );
    }
    let (e, b) = call(fd, Cmd::List, header(none, none, 0), 0);
    let h = b.hdr();
    rep.row(
        "LIST: nothing registered, no payload",
        &[0],
        e,
        ensure(
            h.count == 0 && h.flags & BUFFER_FULL == 0,
            format!("count {} flags {:#x}", h.count, h.flags),
        ),
    );

    println!("--- the lower device ---");
    let (e, b) = call(fd, Cmd::LowerCreate, header(dev, none, 0), 0);
    let lower: DevNo = b.hdr().lower.into();
    let lname = abi::name_from_c(&b.hdr().lower_name);
    let want_name = format!(
        "interposer/{}",
        d.dev_path.file_name().unwrap_or_default().to_string_lossy()
    );
    rep.row(
        "LOWER_CREATE",
        &[0],
        e,
        ensure(
            lname == want_name && !lower.is_none(),
            format!("lower {lower} name {lname:?}"),
        ),
    );
    if e != 0 {
        die("cannot go on without a lower device");
    }
    let (e, _) = call(fd, Cmd::LowerCreate, header(dev, none, 0), 0);
    rep.check("LOWER_CREATE again", libc::EEXIST, e);
    let (e, _) = call(fd, Cmd::LowerCreate, header(lower, none, 0), 0);
    rep.check("LOWER_CREATE of the lower device itself", libc::EINVAL, e);
    let (e, _) = call(fd, Cmd::LowerCreate, header(dev, none, 0), 0);
    rep.check("LOWER_CREATE again (nothing changed)", libc::EEXIST, e);

    println!("--- STATUS and LIST buffers ---");
    for (what, payload) in [
        ("no payload", 0usize),
        ("payload 1 byte short", STATUS_SIZE - 1),
    ] {
        let (e, _) = call(fd, Cmd::Status, header(dev, none, payload), payload);
        rep.check(&format!("STATUS: {what}"), libc::EINVAL, e);
    }
    let (e, b) = call(fd, Cmd::Status, header(dev, none, STATUS_SIZE), STATUS_SIZE);
    let st = b.status(0);
    rep.row(
        "STATUS: exact payload",
        &[0],
        e,
        ensure(
            DevNo::from(st.dev) == dev
                && DevNo::from(st.lower) == lower
                && st.state == 0
                && st.sectors == d.dev_sectors
                && DevNo::from(st.interposer).is_none(),
            format!("{st:?}"),
        ),
    );
    for (cmd, target, what) in [(Cmd::Status, dev, "STATUS"), (Cmd::List, none, "LIST")] {
        let p = guard.header_at_end(
            IoctlHeader {
                data_size: u32::MAX,
                ..header(target, none, 0)
            },
            0,
        );
        let got = raw_ioctl(fd, req(cmd), p).map_or_else(|e| e as i32, |_| 0);
        rep.check(
            &format!("{what}: data_size 4 GiB, payload in an unmapped page"),
            libc::EFAULT,
            got,
        );
    }
    let (e, b) = call(
        fd,
        Cmd::List,
        IoctlHeader {
            data_size: u32::MAX,
            data_start: u32::MAX,
            ..h0
        },
        0,
    );
    let h = b.hdr();
    rep.row(
        "LIST: data_start = data_size = u32::MAX (no room)",
        &[0],
        e,
        ensure(
            h.count == 1 && h.flags & BUFFER_FULL != 0,
            format!("count {} flags {:#x}", h.count, h.flags),
        ),
    );
    for (what, payload) in [
        ("no payload", 0usize),
        ("room for 0.99 entries", STATUS_SIZE - 1),
    ] {
        let (e, b) = call(fd, Cmd::List, header(none, none, payload), payload);
        let h = b.hdr();
        rep.row(
            &format!("LIST: {what}: BUFFER_FULL, count 1"),
            &[0],
            e,
            ensure(
                h.count == 1 && h.flags & BUFFER_FULL != 0,
                format!("count {} flags {:#x}", h.count, h.flags),
            ),
        );
    }
    let garbage = IoctlHeader {
        flags: BUFFER_FULL | 0xF0,
        count: 12345,
        ..header(none, none, STATUS_SIZE)
    };
    let (e, b) = call(fd, Cmd::List, garbage, STATUS_SIZE);
    let h = b.hdr();
    let st = b.status(0);
    rep.row(
        "LIST: one entry's room, garbage flags/count in",
        &[0],
        e,
        ensure(
            h.count == 1 && h.flags & BUFFER_FULL == 0 && DevNo::from(st.dev) == dev,
            format!("count {} flags {:#x} dev {:?}", h.count, h.flags, st.dev),
        ),
    );

    println!("--- ATTACH targets ---");
    for (what, target, expect) in [
        ("interposer 0:0", none, libc::ENODEV),
        ("interposer major 4096", DevNo::new(4096, 1), libc::ENODEV),
        ("interposer 240:77 does not exist", nosuch, libc::ENXIO),
        ("interposer = the device itself", dev, libc::ELOOP),
        ("interposer = its own lower device", lower, libc::ELOOP),
        ("interposer smaller than the device", d.small, libc::ENOSPC),
    ] {
        let (e, _) = call(fd, Cmd::Attach, header(dev, target, 0), 0);
        rep.check(&format!("ATTACH: {what}"), expect, e);
    }
    let (e, _) = call(fd, Cmd::Detach, header(dev, none, 0), 0);
    rep.check("DETACH: not attached", libc::ENOENT, e);

    println!("--- SWITCH entries ---");
    let max = abi::SWITCH_MAX as u32;
    for (what, entries, count, room, expect) in [
        ("count 0", vec![], 0u32, 1usize, libc::EINVAL),
        ("count SWITCH_MAX + 1", vec![], max + 1, 1, libc::EINVAL),
        ("count u32::MAX", vec![], u32::MAX, 1, libc::EINVAL),
        (
            "count 2, room for 1",
            vec![(dev, d.small)],
            2,
            1,
            libc::EINVAL,
        ),
        ("device 0:0", vec![(none, d.small)], 1, 1, libc::ENODEV),
        (
            "device major 4096",
            vec![(DevNo::new(4096, 1), none)],
            1,
            1,
            libc::ENODEV,
        ),
        (
            "device without a lower device",
            vec![(d.spare, d.small)],
            1,
            1,
            libc::ENOENT,
        ),
        (
            "device twice",
            vec![(dev, none), (dev, d.small)],
            2,
            2,
            libc::EINVAL,
        ),
        (
            "detach of an idle device",
            vec![(dev, none)],
            1,
            1,
            libc::ENOENT,
        ),
        (
            "interposer 240:77 does not exist",
            vec![(dev, nosuch)],
            1,
            1,
            libc::ENXIO,
        ),
        (
            "interposer = the device itself",
            vec![(dev, dev)],
            1,
            1,
            libc::ELOOP,
        ),
        (
            "interposer = its own lower device",
            vec![(dev, lower)],
            1,
            1,
            libc::ELOOP,
        ),
        (
            "interposer smaller than the device",
            vec![(dev, d.small)],
            1,
            1,
            libc::ENOSPC,
        ),
    ] {
        let e = switch_call(fd, &entries, count, room);
        rep.check(&format!("SWITCH: {what}"), expect, e);
    }
    let p = guard.header_at_end(
        IoctlHeader {
            count: 1,
            ..header(dev, none, std::mem::size_of::<RawSwitch>())
        },
        0,
    );
    let got = raw_ioctl(fd, req(Cmd::Switch), p).map_or_else(|e| e as i32, |_| 0);
    rep.check("SWITCH: entries in an unmapped page", libc::EFAULT, got);
    let (e, b) = call(fd, Cmd::Status, header(dev, none, STATUS_SIZE), STATUS_SIZE);
    rep.row(
        "STATUS: still idle after the refused SWITCHes",
        &[0],
        e,
        ensure(b.status(0).state == 0, format!("{:?}", b.status(0))),
    );

    println!("--- while attached ---");
    let dm = Dm::open();
    let dm_name = "hostile-lin";
    let dmdev = dm
        .create(dm_name, "HOSTILE-hostile-lin")
        .unwrap_or_else(|e| die(format!("dm create: {e}")));
    dm.load(dm_name, &linear_over(lower, d.dev_sectors))
        .and_then(|()| dm.resume(dm_name))
        .unwrap_or_else(|e| die(format!("dm load/resume: {e}")));
    let (e, _) = call(fd, Cmd::LowerRemove, header(dev, none, 0), 0);
    rep.check(
        "LOWER_REMOVE: a dm table holds the lower device",
        libc::EBUSY,
        e,
    );
    let (e, _) = call(fd, Cmd::Attach, header(dev, dmdev, 0), 0);
    rep.check("ATTACH to dm-linear over the lower device", 0, e);
    let (e, _) = call(fd, Cmd::Attach, header(dev, dmdev, 0), 0);
    rep.check("ATTACH again", libc::EEXIST, e);
    let (e, _) = call(fd, Cmd::LowerRemove, header(dev, none, 0), 0);
    rep.check("LOWER_REMOVE while attached", libc::EBUSY, e);
    let got = dm
        .remove(dm_name)
        .err()
        .and_then(|e| e.errno())
        .map_or(0, |e| e as i32);
    rep.check("dm remove of the attached interposer", libc::EBUSY, got);
    let (e, b) = call(fd, Cmd::Status, header(dev, none, STATUS_SIZE), STATUS_SIZE);
    let st = b.status(0);
    rep.row(
        "STATUS: attached, interposer = the dm device",
        &[0],
        e,
        ensure(
            st.state & abi::ST_ATTACHED != 0 && DevNo::from(st.interposer) == dmdev,
            format!("{st:?}"),
        ),
    );
    // A loop through the registry: the dm device interposed back onto the device.
    let (e, b) = call(fd, Cmd::LowerCreate, header(dmdev, none, 0), 0);
    rep.check("LOWER_CREATE for the dm interposer", 0, e);
    let dm_lower: DevNo = b.hdr().lower.into();
    let (e, _) = call(fd, Cmd::Attach, header(dmdev, dev, 0), 0);
    rep.check(
        "ATTACH dm -> device that it interposes (a loop)",
        libc::ELOOP,
        e,
    );
    let (e, _) = call(fd, Cmd::Attach, header(dmdev, dm_lower, 0), 0);
    rep.check("ATTACH dm -> its own lower device", libc::ELOOP, e);
    let (e, _) = call(fd, Cmd::LowerRemove, header(dmdev, none, 0), 0);
    rep.check("LOWER_REMOVE for the dm interposer", 0, e);
    // Non-root: a child drops to uid 65534 and uses the inherited fd.
    let got = as_nobody(fd, dev);
    rep.row(
        "DETACH by uid 65534 (no CAP_SYS_ADMIN)",
        &[libc::EPERM],
        got,
        Ok(()),
    );
    let (e, _) = call(fd, Cmd::Detach, header(dev, none, 0), 0);
    rep.check("DETACH", 0, e);
    let (e, _) = call(fd, Cmd::Detach, header(dev, none, 0), 0);
    rep.check("DETACH again", libc::ENOENT, e);
    let (e, _) = call(fd, Cmd::LowerRemove, header(dev, none, 0), 0);
    rep.check(
        "LOWER_REMOVE: detached but the dm table still holds it",
        libc::EBUSY,
        e,
    );
    dm.remove(dm_name)
        .unwrap_or_else(|e| die(format!("dm remove: {e}")));
    let (e, _) = call(fd, Cmd::LowerRemove, header(dev, none, 0), 0);
    rep.check("LOWER_REMOVE", 0, e);
    let (e, _) = call(fd, Cmd::LowerRemove, header(dev, none, 0), 0);
    rep.check("LOWER_REMOVE again", libc::ENOENT, e);

    // LOWER_CREATE whose reply cannot be written back: the caller sees EFAULT.
    let p = guard.read_only_header(header(d.spare, none, 0));
    let got = raw_ioctl(fd, req(Cmd::LowerCreate), p).map_or_else(|e| e as i32, |_| 0);
    guard.writable();
    let left = list(fd).map(|l| l.iter().any(|s| DevNo::from(s.dev) == d.spare));
    rep.check(
        "LOWER_CREATE: header in a read-only page",
        libc::EFAULT,
        got,
    );
    if left == Ok(true) {
        println!(
            "    note: after that EFAULT the lower device of {} exists anyway (the reply was lost, \
             not the command); removing it",
            d.spare_name
        );
        let (e, _) = call(fd, Cmd::LowerRemove, header(d.spare, none, 0), 0);
        rep.check(
            "LOWER_REMOVE of the device created by the EFAULT call",
            0,
            e,
        );
    }
    match list(fd) {
        Ok(l) => rep.row(
            "LIST: empty after all of the above",
            &[0],
            0,
            ensure(l.is_empty(), format!("{} entries left", l.len())),
        ),
        Err(e) => rep.check("LIST", 0, e as i32),
    }
}

/// DETACH from a forked child that dropped root; returns its errno.
fn as_nobody(fd: RawFd, dev: DevNo) -> i32 {
    // SAFETY: the child only makes async-signal-safe calls before _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die("fork failed");
    }
    if pid == 0 {
        let mut b = Buf::new(header(dev, DevNo::default(), 0), 0);
        let p = b.ptr();
        // SAFETY: plain syscalls in the child.
        unsafe {
            if libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                libc::_exit(255);
            }
            let rc = libc::ioctl(fd, req(Cmd::Detach) as _, p);
            let e = if rc < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(e);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// Counts of outcomes of one kind of call in a race.
#[derive(Default)]
struct Tally(Mutex<Vec<(i32, u64)>>);

impl Tally {
    fn add(&self, e: i32) {
        let mut v = self.0.lock().expect("lock");
        match v.iter_mut().find(|(k, _)| *k == e) {
            Some((_, n)) => *n += 1,
            None => v.push((e, 1)),
        }
    }

    /// Prints the counts; false if any outcome is not in `allowed`.
    fn report(&self, what: &str, allowed: &[i32]) -> bool {
        let mut v = self.0.lock().expect("lock").clone();
        v.sort_unstable();
        let text: Vec<_> = v.iter().map(|(e, n)| format!("{}={n}", name(*e))).collect();
        let bad: Vec<_> = v.iter().filter(|(e, _)| !allowed.contains(e)).collect();
        println!(
            "    {what:<34} {}{}",
            text.join(" "),
            if bad.is_empty() {
                String::new()
            } else {
                "  <- NOT ALLOWED".into()
            }
        );
        bad.is_empty()
    }

    fn count(&self, e: i32) -> u64 {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .find(|(k, _)| *k == e)
            .map_or(0, |(_, n)| *n)
    }
}

fn errno_of_call(fd: RawFd, cmd: Cmd, dev: DevNo, target: DevNo) -> i32 {
    call(fd, cmd, header(dev, target, STATUS_SIZE), STATUS_SIZE).0
}

/// ATTACH against DETACH, each from its own thread and fd, while a third
/// thread writes 4 KiB blocks to the device with O_DIRECT and reads each back.
fn race_attach_detach(d: &Devs, iterations: u64) -> bool {
    println!(
        "--- race: ATTACH vs DETACH x{iterations}, with O_DIRECT write+read-back on {} ---",
        d.dev_path.display()
    );
    let fd = open_ctl();
    let none = DevNo::default();
    let (e, b) = call(fd.as_raw_fd(), Cmd::LowerCreate, header(d.dev, none, 0), 0);
    if e != 0 {
        die(format!("LOWER_CREATE: {}", name(e)));
    }
    let lower: DevNo = b.hdr().lower.into();
    let dm = Dm::open();
    let dmdev = dm
        .create("race-ad", "HOSTILE-race-ad")
        .unwrap_or_else(|e| die(format!("dm create: {e}")));
    dm.load("race-ad", &linear_over(lower, d.dev_sectors))
        .and_then(|()| dm.resume("race-ad"))
        .unwrap_or_else(|e| die(format!("dm load: {e}")));

    let attach = Arc::new(Tally::default());
    let detach = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let io_errors = Arc::new(AtomicU64::new(0));
    let io_done = Arc::new(AtomicU64::new(0));
    let dev = d.dev;
    // A barrier per iteration: both calls are issued together every time,
    // whatever the scheduler would do with two free-running loops.
    let step = Arc::new(Barrier::new(2));
    let a = {
        let (t, step) = (attach.clone(), step.clone());
        std::thread::spawn(move || {
            let f = open_ctl();
            for _ in 0..iterations {
                step.wait();
                t.add(errno_of_call(f.as_raw_fd(), Cmd::Attach, dev, dmdev));
            }
        })
    };
    let b = {
        let (t, step) = (detach.clone(), step.clone());
        std::thread::spawn(move || {
            let f = open_ctl();
            for i in 0..iterations {
                step.wait();
                if i % 2 == 1 {
                    std::thread::yield_now();
                }
                t.add(errno_of_call(f.as_raw_fd(), Cmd::Detach, dev, none));
            }
        })
    };
    let io = {
        let (stop, errs, done) = (stop.clone(), io_errors.clone(), io_done.clone());
        let path = d.dev_path.clone();
        let blocks = (d.dev_sectors / 8).min(8192);
        std::thread::spawn(move || {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .unwrap_or_else(|e| die(format!("{}: {e}", path.display())));
            let mut rng = Rng::new(42);
            let mut w = AlignedBuf::new(4096, 4096);
            let mut r = AlignedBuf::new(4096, 4096);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let blk = rng.below(blocks);
                for (i, c) in w.as_mut_slice().chunks_mut(8).enumerate() {
                    c.copy_from_slice(&(n ^ (blk << 32) ^ i as u64).to_le_bytes());
                }
                let ok = f.write_all_at(w.as_slice(), blk * 4096).is_ok()
                    && f.read_exact_at(r.as_mut_slice(), blk * 4096).is_ok()
                    && r.as_slice() == w.as_slice();
                if !ok {
                    errs.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    a.join().expect("attach thread");
    b.join().expect("detach thread");
    stop.store(true, Ordering::Relaxed);
    io.join().expect("io thread");

    let mut ok = attach.report("ATTACH", &[0, libc::EEXIST]);
    ok &= detach.report("DETACH", &[0, libc::ENOENT]);
    let attached = attach.count(0) as i64 - detach.count(0) as i64;
    let (e, sb) = call(
        fd.as_raw_fd(),
        Cmd::Status,
        header(d.dev, none, STATUS_SIZE),
        STATUS_SIZE,
    );
    let st = sb.status(0);
    let says = st.state & abi::ST_ATTACHED != 0;
    println!(
        "    successful attaches - detaches = {attached}; STATUS says attached={says}, attaches counter {}, redirected {}",
        st.attaches, st.redirected
    );
    if e != 0
        || !(attached == 0 || attached == 1)
        || says != (attached == 1)
        || st.attaches != attach.count(0)
    {
        println!("    MISMATCH: the module's state does not match the calls that succeeded");
        ok = false;
    }
    println!(
        "    O_DIRECT write+read-back during the race: {} done, {} failed or differed",
        io_done.load(Ordering::Relaxed),
        io_errors.load(Ordering::Relaxed)
    );
    if io_errors.load(Ordering::Relaxed) != 0 || io_done.load(Ordering::Relaxed) == 0 {
        ok = false;
    }
    if says {
        let e = errno_of_call(fd.as_raw_fd(), Cmd::Detach, d.dev, none);
        ok &= e == 0;
    }
    if let Err(e) = dm.remove("race-ad") {
        println!("    dm remove race-ad: {e}");
        ok = false;
    }
    ok &= errno_of_call(fd.as_raw_fd(), Cmd::LowerRemove, d.dev, none) == 0;
    ok
}

/// LOWER_CREATE against LOWER_REMOVE, STATUS, LIST and opens of the node.
fn race_lower(d: &Devs, iterations: u64) -> bool {
    println!("--- race: LOWER_CREATE vs LOWER_REMOVE vs STATUS vs LIST vs open(/dev/interposer/{}) x{iterations} ---", d.spare_name);
    let none = DevNo::default();
    let spare = d.spare;
    let create = Arc::new(Tally::default());
    let remove = Arc::new(Tally::default());
    let status = Arc::new(Tally::default());
    let opens = Arc::new(Tally::default());
    let list_bad = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    let step = Arc::new(Barrier::new(2));
    for (t, cmd) in [
        (create.clone(), Cmd::LowerCreate),
        (remove.clone(), Cmd::LowerRemove),
    ] {
        let step = step.clone();
        hs.push(std::thread::spawn(move || {
            let f = open_ctl();
            for i in 0..iterations {
                step.wait();
                if (i % 3 == 1) == (cmd == Cmd::LowerCreate) {
                    std::thread::yield_now();
                }
                t.add(errno_of_call(f.as_raw_fd(), cmd, spare, none));
            }
        }));
    }
    let bg = {
        let (status, opens, list_bad, done) = (
            status.clone(),
            opens.clone(),
            list_bad.clone(),
            done.clone(),
        );
        let node = PathBuf::from(format!("/dev/{}/{}", abi::LOWER_DIR, d.spare_name));
        std::thread::spawn(move || {
            let f = open_ctl();
            while !done.load(Ordering::Relaxed) {
                status.add(errno_of_call(f.as_raw_fd(), Cmd::Status, spare, none));
                match list(f.as_raw_fd()) {
                    Ok(l) => {
                        let mine = l.iter().filter(|s| DevNo::from(s.dev) == spare).count();
                        let sane = l
                            .iter()
                            .all(|s| !DevNo::from(s.lower).is_none() && s.state == 0);
                        if mine > 1 || !sane {
                            list_bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        list_bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                match std::fs::File::open(&node) {
                    Ok(h) => {
                        opens.add(0);
                        drop(h);
                    }
                    Err(e) => opens.add(e.raw_os_error().unwrap_or(-1)),
                }
            }
        })
    };
    for h in hs {
        h.join().expect("race thread");
    }
    done.store(true, Ordering::Relaxed);
    bg.join().expect("background thread");
    let mut ok = create.report("LOWER_CREATE", &[0, libc::EEXIST]);
    ok &= remove.report("LOWER_REMOVE", &[0, libc::ENOENT, libc::EBUSY]);
    ok &= status.report("STATUS", &[0, libc::ENOENT]);
    ok &= opens.report(
        "open of the lower device node",
        &[0, libc::ENOENT, libc::ENXIO],
    );
    println!(
        "    inconsistent LIST replies: {}",
        list_bad.load(Ordering::Relaxed)
    );
    ok &= list_bad.load(Ordering::Relaxed) == 0;
    let created = create.count(0) as i64 - remove.count(0) as i64;
    let f = open_ctl();
    let exists = errno_of_call(f.as_raw_fd(), Cmd::Status, spare, none) == 0;
    println!("    successful creates - removes = {created}; the lower device exists: {exists}");
    if !(created == 0 || created == 1) || exists != (created == 1) {
        println!("    MISMATCH");
        ok = false;
    }
    if exists {
        ok &= errno_of_call(f.as_raw_fd(), Cmd::LowerRemove, spare, none) == 0;
    }
    ok
}

/// ATTACH against the creation and removal of the dm device it names.
fn race_attach_dm_remove(d: &Devs, iterations: u64) -> bool {
    println!("--- race: ATTACH vs dm create/remove of the interposer x{iterations} ---");
    let none = DevNo::default();
    let fd = open_ctl();
    let (e, b) = call(fd.as_raw_fd(), Cmd::LowerCreate, header(d.dev, none, 0), 0);
    if e != 0 {
        die(format!("LOWER_CREATE: {}", name(e)));
    }
    let lower: DevNo = b.hdr().lower.into();
    let current = Arc::new(AtomicU64::new(0));
    let attach = Arc::new(Tally::default());
    let detach = Arc::new(Tally::default());
    let dm_remove = Arc::new(Tally::default());
    let dm_failed = Arc::new(Mutex::new(None::<String>));
    let sectors = d.dev_sectors;
    // Each round: the creator makes the device (with a live table in even
    // rounds, none in odd ones), both meet at the barrier, then the creator
    // removes it while the attacher attaches to it; who gets there first
    // alternates.  Both meet again at the end of the round.
    let step = Arc::new(Barrier::new(2));
    let creator = {
        let (current, dm_remove, dm_failed, step) = (
            current.clone(),
            dm_remove.clone(),
            dm_failed.clone(),
            step.clone(),
        );
        std::thread::spawn(move || {
            let dm = Dm::open();
            let table = linear_over(lower, sectors);
            for i in 0..iterations {
                let failed = dm_failed.lock().expect("lock").is_some();
                let r = if failed {
                    Ok(())
                } else {
                    dm.create("race-rm", "HOSTILE-race-rm").and_then(|devno| {
                        current.store(devno.to_dev_t() | 1 << 63, Ordering::SeqCst);
                        if i % 2 == 0 {
                            dm.load("race-rm", &table)?;
                            dm.resume("race-rm")?;
                        }
                        Ok(())
                    })
                };
                if let Err(e) = r {
                    *dm_failed.lock().expect("lock") = Some(format!("dm create: {e}"));
                }
                step.wait();
                if i % 4 >= 2 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let t0 = Instant::now();
                while dm_failed.lock().expect("lock").is_none() {
                    match dm.remove("race-rm") {
                        Ok(()) => {
                            dm_remove.add(0);
                            break;
                        }
                        Err(e)
                            if e.errno() == Some(Errno::EBUSY)
                                && t0.elapsed() < Duration::from_secs(30) =>
                        {
                            dm_remove.add(libc::EBUSY);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => {
                            *dm_failed.lock().expect("lock") = Some(format!("dm remove: {e}"));
                        }
                    }
                }
                step.wait();
            }
        })
    };
    let dev = d.dev;
    let attacher = {
        let (current, attach, detach, step) = (
            current.clone(),
            attach.clone(),
            detach.clone(),
            step.clone(),
        );
        std::thread::spawn(move || {
            let f = open_ctl();
            for i in 0..iterations {
                step.wait();
                if i % 4 < 2 {
                    std::thread::sleep(Duration::from_micros(500 * (i % 2 + 1)));
                }
                let target = DevNo::from_dev_t(current.load(Ordering::SeqCst) & !(1 << 63));
                let e = errno_of_call(f.as_raw_fd(), Cmd::Attach, dev, target);
                attach.add(e);
                if e == 0 {
                    detach.add(errno_of_call(f.as_raw_fd(), Cmd::Detach, dev, none));
                }
                step.wait();
            }
        })
    };
    creator.join().expect("creator");
    attacher.join().expect("attacher");
    let mut ok = true;
    if let Some(why) = dm_failed.lock().expect("lock").take() {
        println!("    {why}");
        ok = false;
    }
    // ENOSPC: the device had no table yet (size 0); ENXIO/ENODEV: it was going away.
    ok &= attach.report("ATTACH", &[0, libc::ENXIO, libc::ENODEV, libc::ENOSPC]);
    ok &= detach.report("DETACH right after", &[0]);
    ok &= dm_remove.report("dm remove", &[0, libc::EBUSY]);
    if attach.count(0) == 0 {
        println!("    note: no ATTACH won the race this time");
    }
    let (e, sb) = call(
        fd.as_raw_fd(),
        Cmd::Status,
        header(d.dev, none, STATUS_SIZE),
        STATUS_SIZE,
    );
    let st = sb.status(0);
    println!(
        "    afterwards: attached={} attaches counter {}",
        st.state & abi::ST_ATTACHED != 0,
        st.attaches
    );
    ok &= e == 0 && st.state & abi::ST_ATTACHED == 0 && st.attaches == attach.count(0);
    ok &= errno_of_call(fd.as_raw_fd(), Cmd::LowerRemove, d.dev, none) == 0;
    ok
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let arg = |k: &str| {
        argv.iter()
            .position(|a| a == k)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let path = |k: &str| PathBuf::from(arg(k).unwrap_or_else(|| die(format!("{k} is required"))));
    let (dev_path, small_path, spare_path) = (path("--dev"), path("--small"), path("--spare"));
    let iterations: u64 =
        arg("--iterations").map_or(300, |v| v.parse().unwrap_or_else(|_| die("--iterations")));
    let devno = |p: &Path| devno_of(p).unwrap_or_else(|e| die(format!("{}: {e}", p.display())));
    let d = Devs {
        dev: devno(&dev_path),
        dev_sectors: sectors_of(&dev_path),
        small: devno(&small_path),
        spare: devno(&spare_path),
        spare_name: spare_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        dev_path,
    };
    if sectors_of(&small_path) >= d.dev_sectors {
        die("--small must be smaller than --dev");
    }
    let ctl = open_ctl();
    match list(ctl.as_raw_fd()) {
        Ok(l) if l.is_empty() => {}
        other => die(format!(
            "the module must start with nothing registered: {other:?}"
        )),
    }

    println!(
        "{:>3} {:<62} {:<14} {:<10} verdict",
        "#", "call", "expected", "got"
    );
    let mut rep = Report { rows: 0, bad: 0 };
    single_calls(ctl.as_raw_fd(), &d, &mut rep);
    println!(
        "hostile-ioctl: {} single calls, {} mismatches",
        rep.rows, rep.bad
    );

    let mut races_ok = true;
    races_ok &= race_attach_detach(&d, iterations);
    races_ok &= race_lower(&d, iterations);
    races_ok &= race_attach_dm_remove(&d, iterations / 3);
    let left = list(ctl.as_raw_fd()).unwrap_or_else(|e| die(format!("LIST: {e}")));
    println!(
        "hostile-ioctl: races {}; {} lower devices left registered",
        if races_ok {
            "consistent"
        } else {
            "INCONSISTENT"
        },
        left.len()
    );
    if rep.bad != 0 || !races_ok || !left.is_empty() {
        println!("hostile-ioctl: FAILED");
        std::process::exit(1);
    }
    println!("hostile-ioctl: all checks held");
    let _ = io::stdout();
}
