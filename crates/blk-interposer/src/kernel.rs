//! What the kernel module does, as a trait, so that the orchestration in
//! [`crate::ops`] can be tested without it.  [`crate::Control`] is the real
//! implementation.

use serde::Serialize;

use crate::abi::{self, RawStatus};
use crate::error::Result;
use crate::types::{DevNo, Sectors, Version};

/// The lower device of an interposed device: the path beneath the interposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lower {
    /// Its device number; dm tables name it as `MAJ:MIN`.
    pub devno: DevNo,
    /// Its name below `/dev`, e.g. `interposer/vdb`.
    pub name: String,
}

impl Lower {
    /// Its device node, e.g. `/dev/interposer/vdb`.
    pub fn path(&self) -> String {
        format!("/dev/{}", self.name)
    }
}

/// Whether an interposed device has its bios redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Bios are redirected to the interposer.
    Attached,
    /// Only the lower device exists.
    Idle,
    /// The interposed device was deleted (hot-unplug).
    Gone,
}

impl State {
    /// From the ABI's `state` bits.
    pub fn from_bits(bits: u32) -> State {
        if bits & abi::ST_GONE != 0 {
            State::Gone
        } else if bits & abi::ST_ATTACHED != 0 {
            State::Attached
        } else {
            State::Idle
        }
    }

    /// `attached`, `idle`, `gone`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Attached => "attached",
            State::Idle => "idle",
            State::Gone => "gone",
        }
    }
}

/// What the module reports about one interposed device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The interposed device.
    pub dev: DevNo,
    /// Its lower device.
    pub lower: Lower,
    /// The interposer taking its bios, when attached.
    pub interposer: Option<DevNo>,
    /// Attached, idle or gone.
    pub state: State,
    /// Size of the device.
    pub sectors: Sectors,
    /// What went through it.
    #[serde(flatten)]
    pub counters: Counters,
}

/// The module's counters of one interposed device, since its lower device
/// was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Bios redirected to an interposer (total).
    pub redirected: u64,
    /// Bios passed down through the lower device.
    pub lower_bios: u64,
    /// Bios that arrived during a switch and waited.
    pub deferred: u64,
    /// Attach operations completed.
    pub attaches: u64,
}

impl From<&RawStatus> for Status {
    fn from(r: &RawStatus) -> Self {
        let interposer = DevNo::from(r.interposer);
        Status {
            dev: r.dev.into(),
            lower: Lower {
                devno: r.lower.into(),
                name: abi::name_from_c(&r.lower_name),
            },
            interposer: (!interposer.is_none()).then_some(interposer),
            state: State::from_bits(r.state),
            sectors: Sectors(r.sectors),
            counters: Counters {
                redirected: r.redirected,
                lower_bios: r.lower_bios,
                deferred: r.deferred,
                attaches: r.attaches,
            },
        }
    }
}

/// One device's part in a [`Kernel::switch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The interposed device (it needs a lower device).
    pub dev: DevNo,
    /// Its new interposer; `None` sends its bios to the device itself again.
    pub to: Option<DevNo>,
}

/// The commands of the control device.  Errors are the typed ones of
/// [`crate::Error`], mapped per command (see [`crate::ctl`]).
pub trait Kernel {
    /// The module's ABI version.
    fn version(&self) -> Result<Version>;
    /// Create the lower device of `dev`.  [`crate::Error::LowerExists`] when
    /// it has one already.
    fn lower_create(&self, dev: DevNo) -> Result<Lower>;
    /// Remove the lower device of `dev`.
    fn lower_remove(&self, dev: DevNo) -> Result<()>;
    /// Redirect every bio aimed at `dev` to `interposer`.
    fn attach(&self, dev: DevNo, interposer: DevNo) -> Result<()>;
    /// Stop redirecting `dev`, after the bios in flight are done.
    fn detach(&self, dev: DevNo) -> Result<()>;
    /// Move several devices at one point in time: all filesystems frozen and
    /// all gates closed before any device switches.  An attached device moves
    /// straight from its interposer to the new one.  All or nothing.
    fn switch(&self, moves: &[Switch]) -> Result<()>;
    /// Status of `dev`.
    fn status(&self, dev: DevNo) -> Result<Status>;
    /// Status of every device that has a lower device.
    fn list(&self) -> Result<Vec<Status>>;
}

impl<K: Kernel + ?Sized> Kernel for &K {
    fn version(&self) -> Result<Version> {
        (**self).version()
    }
    fn lower_create(&self, dev: DevNo) -> Result<Lower> {
        (**self).lower_create(dev)
    }
    fn lower_remove(&self, dev: DevNo) -> Result<()> {
        (**self).lower_remove(dev)
    }
    fn attach(&self, dev: DevNo, interposer: DevNo) -> Result<()> {
        (**self).attach(dev, interposer)
    }
    fn detach(&self, dev: DevNo) -> Result<()> {
        (**self).detach(dev)
    }
    fn switch(&self, moves: &[Switch]) -> Result<()> {
        (**self).switch(moves)
    }
    fn status(&self, dev: DevNo) -> Result<Status> {
        (**self).status(dev)
    }
    fn list(&self) -> Result<Vec<Status>> {
        (**self).list()
    }
}
