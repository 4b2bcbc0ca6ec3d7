//! `#[repr(C)]` mirror of `kmod/include/uapi/blk_interposer.h`.
//!
//! The header is the single source of truth.  `tests/abi_layout.rs` compiles
//! it with the system C compiler and fails when a size, an offset, a constant
//! or an ioctl number here differs from it.  Keep the names of the C header,
//! without the `blk_interposer_` prefix, so that the two read side by side.

use nix::sys::ioctl::ioctl_num_type;

/// Major version: a different major is incompatible.
pub const VERSION_MAJOR: u32 = 1;
/// Minor version: a larger minor adds backward-compatible features.
pub const VERSION_MINOR: u32 = 1;
/// Patch version: compatible both ways.
pub const VERSION_PATCH: u32 = 0;

/// Name of the misc device: `/dev/blk-interposer`.
pub const CTL_NAME: &str = "blk-interposer";
/// Lower devices appear as `/dev/<LOWER_DIR>/<name of dev>`.
pub const LOWER_DIR: &str = "interposer";
/// Size of the `lower_name` buffers, NUL included.
pub const NAME_LEN: usize = 32;

/// A device number, split as the kernel's `MAJOR()`/`MINOR()` split it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawDevno {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// `struct blk_interposer_ioctl`: the header of every command.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlHeader {
    /// In/Out: the version userspace was built with; the kernel writes its own.
    pub version: [u32; 3],
    /// In: size of the whole buffer, header included.
    pub data_size: u32,
    /// In: offset of the payload from the header.
    pub data_start: u32,
    /// In/Out: [`BUFFER_FULL`].
    pub flags: u32,
    /// Out: LIST: how many entries there are.
    pub count: u32,
    /// Explicit padding, zero.
    pub padding: u32,
    /// In: the interposed device.
    pub dev: RawDevno,
    /// In: ATTACH: the device that takes its bios.
    pub interposer: RawDevno,
    /// Out: LOWER_CREATE: the lower device.
    pub lower: RawDevno,
    /// Out: LOWER_CREATE: `"interposer/vdb"`, NUL-terminated.
    pub lower_name: [u8; NAME_LEN],
}

/// Out: the payload did not fit in `data_size`; `count` says how many entries.
pub const BUFFER_FULL: u32 = 1 << 0;

/// `blk_interposer_status.state`: bios are redirected.
pub const ST_ATTACHED: u32 = 1 << 0;
/// `blk_interposer_status.state`: the interposed device was deleted.
pub const ST_GONE: u32 = 1 << 1;

/// `struct blk_interposer_status`: one lower device and its counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStatus {
    /// The interposed device.
    pub dev: RawDevno,
    /// Its lower device.
    pub lower: RawDevno,
    /// The interposer, `0:0` when not attached.
    pub interposer: RawDevno,
    /// [`ST_ATTACHED`], [`ST_GONE`].
    pub state: u32,
    /// Explicit padding, zero.
    pub padding: u32,
    /// Size of `dev` in 512-byte sectors.
    pub sectors: u64,
    /// Bios redirected to an interposer (total).
    pub redirected: u64,
    /// Bios passed down through the lower device.
    pub lower_bios: u64,
    /// Bios that arrived during a switch and waited.
    pub deferred: u64,
    /// Attach operations completed.
    pub attaches: u64,
    /// `"interposer/vdb"`, NUL-terminated.
    pub lower_name: [u8; NAME_LEN],
}

/// `struct blk_interposer_switch`: one entry of [`Cmd::Switch`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawSwitch {
    /// The interposed device.
    pub dev: RawDevno,
    /// Where its bios go from now on; `0:0` detaches it.
    pub interposer: RawDevno,
}

/// At most this many entries in one [`Cmd::Switch`].
pub const SWITCH_MAX: usize = 64;

/// The ioctl type ("magic") of every command.
pub const IOCTL_MAGIC: u8 = 0xB7;

/// Command numbers (the `nr` of the ioctl), append-only like the C enum.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Fill `version` with the module's version.
    Version = 0,
    /// Create the lower device of `dev`.
    LowerCreate = 1,
    /// Remove the lower device of `dev`.
    LowerRemove = 2,
    /// Redirect every bio aimed at `dev` to `interposer`.
    Attach = 3,
    /// Stop redirecting `dev`.
    Detach = 4,
    /// One [`RawStatus`] for `dev`.
    Status = 5,
    /// An array of [`RawStatus`], one per lower device.
    List = 6,
    /// (1.1) Move several devices to new interposers at one point in time.
    Switch = 7,
}

impl Cmd {
    /// Every command, in number order.
    pub const ALL: [Cmd; 8] = [
        Cmd::Version,
        Cmd::LowerCreate,
        Cmd::LowerRemove,
        Cmd::Attach,
        Cmd::Detach,
        Cmd::Status,
        Cmd::List,
        Cmd::Switch,
    ];

    /// The C name without prefix, as the header spells it (`"LOWER_CREATE"`).
    pub const fn c_name(self) -> &'static str {
        match self {
            Cmd::Version => "VERSION",
            Cmd::LowerCreate => "LOWER_CREATE",
            Cmd::LowerRemove => "LOWER_REMOVE",
            Cmd::Attach => "ATTACH",
            Cmd::Detach => "DETACH",
            Cmd::Status => "STATUS",
            Cmd::List => "LIST",
            Cmd::Switch => "SWITCH",
        }
    }

    /// The ioctl request number: `_IOWR(0xB7, cmd, struct blk_interposer_ioctl)`.
    pub const fn request(self) -> ioctl_num_type {
        nix::request_code_readwrite!(IOCTL_MAGIC, self as u8, HEADER_SIZE)
    }
}

/// `sizeof(struct blk_interposer_ioctl)`.
pub const HEADER_SIZE: usize = std::mem::size_of::<IoctlHeader>();
/// `sizeof(struct blk_interposer_status)`.
pub const STATUS_SIZE: usize = std::mem::size_of::<RawStatus>();

const _: () = assert!(std::mem::size_of::<RawDevno>() == 8);
const _: () = assert!(HEADER_SIZE == 88);
const _: () = assert!(std::mem::align_of::<IoctlHeader>() == 4);
const _: () = assert!(STATUS_SIZE == 104);
const _: () = assert!(std::mem::size_of::<RawSwitch>() == 16);
const _: () = assert!(std::mem::align_of::<RawStatus>() == 8);
// The payload starts right after the header and holds u64s.
const _: () = assert!(HEADER_SIZE.is_multiple_of(8));

/// Turn a NUL-terminated `lower_name` buffer into a string (lossy, no NUL).
pub fn name_from_c(buf: &[u8; NAME_LEN]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unnecessary_cast)] // ioctl_num_type is c_int on musl
    fn request_numbers_follow_iowr() {
        // _IOWR on x86/arm: dir 3 << 30 | size << 16 | type << 8 | nr
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(
            Cmd::Attach.request() as u64,
            (3 << 30) | (88 << 16) | (0xB7 << 8) | 3
        );
        let all: Vec<_> = Cmd::ALL.iter().map(|c| c.request()).collect();
        for (i, r) in all.iter().enumerate() {
            assert_eq!((*r as u64) & 0xff, i as u64);
        }
    }

    #[test]
    fn names_stop_at_nul() {
        let mut b = [0u8; NAME_LEN];
        b[..14].copy_from_slice(b"interposer/vdb");
        assert_eq!(name_from_c(&b), "interposer/vdb");
        assert_eq!(name_from_c(&[b'x'; NAME_LEN]).len(), NAME_LEN);
    }
}
