//! The control device `/dev/blk-interposer`: one private [`Control::do_ioctl`]
//! fills the header, retries LIST with a bigger buffer while the kernel sets
//! `BUFFER_FULL`, and maps errno into [`Error`] with the meaning each command
//! gives it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::abi::{self, Cmd, IoctlHeader, RawStatus, RawSwitch, HEADER_SIZE, STATUS_SIZE};
use crate::error::{Error, ModuleLoadCause, Result};
use crate::kernel::{Kernel, Lower, Status, Switch};
use crate::sysfs::label;
use crate::types::{DevNo, Version};

/// Default path of the control device.
pub const CONTROL_PATH: &str = "/dev/blk-interposer";

/// LIST starts with room for this many entries and doubles.
const LIST_START_ENTRIES: usize = 16;

/// An open control device.
#[derive(Debug)]
pub struct Control {
    file: File,
}

/// What one command sends besides its number.
#[derive(Clone, Copy, Debug, Default)]
struct Request {
    dev: DevNo,
    interposer: DevNo,
    /// Payload room after the header, in bytes.
    payload: usize,
    /// SWITCH: how many entries the payload holds.
    count: u32,
}

impl Control {
    /// Open `/dev/blk-interposer` read-write, close-on-exec.  When it does not
    /// exist, run `modprobe blk_interposer` once and try again.
    pub fn open() -> Result<Control> {
        let path = Path::new(CONTROL_PATH);
        match Control::open_at(path) {
            Err(Error::ModuleNotLoaded { .. }) => {
                load_module(path)?;
                Control::open_at(path)
            }
            opened => opened,
        }
    }

    /// Open the control device at another path.
    pub fn open_at(path: &Path) -> Result<Control> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => Error::ModuleNotLoaded { path: path.into() },
                _ => Error::ControlOpen {
                    path: PathBuf::from(path),
                    source,
                },
            })?;
        Ok(Control { file })
    }

    /// Run one command.  Returns the header the kernel wrote back and the
    /// payload (`data_start..data_size`).
    fn do_ioctl(&self, cmd: Cmd, req: Request) -> Result<(IoctlHeader, Vec<u8>)> {
        self.do_ioctl_with(cmd, req, &[])
    }

    /// [`Control::do_ioctl`] with `input` copied to the start of the payload.
    fn do_ioctl_with(
        &self,
        cmd: Cmd,
        req: Request,
        input: &[u8],
    ) -> Result<(IoctlHeader, Vec<u8>)> {
        let mut payload = req.payload.max(input.len());
        loop {
            let hdr = request_header(cmd, req, payload)?;
            let size = hdr.data_size as usize;
            // u64 storage: the payload holds u64 fields.
            let mut buf = vec![0u64; size.div_ceil(8)];
            let ptr = buf.as_mut_ptr().cast::<u8>();
            // SAFETY: buf is at least HEADER_SIZE bytes and 8-aligned.
            unsafe { ptr.cast::<IoctlHeader>().write(hdr) };
            // SAFETY: payload >= input.len(), so the copy stays inside buf.
            unsafe {
                ptr.add(HEADER_SIZE)
                    .copy_from_nonoverlapping(input.as_ptr(), input.len())
            };
            // SAFETY: the kernel reads and writes at most data_size bytes of buf.
            let rc = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), cmd.request(), ptr) };
            let errno = (rc < 0).then(Errno::last);
            // SAFETY: as above; the kernel wrote a header back (or left ours).
            let out = unsafe { ptr.cast::<IoctlHeader>().read() };
            if let Some(errno) = errno {
                let mut req = req;
                if cmd == Cmd::Switch {
                    // The kernel names the entry that failed in the header.
                    req.dev = out.dev.into();
                    req.interposer = out.interposer.into();
                }
                return Err(map_errno(cmd, errno, Version::from_array(out.version), req));
            }
            if out.flags & abi::BUFFER_FULL != 0 {
                payload = grown_payload(payload, out.count);
                continue;
            }
            // SAFETY: buf holds size initialised bytes.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
            return Ok((out, bytes[HEADER_SIZE..].to_vec()));
        }
    }
}

