//! `ls` and `info`: what is interposed, by what, and the counters.

use std::path::Path;

use serde::Serialize;

use crate::dm::DeviceMapper;
use crate::error::Result;
use crate::host::Host;
use crate::kernel::{Counters, Kernel, State, Status};
use crate::ops::Ops;
use crate::types::{DevNo, Sectors};

/// One interposed device, ready to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The interposed device, e.g. `/dev/vdb` (`MAJ:MIN` if sysfs lacks it).
    pub device: String,
    /// Its number.
    pub dev: DevNo,
    /// Its lower device, e.g. `/dev/interposer/vdb`.
    pub lower: String,
    /// The lower device's number.
    pub lower_dev: DevNo,
    /// The dm name of the interposer, when attached and known.
    pub interposer: Option<String>,
    /// The interposer's number, when attached.
    pub interposer_dev: Option<DevNo>,
    /// `attached`, `idle` or `gone`.
    pub state: State,
    /// Size of the device in sectors.
    pub sectors: Sectors,
    /// What went through it.
    #[serde(flatten)]
    pub counters: Counters,
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Every device that has a lower device.
    pub fn list(&self) -> Result<Vec<Entry>> {
        Ok(self
            .kernel
            .list()?
            .into_iter()
            .map(|s| self.entry(s))
            .collect())
    }

    /// One device, named by its path (`/dev/vdb`, a symlink), `MAJ:MIN`, its
    /// kernel name (`vdb`), or the dm name of its interposer.
    pub fn info(&self, what: &str) -> Result<Entry> {
        let dev = self.resolve_device(Path::new(what))?;
        Ok(self.entry(self.kernel.status(dev)?))
    }

    /// The device dm device `dm_dev` interposes: attached to it (`true`), or
    /// stacked on its lower device without being attached (`false`: a
    /// remove that stopped half way, or a device that went away).
    pub(crate) fn find_interposed(&self, dm_dev: DevNo) -> Result<Option<(Status, bool)>> {
        let all = self.kernel.list()?;
        if let Some(s) = all.iter().find(|s| s.interposer == Some(dm_dev)) {
            return Ok(Some((s.clone(), true)));
        }
        let deps = self.dm.deps(dm_dev).unwrap_or_default();
        Ok(all
            .into_iter()
            .find(|s| deps.contains(&s.lower.devno))
            .map(|s| (s, false)))
    }

    fn entry(&self, s: Status) -> Entry {
        let interposer = s.interposer.and_then(|i| self.dm.name_of(i).ok().flatten());
        Entry {
            device: self.device_label(s.dev),
            dev: s.dev,
            lower: s.lower.path(),
            lower_dev: s.lower.devno,
            interposer,
            interposer_dev: s.interposer,
            state: s.state,
            sectors: s.sectors,
            counters: s.counters,
        }
    }
}
