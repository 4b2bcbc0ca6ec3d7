//! A fake kernel, device-mapper and host that record every call, for the
//! orchestration tests.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::dm::{DeviceMapper, DmDevice, Table};
use crate::era::record::DeviceIdentity;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kernel::{Counters, Kernel, Lower, State, Status, Switch};
use crate::types::{DevNo, Sectors, Version};

/// `/dev/vdb` (also `/dev/disk/by-id/vdb`).
pub const DEV: DevNo = DevNo::new(254, 16);
/// `/dev/vdc`.
pub const OTHER: DevNo = DevNo::new(254, 32);
/// `/dev/vdd`.
pub const THIRD: DevNo = DevNo::new(254, 48);
/// `/dev/vdd` as a metadata device.
pub const META: DevNo = THIRD;
/// The lower device of `DEV`.
pub const LOWER: DevNo = DevNo::new(252, 0);
/// The loop devices `loop_create` hands out start here.
pub const LOOP0: DevNo = DevNo::new(7, 0);

/// Makes the error an operation fails with.
pub type MakeError = fn() -> Error;

#[derive(Default)]
pub struct Mock {
    pub calls: RefCell<Vec<String>>,
    pub lowers: RefCell<BTreeMap<DevNo, Status>>,
    pub dms: RefCell<Vec<(String, DevNo, bool)>>,
    pub deps: RefCell<HashMap<DevNo, Vec<DevNo>>>,
    pub nodes: RefCell<HashSet<PathBuf>>,
    /// Operation name -> the error it fails with.
    pub fail: RefCell<HashMap<&'static str, MakeError>>,
    /// Whether `ensure_node` makes a node (no udev) or finds one.
    pub udev: bool,
    /// dm name -> uuid.
    pub uuids: RefCell<HashMap<String, String>>,
    /// dm name -> live table (what was loaded).
    pub tables: RefCell<HashMap<String, Table>>,
    /// dm name -> status line; a snapshot without one shows `16/SIZE 16`.
    pub statuses: RefCell<HashMap<String, String>>,
    /// dm name -> open count (default 0).
    pub opens: RefCell<HashMap<String, u32>>,
    /// dm-era devices: (current era, held metadata snapshot).
    pub eras: RefCell<HashMap<String, (u32, Option<u64>)>>,
    /// What `open_direct` opens (for every device).
    pub image: RefCell<Option<PathBuf>>,
    /// Device sizes that override the defaults of `sectors`.
    pub sizes: RefCell<HashMap<DevNo, Sectors>>,
    /// Loop devices made by `loop_create`, with their files.
    pub loops: RefCell<BTreeMap<DevNo, PathBuf>>,
    /// What `occupied` says of a device (default: free).
    pub occupied: RefCell<HashMap<DevNo, crate::host::Occupied>>,
    /// Identities that override the default of `identity`.
    pub identities: RefCell<HashMap<DevNo, DeviceIdentity>>,
    /// What `boot_id` says (default `boot-1`).
    pub boot: RefCell<Option<String>>,
    /// Fingerprints that override the default of `fingerprint` (`fp-DEV`).
    pub fingerprints: RefCell<HashMap<DevNo, String>>,
    next_minor: RefCell<u32>,
}

impl Mock {
    pub fn new() -> Self {
        Mock::default()
    }