/// The header of one command with `payload` bytes of room after it.
fn request_header(cmd: Cmd, req: Request, payload: usize) -> Result<IoctlHeader> {
    let size = HEADER_SIZE.saturating_add(payload);
    let data_size = u32::try_from(size).map_err(|_| Error::BadReply {
        op: cmd.c_name(),
        what: format!("a reply of {size} bytes does not fit in data_size"),
    })?;
    Ok(IoctlHeader {
        version: Version::OURS.to_array(),
        data_size,
        data_start: HEADER_SIZE as u32,
        dev: req.dev.into(),
        interposer: req.interposer.into(),
        count: req.count,
        ..Default::default()
    })
}

/// `512-byte`: `dev`'s logical block size for messages, from sysfs.
fn block_label(dev: DevNo) -> String {
    match crate::sysfs::logical_block_size(dev) {
        Some(b) => format!("{b}-byte"),
        None => "unknown-size".to_string(),
    }
}

/// Payload room for the retry after BUFFER_FULL with `count` entries.
fn grown_payload(payload: usize, count: u32) -> usize {
    let need = (count as usize).saturating_mul(STATUS_SIZE);
    payload.max(STATUS_SIZE).saturating_mul(2).max(need)
}

/// Map errno of `cmd` to the typed error, with the meaning the kernel gives it.
fn map_errno(cmd: Cmd, errno: Errno, kernel: Version, req: Request) -> Error {
    let op = cmd.c_name();
    let dev = || label(req.dev);
    let interposer = || label(req.interposer);
    match (errno, cmd) {
        (Errno::EPERM | Errno::EACCES, _) => Error::PermissionDenied { op },
        (Errno::EINVAL, _) if kernel.major != Version::OURS.major => Error::VersionMismatch {
            kernel,
            ours: Version::OURS,
        },
        (Errno::ENOTTY, _) => Error::UnknownCommand {
            op,
            kernel,
            ours: Version::OURS,
        },
        (Errno::ENOENT, Cmd::Detach) => Error::NotAttached { dev: dev() },
        (Errno::ENOENT, Cmd::Switch) if req.interposer.is_none() => {
            Error::NotAttached { dev: dev() }
        }
        (Errno::ENOENT, Cmd::LowerRemove | Cmd::Attach | Cmd::Switch | Cmd::Status) => {
            Error::NoLower { dev: dev() }
        }
        (Errno::ENXIO | Errno::ENODEV, Cmd::Attach | Cmd::Switch) => Error::NoSuchDevice {
            op,
            dev: format!("{} or the interposer {}", dev(), interposer()),
        },
        (Errno::ENXIO | Errno::ENODEV, _) => Error::NoSuchDevice { op, dev: dev() },
        (Errno::EEXIST, Cmd::LowerCreate) => Error::LowerExists { dev: dev() },
        (Errno::EEXIST, Cmd::Attach) => Error::AlreadyAttached {
            dev: dev(),
            by: None,
        },
        (Errno::EBUSY, Cmd::LowerRemove) => Error::LowerBusy { dev: dev() },
        (Errno::EBUSY, Cmd::LowerCreate) => Error::HookBusy { dev: dev() },
        (Errno::EOPNOTSUPP, Cmd::LowerCreate) => Error::FtraceOff { dev: dev() },
        (Errno::EMEDIUMTYPE, Cmd::LowerCreate) => Error::WrongMedium { dev: dev() },
        (Errno::EMEDIUMTYPE, Cmd::Attach | Cmd::Switch) => Error::BlockSizeTooLarge {
            dev: dev(),
            interposer: interposer(),
            dev_block: block_label(req.dev),
            interposer_block: block_label(req.interposer),
        },
        (Errno::EBUSY, Cmd::Attach | Cmd::Switch) => Error::AttachBusy {
            dev: dev(),
            interposer: interposer(),
        },
        (Errno::ELOOP, _) => Error::Loop {
            dev: dev(),
            interposer: interposer(),
        },
        (Errno::ENOSPC, _) => Error::InterposerTooSmall {
            dev: dev(),
            interposer: interposer(),
        },
        (Errno::EAGAIN, _) => Error::TryAgain { op },
        _ => Error::Ioctl { op, errno },
    }
}

/// Read `count` status entries from a LIST payload.
fn parse_statuses(op: &'static str, count: u32, payload: &[u8]) -> Result<Vec<Status>> {
    let count = count as usize;
    if count.saturating_mul(STATUS_SIZE) > payload.len() {
        return Err(Error::BadReply {
            op,
            what: format!("{count} entries do not fit in {} bytes", payload.len()),
        });
    }
    Ok(payload
        .chunks_exact(STATUS_SIZE)
        .take(count)
        // SAFETY: each chunk is STATUS_SIZE bytes; RawStatus is plain old data.
        .map(|c| Status::from(&unsafe { c.as_ptr().cast::<RawStatus>().read_unaligned() }))
        .collect())
}

impl Kernel for Control {
    fn version(&self) -> Result<Version> {
        let (hdr, _) = self.do_ioctl(Cmd::Version, Request::default())?;
        Ok(Version::from_array(hdr.version))
    }

    fn lower_create(&self, dev: DevNo) -> Result<Lower> {
        let (hdr, _) = self.do_ioctl(
            Cmd::LowerCreate,
            Request {
                dev,
                ..Default::default()
            },
        )?;
        Ok(Lower {
            devno: hdr.lower.into(),
            name: abi::name_from_c(&hdr.lower_name),
        })
    }

    fn lower_remove(&self, dev: DevNo) -> Result<()> {
        self.do_ioctl(
            Cmd::LowerRemove,
            Request {
                dev,
                ..Default::default()
            },
        )
        .map(drop)
    }

    fn attach(&self, dev: DevNo, interposer: DevNo) -> Result<()> {
        self.do_ioctl(
            Cmd::Attach,
            Request {
                dev,
                interposer,
                ..Default::default()
            },
        )
        .map(drop)
    }

    fn detach(&self, dev: DevNo) -> Result<()> {
        self.do_ioctl(
            Cmd::Detach,
            Request {
                dev,
                ..Default::default()
            },
        )
        .map(drop)
    }

    fn switch(&self, moves: &[Switch]) -> Result<()> {
        if moves.is_empty() || moves.len() > abi::SWITCH_MAX {
            return Err(Error::BadRequest {
                what: format!(
                    "a switch moves 1 to {} devices, not {}",
                    abi::SWITCH_MAX,
                    moves.len()
                ),
            });
        }
        let mut input = Vec::with_capacity(moves.len() * std::mem::size_of::<RawSwitch>());
        for m in moves {
            let raw = RawSwitch {
                dev: m.dev.into(),
                interposer: m.to.unwrap_or_default().into(),
            };
            for f in [raw.dev, raw.interposer] {
                input.extend_from_slice(&f.major.to_ne_bytes());
                input.extend_from_slice(&f.minor.to_ne_bytes());
            }
        }
        let req = Request {
            dev: moves[0].dev,
            interposer: moves[0].to.unwrap_or_default(),
            payload: input.len(),
            count: moves.len() as u32,
        };
        self.do_ioctl_with(Cmd::Switch, req, &input).map(drop)
    }

    fn status(&self, dev: DevNo) -> Result<Status> {
        let req = Request {
            dev,
            payload: STATUS_SIZE,
            ..Default::default()
        };
        let (_, payload) = self.do_ioctl(Cmd::Status, req)?;
        parse_statuses("STATUS", 1, &payload)?
            .pop()
            .ok_or(Error::BadReply {
                op: "STATUS",
                what: "no entry".into(),
            })
    }

    fn list(&self) -> Result<Vec<Status>> {
        let req = Request {
            payload: LIST_START_ENTRIES * STATUS_SIZE,
            ..Default::default()
        };
        let (hdr, payload) = self.do_ioctl(Cmd::List, req)?;
        parse_statuses("LIST", hdr.count, &payload)
    }
}