    pub fn fail_at(&self, op: &'static str, err: MakeError) {
        self.fail.borrow_mut().insert(op, err);
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn call(&self, op: &'static str, args: String) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("{op} {args}").trim_end().to_string());
        match self.fail.borrow().get(op) {
            Some(f) => Err(f()),
            None => Ok(()),
        }
    }

    /// A dm device `name` already interposing `DEV`, as after a create.
    pub fn with_interposer(self, name: &str) -> Self {
        let dm = DevNo::new(253, 7);
        self.dms.borrow_mut().push((name.into(), dm, true));
        self.deps.borrow_mut().insert(dm, vec![LOWER]);
        let mut s = status(DEV);
        s.interposer = Some(dm);
        s.state = State::Attached;
        self.lowers.borrow_mut().insert(DEV, s);
        self
    }
}

/// The status of `dev` with a fresh lower device (`252:0` for `DEV`,
/// `252:1` for `OTHER`, ...).
pub fn status(dev: DevNo) -> Status {
    let n = (dev.minor / 16).saturating_sub(1);
    let name = ["vdb", "vdc", "vdd"]
        .get(n as usize)
        .copied()
        .unwrap_or("vdx");
    Status {
        dev,
        lower: Lower {
            devno: DevNo::new(LOWER.major, n),
            name: format!("interposer/{name}"),
        },
        interposer: None,
        state: State::Idle,
        sectors: Sectors(2048),
        counters: Counters::default(),
    }
}

impl Kernel for Mock {
    fn version(&self) -> Result<Version> {
        self.call("version", String::new())?;
        Ok(Version::OURS)
    }
    fn lower_create(&self, dev: DevNo) -> Result<Lower> {
        self.call("lower_create", dev.to_string())?;
        if self.lowers.borrow().contains_key(&dev) {
            return Err(Error::LowerExists {
                dev: dev.to_string(),
            });
        }
        let mut st = status(dev);
        if let Some(&size) = self.sizes.borrow().get(&dev) {
            st.sectors = size;
        }
        self.lowers.borrow_mut().insert(dev, st);
        Ok(status(dev).lower)
    }
    fn lower_remove(&self, dev: DevNo) -> Result<()> {
        self.call("lower_remove", dev.to_string())?;
        self.lowers
            .borrow_mut()
            .remove(&dev)
            .map(drop)
            .ok_or(Error::NoLower {
                dev: dev.to_string(),
            })
    }
    fn attach(&self, dev: DevNo, interposer: DevNo) -> Result<()> {
        self.call("attach", format!("{dev} {interposer}"))?;
        let mut l = self.lowers.borrow_mut();
        let s = l.get_mut(&dev).ok_or(Error::NoLower {
            dev: dev.to_string(),
        })?;
        s.interposer = Some(interposer);
        s.state = State::Attached;
        Ok(())
    }
    fn detach(&self, dev: DevNo) -> Result<()> {
        self.call("detach", dev.to_string())?;
        let mut l = self.lowers.borrow_mut();
        let s = l.get_mut(&dev).ok_or(Error::NoLower {
            dev: dev.to_string(),
        })?;
        s.interposer = None;
        s.state = State::Idle;
        Ok(())
    }
    fn switch(&self, moves: &[Switch]) -> Result<()> {
        let args: Vec<String> = moves
            .iter()
            .map(|m| format!("{}>{}", m.dev, m.to.unwrap_or_default()))
            .collect();
        self.call("switch", args.join(" "))?;
        let mut l = self.lowers.borrow_mut();
        if let Some(m) = moves.iter().find(|m| !l.contains_key(&m.dev)) {
            return Err(Error::NoLower {
                dev: m.dev.to_string(),
            });
        }
        for m in moves {
            let s = l.get_mut(&m.dev).expect("checked above");
            s.interposer = m.to;
            s.state = if m.to.is_some() {
                State::Attached
            } else {
                State::Idle
            };
        }
        Ok(())
    }
    fn status(&self, dev: DevNo) -> Result<Status> {
        self.call("status", dev.to_string())?;
        self.lowers
            .borrow()
            .get(&dev)
            .cloned()
            .ok_or(Error::NoLower {
                dev: dev.to_string(),
            })
    }
    fn list(&self) -> Result<Vec<Status>> {
        self.call("list", String::new())?;
        Ok(self.lowers.borrow().values().cloned().collect())
    }
}

impl DeviceMapper for Mock {
    fn create(&self, name: &str, uuid: &str) -> Result<DevNo> {
        self.call("dm_create", format!("{name} {uuid}"))?;
        self.uuids.borrow_mut().insert(name.into(), uuid.into());
        let mut n = self.next_minor.borrow_mut();
        let d = DevNo::new(253, *n);
        *n += 1;
        self.dms.borrow_mut().push((name.into(), d, false));
        Ok(d)
    }
    fn load(&self, name: &str, table: &Table) -> Result<()> {
        self.call(
            "dm_load",
            format!("{name} {}", table.to_string().trim_end()),
        )?;
        let d = self
            .devno(name)?
            .ok_or(Error::DmNotFound { name: name.into() })?;
        let deps = table.plain_args().filter_map(|a| a.parse().ok()).collect();
        self.deps.borrow_mut().insert(d, deps);
        self.tables.borrow_mut().insert(name.into(), table.clone());
        if table.lines.iter().any(|l| l.target == "era") {
            self.eras.borrow_mut().insert(name.into(), (1, None));
        }
        Ok(())
    }
    fn resume(&self, name: &str) -> Result<()> {
        self.call("dm_resume", name.into())?;
        for d in self.dms.borrow_mut().iter_mut().filter(|d| d.0 == name) {
            d.2 = true;
        }
        Ok(())
    }
    fn suspended(&self, name: &str) -> Result<bool> {
        Ok(self.dms.borrow().iter().any(|d| d.0 == name && !d.2))
    }
    fn suspend(&self, name: &str) -> Result<()> {
        self.call("dm_suspend", name.into())?;
        for d in self.dms.borrow_mut().iter_mut().filter(|d| d.0 == name) {
            d.2 = false;
        }
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.call("dm_remove", name.into())?;
        self.uuids.borrow_mut().remove(name);
        self.tables.borrow_mut().remove(name);
        self.dms.borrow_mut().retain(|d| d.0 != name);
        Ok(())
    }
    fn devno(&self, name: &str) -> Result<Option<DevNo>> {
        crate::dm::mapper::check_name(name)?; // as the real one: `/dev/vdb` is no dm name
        Ok(self.dms.borrow().iter().find(|d| d.0 == name).map(|d| d.1))
    }
    fn name_of(&self, dev: DevNo) -> Result<Option<String>> {
        Ok(self
            .dms
            .borrow()
            .iter()
            .find(|d| d.1 == dev)
            .map(|d| d.0.clone()))
    }
    fn deps(&self, dev: DevNo) -> Result<Vec<DevNo>> {
        Ok(self.deps.borrow().get(&dev).cloned().unwrap_or_default())
    }
    fn list(&self) -> Result<Vec<DmDevice>> {
        Ok(self
            .dms
            .borrow()
            .iter()
            .map(|d| DmDevice {
                name: d.0.clone(),
                devno: d.1,
            })
            .collect())
    }
    fn uuid(&self, name: &str) -> Result<Option<String>> {
        Ok(self.uuids.borrow().get(name).cloned())
    }
    fn open_count(&self, name: &str) -> Result<u32> {
        Ok(self.opens.borrow().get(name).copied().unwrap_or(0))
    }
    fn table(&self, name: &str) -> Result<Table> {
        self.tables
            .borrow()
            .get(name)
            .cloned()
            .ok_or(Error::DmNotFound { name: name.into() })
    }
    fn status(&self, name: &str) -> Result<String> {
        self.call("dm_status", name.into())?;
        if let Some(s) = self.statuses.borrow().get(name) {
            return Ok(s.clone());
        }
        if let Some((era, snap)) = self.eras.borrow().get(name) {
            let snap = snap.map_or("-".into(), |s| s.to_string());
            return Ok(format!("8 20/16384 {era} {snap}"));
        }
        let t = self.table(name)?;
        Ok(format!("16/{} 16", t.lines[0].length))
    }
    fn message(&self, name: &str, message: &str) -> Result<Option<String>> {
        self.call("dm_message", format!("{name} {message}"))?;
        let mut eras = self.eras.borrow_mut();
        let e = eras.get_mut(name).ok_or(Error::Dm {
            op: "message",
            name: name.into(),
            what: "Invalid argument".into(),
            errno: Some(nix::errno::Errno::EINVAL),
        })?;
        match message {
            "checkpoint" => e.0 += 1,
            "take_metadata_snap" => *e = (e.0 + 1, Some(1)),
            "drop_metadata_snap" => e.1 = None,
            _ => {}
        }
        Ok(None)
    }
}

impl Host for Mock {
    fn resolve(&self, spec: &Path) -> Result<DevNo> {
        if let Some(d) = spec.to_str().and_then(|s| s.parse().ok()) {
            return Ok(d);
        }
        match spec.to_str() {
            Some("/dev/vdb" | "/dev/disk/by-id/vdb") => Ok(DEV),
            Some("/dev/vdc") => Ok(OTHER),
            Some("/dev/vdd") => Ok(THIRD),
            Some("/etc/passwd") => Err(Error::NotBlockDevice { path: spec.into() }),
            _ => Err(Error::PathNotFound { path: spec.into() }),
        }
    }
    fn kernel_name(&self, dev: DevNo) -> Option<String> {
        match dev {
            DEV => Some("vdb".into()),
            OTHER => Some("vdc".into()),
            THIRD => Some("vdd".into()),
            _ => None,
        }
    }
    fn ensure_node(&self, path: &Path, dev: DevNo) -> Result<bool> {
        self.call("ensure_node", format!("{} {dev}", path.display()))?;
        Ok(!self.udev && self.nodes.borrow_mut().insert(path.into()))
    }
    fn remove_node(&self, path: &Path, dev: DevNo) -> Result<bool> {
        self.call("remove_node", format!("{} {dev}", path.display()))?;
        Ok(self.nodes.borrow_mut().remove(path))
    }
    fn sectors(&self, dev: DevNo) -> Result<Sectors> {
        if let Some(s) = self.sizes.borrow().get(&dev) {
            return Ok(*s);
        }
        match dev {
            OTHER => Ok(Sectors(8192)),
            _ if dev.major == LOOP0.major => Ok(Sectors(4096)),
            _ => Ok(Sectors(2048)),
        }
    }
    fn open_direct(&self, dev: DevNo, write: bool) -> Result<std::fs::File> {
        self.call(
            "open_direct",
            format!("{dev}{}", if write { " rw" } else { "" }),
        )?;
        let p = self.image.borrow().clone().expect("a test image");
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(&p)
            .map_err(|source| Error::Io {
                what: p.display().to_string(),
                source,
            })
    }
    fn identity(&self, dev: DevNo) -> Result<DeviceIdentity> {
        if let Some(id) = self.identities.borrow().get(&dev) {
            return Ok(id.clone());
        }
        Ok(DeviceIdentity {
            sectors: self.sectors(dev)?.0,
            serial: Some(format!("mock-{dev}")),
            ..DeviceIdentity::default()
        })
    }
    fn zero_start(&self, path: &Path, len: Sectors) -> Result<()> {
        self.call("zero_start", format!("{} {len}", path.display()))
    }
    fn occupied(&self, dev: DevNo) -> Result<Option<crate::host::Occupied>> {
        Ok(self.occupied.borrow().get(&dev).cloned())
    }
    fn loop_create(&self, path: &Path, size: Sectors) -> Result<DevNo> {
        self.call("loop_create", format!("{} {size}", path.display()))?;
        let mut l = self.loops.borrow_mut();
        let dev = DevNo::new(LOOP0.major, l.len() as u32);
        l.insert(dev, path.into());
        Ok(dev)
    }
    fn boot_id(&self) -> Result<String> {
        Ok(self
            .boot
            .borrow()
            .clone()
            .unwrap_or_else(|| "boot-1".into()))
    }
    fn fingerprint(&self, dev: DevNo) -> Result<String> {
        self.call("fingerprint", dev.to_string())?;
        Ok(self
            .fingerprints
            .borrow()
            .get(&dev)
            .cloned()
            .unwrap_or_else(|| format!("fp-{dev}")))
    }
    fn loop_remove(&self, dev: DevNo) -> Result<Option<PathBuf>> {
        self.call("loop_remove", dev.to_string())?;
        Ok(self.loops.borrow_mut().remove(&dev))
    }
}