/// `modprobe blk_interposer`; its failure says why, with what the kernel
/// logged about the module (a refused signature shows only there).  The
/// misc device appears in devtmpfs while the module initialises.
fn load_module(path: &Path) -> Result<()> {
    let out = match std::process::Command::new("modprobe")
        .arg(MODULE)
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => out,
        Err(e) => {
            return Err(Error::ModuleLoad {
                path: path.into(),
                detail: format!("cannot run modprobe: {e}"),
                cause: ModuleLoadCause::NoModprobe,
            })
        }
    };
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let log = kernel_log_about_modules();
    let detail = match (said.is_empty(), log.last()) {
        (true, Some(line)) => format!("it exited with {}; the kernel says: {line}", out.status),
        (true, None) => format!("it exited with {}", out.status),
        (false, Some(line)) if !said.contains(line.as_str()) => {
            format!("{said}; the kernel says: {line}")
        }
        (false, _) => said.clone(),
    };
    Err(Error::ModuleLoad {
        path: path.into(),
        detail,
        cause: ModuleLoadCause::of(&said, &log.join("\n")),
    })
}

/// The module's name for modprobe.
const MODULE: &str = "blk_interposer";

/// The kernel log's lines about loading modules: ours, lockdown and
/// signature checks.  Empty when `/dev/kmsg` cannot be read.
fn kernel_log_about_modules() -> Vec<String> {
    use std::io::Read;
    let Ok(mut kmsg) = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let mut record = vec![0u8; 8192];
    // One record per read; EAGAIN at the end, EPIPE for a record overwritten
    // while we read (skip it).
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                let msg = text.split_once(';').map_or(&*text, |(_, m)| m);
                let msg = msg.lines().next().unwrap_or_default();
                if is_about_module_loading(msg) {
                    lines.push(msg.to_string());
                }
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    let keep = lines.len().saturating_sub(5);
    lines.split_off(keep)
}

fn is_about_module_loading(msg: &str) -> bool {
    msg.contains(MODULE)
        || msg.starts_with("Lockdown:")
        || msg.contains("module verification failed")
        || msg.contains("Loading of unsigned module")
        || msg.contains("Loading of module with unavailable key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            dev: DevNo::new(254, 16),
            interposer: DevNo::new(253, 0),
            payload: 0,
            count: 0,
        }
    }

    #[test]
    fn errno_means_what_the_command_says() {
        let ours = Version::OURS;
        let m = |cmd, e| map_errno(cmd, e, ours, req());
        assert!(matches!(
            m(Cmd::Attach, Errno::EPERM),
            Error::PermissionDenied { .. }
        ));
        assert!(matches!(
            m(Cmd::Detach, Errno::ENOENT),
            Error::NotAttached { .. }
        ));
        assert!(matches!(
            m(Cmd::Attach, Errno::ENOENT),
            Error::NoLower { .. }
        ));
        assert!(matches!(
            m(Cmd::LowerRemove, Errno::ENOENT),
            Error::NoLower { .. }
        ));
        assert!(matches!(
            m(Cmd::Status, Errno::ENODEV),
            Error::NoSuchDevice { .. }
        ));
        assert!(matches!(
            m(Cmd::LowerCreate, Errno::EEXIST),
            Error::LowerExists { .. }
        ));
        assert!(matches!(
            m(Cmd::Attach, Errno::EEXIST),
            Error::AlreadyAttached { .. }
        ));
        assert!(matches!(
            m(Cmd::LowerRemove, Errno::EBUSY),
            Error::LowerBusy { .. }
        ));
        assert!(matches!(
            m(Cmd::Attach, Errno::EBUSY),
            Error::AttachBusy { .. }
        ));
        assert!(matches!(
            m(Cmd::LowerCreate, Errno::EBUSY),
            Error::HookBusy { .. }
        ));
        assert!(matches!(
            m(Cmd::LowerCreate, Errno::EOPNOTSUPP),
            Error::FtraceOff { .. }
        ));
        assert!(matches!(
            m(Cmd::LowerCreate, Errno::EMEDIUMTYPE),
            Error::WrongMedium { .. }
        ));
        assert!(matches!(
            m(Cmd::Switch, Errno::EMEDIUMTYPE),
            Error::BlockSizeTooLarge { .. }
        ));
        assert!(matches!(m(Cmd::Attach, Errno::ELOOP), Error::Loop { .. }));
        assert!(matches!(
            m(Cmd::Attach, Errno::ENOSPC),
            Error::InterposerTooSmall { .. }
        ));
        assert!(matches!(
            m(Cmd::Detach, Errno::EAGAIN),
            Error::TryAgain { .. }
        ));
        assert!(matches!(
            m(Cmd::List, Errno::ENOTTY),
            Error::UnknownCommand { .. }
        ));
        assert!(matches!(
            m(Cmd::List, Errno::EINVAL),
            Error::Ioctl {
                errno: Errno::EINVAL,
                ..
            }
        ));
        assert!(matches!(
            m(Cmd::Detach, Errno::EIO),
            Error::Ioctl {
                errno: Errno::EIO,
                ..
            }
        ));
    }

    #[test]
    fn einval_with_other_major_is_a_version_mismatch() {
        let kernel = Version::from_array([2, 0, 0]);
        match map_errno(Cmd::Version, Errno::EINVAL, kernel, req()) {
            Error::VersionMismatch { kernel: k, ours } => {
                assert_eq!(k, kernel);
                assert_eq!(ours, Version::OURS);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn list_payload_parses() {
        let mut raw = RawStatus {
            dev: DevNo::new(254, 16).into(),
            lower: DevNo::new(252, 0).into(),
            interposer: DevNo::new(253, 1).into(),
            state: abi::ST_ATTACHED,
            sectors: 2048,
            redirected: 7,
            ..Default::default()
        };
        raw.lower_name[..14].copy_from_slice(b"interposer/vdb");
        let mut bytes = Vec::new();
        for _ in 0..2 {
            // SAFETY: RawStatus is plain old data.
            bytes.extend_from_slice(unsafe {
                std::slice::from_raw_parts((&raw as *const RawStatus).cast::<u8>(), STATUS_SIZE)
            });
        }
        let list = parse_statuses("LIST", 2, &bytes).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].lower.name, "interposer/vdb");
        assert_eq!(list[0].interposer, Some(DevNo::new(253, 1)));
        assert_eq!(list[0].state, crate::State::Attached);
        assert!(parse_statuses("LIST", 3, &bytes).is_err());
        assert!(parse_statuses("LIST", 0, &[]).unwrap().is_empty());
    }

    /// Seeded random requests: the header builder and the BUFFER_FULL growth
    /// never panic, and every header they accept is one the kernel accepts.
    #[test]
    fn request_builder_fuzz() {
        let mut x = 0x243F_6A88_85A3_08D3u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let edge = [
            0u64,
            1,
            87,
            88,
            103,
            104,
            4095,
            u32::MAX as u64 - 88,
            u32::MAX as u64,
            u64::MAX,
        ];
        for i in 0..5_000 {
            let pick = |v: u64| {
                if v.is_multiple_of(3) {
                    edge[(v / 3) as usize % edge.len()]
                } else {
                    v
                }
            };
            let r = Request {
                dev: DevNo::new(pick(next()) as u32, pick(next()) as u32),
                interposer: DevNo::new(next() as u32, next() as u32),
                payload: 0,
                count: next() as u32,
            };
            let payload = (pick(next()) >> (next() % 64)) as usize;
            let cmd = Cmd::ALL[i % Cmd::ALL.len()];
            match request_header(cmd, r, payload) {
                Ok(h) => {
                    assert_eq!(h.data_size as usize, HEADER_SIZE + payload);
                    assert_eq!(h.data_start as usize, HEADER_SIZE);
                    assert!(h.data_start <= h.data_size);
                    assert_eq!(h.version, Version::OURS.to_array());
                    assert_eq!(DevNo::from(h.dev), r.dev);
                    assert_eq!(DevNo::from(h.interposer), r.interposer);
                }
                Err(e) => {
                    assert!(
                        HEADER_SIZE + payload.min(usize::MAX - HEADER_SIZE) > u32::MAX as usize
                    );
                    assert!(e.to_string().contains("does not fit"), "{e}");
                }
            }
            let count = pick(next()) as u32;
            let grown = grown_payload(payload, count);
            assert!(grown > payload || payload.saturating_mul(2) == payload);
            assert!(grown >= (count as usize) * STATUS_SIZE);
            // Whatever the kernel sends back must parse or be refused, not panic.
            let len = (next() % 600) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Ok(list) = parse_statuses("LIST", count % 8, &bytes) {
                assert_eq!(list.len(), (count % 8) as usize);
            }
            let _ = map_errno(
                cmd,
                Errno::from_raw((next() % 140) as i32),
                Version::from_array([next() as u32, 0, 0]),
                r,
            )
            .to_string();
        }
    }

    #[test]
    fn missing_control_device_says_modprobe() {
        let e = Control::open_at(Path::new("/nonexistent/blk-interposer")).unwrap_err();
        assert!(e.to_string().contains("modprobe blk_interposer"), "{e}");
    }

    #[test]
    fn modprobe_failures_are_told_apart() {
        use ModuleLoadCause::*;
        let insert = "modprobe: ERROR: could not insert 'blk_interposer'";
        for (modprobe, log, cause) in [
            (format!("{insert}: Key was rejected by service"), "", SecureBoot),
            (format!("{insert}: Required key not available"), "", SecureBoot),
            (
                format!("{insert}: Operation not permitted"),
                "Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7",
                SecureBoot,
            ),
            (
                String::new(),
                "blk_interposer: module verification failed: signature and/or required key missing - tainting kernel",
                SecureBoot,
            ),
            (
                "modprobe: FATAL: Module blk_interposer not found in directory /lib/modules/6.1.0-57-cloud-amd64".into(),
                "",
                NotInstalled,
            ),
            (format!("{insert}: Operation not permitted"), "", NotPermitted),
            (format!("{insert}: Invalid argument"), "blk_interposer: Unknown symbol x", Other),
        ] {
            assert_eq!(ModuleLoadCause::of(&modprobe, log), cause, "{modprobe} / {log}");
        }
    }

    #[test]
    fn module_load_errors_name_the_command_that_works() {
        let err = |cause| {
            Error::ModuleLoad {
                path: CONTROL_PATH.into(),
                detail: "modprobe: ERROR: could not insert 'blk_interposer': Key was rejected by service".into(),
                cause,
            }
            .to_string()
        };
        let secure = err(ModuleLoadCause::SecureBoot);
        for want in [
            "/dev/blk-interposer does not exist",
            "Key was rejected by service",
            "Secure Boot refused the module",
            "mokutil --import /var/lib/dkms/mok.pub",
            "Install on your server",
            "modprobe blk_interposer",
        ] {
            assert!(secure.contains(want), "{want}: {secure}");
        }
        for cause in [
            ModuleLoadCause::NotInstalled,
            ModuleLoadCause::NotPermitted,
            ModuleLoadCause::NoModprobe,
            ModuleLoadCause::Other,
        ] {
            let e = err(cause);
            assert!(e.contains("modprobe blk_interposer`"), "{e}");
            assert!(!e.contains("Secure Boot"), "{e}");
        }
        assert!(err(ModuleLoadCause::NotInstalled).contains("blk-interposer-dkms"));
    }

    #[test]
    fn kernel_log_lines_about_module_loading_are_kept() {
        assert!(is_about_module_loading(
            "blk_interposer: version 0.1.0 loaded"
        ));
        assert!(is_about_module_loading(
            "Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7"
        ));
        assert!(!is_about_module_loading(
            "EXT4-fs (vda1): mounted filesystem"
        ));
    }
}
