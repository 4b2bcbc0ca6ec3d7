//! `snapshot create|ls|remove`: a point-in-time image of live devices, with
//! dm-snapshot on top of the interposer.
//!
//! For each device `DEV` of group `NAME` (kernel name `k`) there are three dm
//! devices, all visible to `dmsetup`:
//!
//! | dm name | table | uuid |
//! |---|---|---|
//! | `NAME-k-cow` | `linear STORE OFFSET`: this device's slice of the COW store, less its first MiB ([`COW_RESERVED`]) | `INTERPOSER-SNAP-COW-MAJ:MIN-NAME` (`COWLOOP` on a loop device we made) |
//! | `NAME-k-snap` | `snapshot BASE NAME-k-cow P\|N CHUNK`: the image to read | `INTERPOSER-SNAP-SNAP-MAJ:MIN-NAME` |
//! | `NAME-k-origin` | `snapshot-origin BASE`: DEV's interposer from now on | `INTERPOSER-SNAP-ORIGIN-MAJ:MIN-NAME` |
//!
//! `MAJ:MIN` is DEV.  `BASE` is DEV's lower device, or, when DEV was already
//! interposed by `X` (an era device), `X` itself: the snapshot then stacks on
//! top of `X`, which keeps seeing every write.  `ls` and `remove` find a group
//! from these uuids and the tables alone; there is no state file.
//!
//! Each COW slice's first MiB is zeroed and kept from dm-snapshot
//! ([`COW_RESERVED`]): no copy of the device's first chunk for blkid to
//! find there, and no old header for a persistent store to load.
//!
//! The order of `create` keeps the origin from ever taking a write without
//! its snapshot registered: slice, snapshot (resumed: registered with BASE),
//! origin (created, loaded, resumed, then suspended and resumed once more,
//! because a snapshot-origin computes its chunk boundary at resume; see
//! prototype/NOTES.md), and only then one [`Kernel::switch`] that moves every
//! device onto its origin at one point in time, with every filesystem frozen.
//! Until that switch, writes go to BASE directly and land in the image; after
//! it, the origin copies each chunk to the COW store before its first write.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::dm::mapper::check_name;
use crate::dm::{DeviceMapper, DmDevice, Table};
use crate::error::{Error, Result};
use crate::host::{mapper_path, Host, Occupied};
use crate::kernel::{Kernel, State, Status, Switch};
use crate::ops::create::Undo;
use crate::ops::Ops;
use crate::types::{DevNo, Sectors};

/// The chunk for a COW slice that cannot hold the whole device: 4 KiB
/// (8 sectors), as LVM's default.
///
/// A chunk is the unit dm-snapshot copies before the first write to it.
/// Filesystems write 4 KiB blocks scattered over the disk; with 4 KiB
/// chunks each such write copies 4 KiB, with 64 KiB chunks up to 16 times
/// as much.  Measured (scenario
/// `snapshot/default-chunk-follows-the-cow-store`, kernel 6.12,
/// qemu TCG): 2000 random 4 KiB writes into a 64 MiB file used 7.4 MiB of
/// COW with 4 KiB chunks and 55 MiB with 64 KiB chunks.  A COW store that
/// overflows loses the backup, a slower write during the backup window
/// loses nothing: when the slice is smaller than the device, space comes
/// first.
pub const SMALL_CHUNK: Sectors = Sectors(8);

/// The chunk for a COW slice that holds the whole device, where no
/// workload can make it overflow: 64 KiB (128 sectors).
///
/// Then the choice is what the application and the backup pay.  Measured
/// (`cargo xtask bench --parts cow`, 6.12 and 6.1, TCG, 3 rounds;
/// BENCHMARKS.md "What a live snapshot costs"), against 4 KiB chunks:
/// 20 000 first writes into a 256 MiB file cost 1.77 times the
/// instructions of no snapshot instead of 2.08, and 1 MiB reads of the
/// snapshot run at 0.29-0.39 of the device's speed instead of 0.02-0.04
/// (dm-snapshot splits every bio at chunk boundaries).  4 000 writes
/// scattered over a 700 MiB file cost 3.16 times instead of 1.95 and copy
/// 13 times the COW, which a slice of the device's size holds.
pub const LARGE_CHUNK: Sectors = Sectors(128);

/// The chunk [`Ops::snapshot_create`] uses for a device of `device`
/// sectors with a COW slice of `slice` sectors when the request names
/// none: [`LARGE_CHUNK`] if the slice, less [`COW_RESERVED`], holds the
/// device's worst case with it ([`cow_worst_case`]), else [`SMALL_CHUNK`].
///
/// ```
/// use blk_interposer::{choose_chunk, Sectors, LARGE_CHUNK, SMALL_CHUNK};
/// let gib = Sectors(2 << 20);
/// assert_eq!(choose_chunk(gib, Sectors(3 << 20), false), LARGE_CHUNK);
/// assert_eq!(choose_chunk(gib, Sectors(1 << 20), false), SMALL_CHUNK);
/// ```
pub fn choose_chunk(device: Sectors, slice: Sectors, persistent: bool) -> Sectors {
    if cow_worst_case(device, LARGE_CHUNK, persistent).0 + COW_RESERVED.0 <= slice.0 {
        LARGE_CHUNK
    } else {
        SMALL_CHUNK
    }
}

/// The most COW space a snapshot of a `device`-sector device can use, with
/// `chunk`: every chunk of the device copied once, and for a persistent
/// store its header chunk and one metadata chunk per `chunk / 16 bytes`
/// exceptions (dm-snapshot's on-disk exception store).
///
/// ```
/// use blk_interposer::{cow_worst_case, Sectors};
/// // 1 GiB in 4 KiB chunks: 262144 chunks, and 1 + 1024 metadata chunks
/// assert_eq!(cow_worst_case(Sectors(2 << 20), Sectors(8), false), Sectors(2 << 20));
/// assert_eq!(cow_worst_case(Sectors(2 << 20), Sectors(8), true), Sectors((2 << 20) + 1025 * 8));
/// ```
pub fn cow_worst_case(device: Sectors, chunk: Sectors, persistent: bool) -> Sectors {
    let c = chunk.0.max(1);
    let chunks = device.0.div_ceil(c);
    let meta = if persistent {
        let per_area = c * 512 / 16;
        1 + chunks.div_ceil(per_area)
    } else {
        0
    };
    Sectors((chunks + meta) * c)
}

/// The start of every COW slice that dm-snapshot never gets: 1 MiB, zeroed
/// by `create`.
///
/// dm-snapshot's transient store puts its first copy at the start of its
/// device.  When that is the origin's first chunk, the COW store would show
/// blkid, udev and LVM the origin's filesystem or PV, UUID and all: a
/// second device with the UUID that `/etc/fstab` mounts, or a duplicate PV.
/// blkid's probes look within the first megabyte (ext4 at 1 KiB, md 1.2 and
/// bcache at 4 KiB, btrfs at 64 KiB, ZFS labels up to 512 KiB); zeroing it
/// also wipes what the store held before.
pub const COW_RESERVED: Sectors = Sectors(2048);

/// The smallest COW slice: [`COW_RESERVED`] and 1 MiB for copies.
pub const MIN_COW: Sectors = Sectors(4096);

/// Every uuid of a snapshot group starts with this.
pub const UUID_PREFIX: &str = "INTERPOSER-SNAP-";

/// Where the copy-on-write data goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CowStore {
    /// Block devices: one for all devices (split into equal slices, in the
    /// order of the devices), or one per device.
    Devices(Vec<PathBuf>),
    /// A file created at `path` (it must not exist), preallocated to `size`,
    /// on a loop device; split like one device.  `remove` deletes it.
    File {
        /// The file to create.
        path: PathBuf,
        /// Its size.
        size: Sectors,
    },
}

/// What [`Ops::snapshot_create`] should make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The group name: a prefix of the dm names.
    pub name: String,
    /// The devices to snapshot at one point in time.
    pub devices: Vec<PathBuf>,
    /// The COW store.
    pub cow: CowStore,
    /// Chunk size: a power of two, at least 8 sectors; `None`: chosen per
    /// device by [`choose_chunk`].
    pub chunk: Option<Sectors>,
    /// `P`: the exception store's metadata on the COW store too, committed
    /// every few copies, or `N` (the default): in memory.  Nothing of ours
    /// reassembles a snapshot after a reboot (its origin is gone with the
    /// boot), so `P` buys only cost: measured, 17 % more instructions per
    /// first write and 12 to 52 % of its IOPS (BENCHMARKS.md).
    pub persistent: bool,
    /// The COW devices may be overwritten although blkid finds something
    /// on them (a filesystem, a PV, a partition table).  A COW device in
    /// use (mounted, held) is refused all the same.
    pub overwrite: bool,
}

impl SnapshotRequest {
    /// A transient snapshot of `devices` whose chunks [`choose_chunk`] picks.
    pub fn new(name: &str, devices: Vec<PathBuf>, cow: CowStore) -> Self {
        SnapshotRequest {
            name: name.to_string(),
            devices,
            cow,
            chunk: None,
            persistent: false,
            overwrite: false,
        }
    }
}

/// The state of a snapshot, from its dm status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapState {
    /// The image is the point in time.
    Valid,
    /// dm-snapshot dropped it: read nothing from it.
    Invalid,
    /// Status unreadable (a device missing from a half-removed group).
    Unknown,
}

/// One device of a snapshot group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotMember {
    /// The snapshotted device, e.g. `/dev/vdb1`.
    pub device: String,
    /// Its number.
    pub dev: DevNo,
    /// Whether its bios go through the origin now.
    pub attached: bool,
    /// The interposer it was on before, when the snapshot stacks on one.
    pub stacked_on: Option<String>,
    /// The origin's dm name (`NAME-k-origin`).
    pub origin: Option<String>,
    /// The snapshot's dm name (`NAME-k-snap`).
    pub snapshot: Option<String>,
    /// What to read: `/dev/mapper/NAME-k-snap`.
    pub snapshot_path: Option<PathBuf>,
    /// The COW slice's dm name (`NAME-k-cow`).
    pub cow: Option<String>,
    /// The device the slice is on, e.g. `/dev/vdc` or `/dev/loop0`.
    pub cow_store: Option<String>,
    /// Chunk size.
    pub chunk: Option<Sectors>,
    /// `P` (true) or `N`.
    pub persistent: Option<bool>,
    /// The most COW space the snapshot can use: every chunk of the device
    /// copied ([`cow_worst_case`]).  When it exceeds `cow_total`, enough
    /// writes overflow the slice.
    pub cow_worst: Option<Sectors>,
    /// Valid, invalid or unknown.
    pub state: SnapState,
    /// Why it is not valid.
    pub reason: Option<String>,
    /// COW sectors in use (data and metadata).
    pub cow_used: Option<Sectors>,
    /// COW sectors in all.
    pub cow_total: Option<Sectors>,
    /// `cow_used / cow_total` in percent, two decimals.
    pub cow_used_percent: Option<f64>,
}

/// A snapshot group: devices snapshotted at one point in time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotGroup {
    /// The group name.
    pub name: String,
    /// Its devices, by device number.
    pub devices: Vec<SnapshotMember>,
}

/// What [`Ops::snapshot_remove`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotRemoveReport {
    /// The group name.
    pub name: String,
    /// The devices, now back on their own (or on their old interposer).
    pub devices: Vec<String>,
    /// For each of `devices`, the dm name of the interposer it went back
    /// to (the era device the group stacked on), or `None`: on its own.
    pub back_on: Vec<Option<String>>,
    /// How many devices the SWITCH moved back (0 when none was attached).
    pub switched: usize,
    /// The dm devices removed.
    pub removed: Vec<String>,
    /// The COW files removed with their loop devices.
    pub cow_files_removed: Vec<PathBuf>,
    /// Lower devices removed.
    pub lowers_removed: Vec<String>,
}

/// The role of a dm device in a group, as its uuid says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Origin,
    Snap,
    Cow,
    /// A COW slice on a loop device `create` made.
    CowLoop,
}

impl Role {
    const ALL: [Role; 4] = [Role::Origin, Role::Snap, Role::Cow, Role::CowLoop];

    fn tag(self) -> &'static str {
        match self {
            Role::Origin => "ORIGIN",
            Role::Snap => "SNAP",
            Role::Cow => "COW",
            Role::CowLoop => "COWLOOP",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Snap => "snap",
            Role::Cow | Role::CowLoop => "cow",
        }
    }
}

/// `INTERPOSER-SNAP-ROLE-MAJ:MIN-GROUP` (dm keeps 128 bytes).
fn snap_uuid(role: Role, dev: DevNo, group: &str) -> String {
    let mut u = format!("{UUID_PREFIX}{}-{dev}-{group}", role.tag());
    u.truncate(crate::dm::mapper::MAX_UUID);
    u
}

fn parse_uuid(uuid: &str) -> Option<(Role, DevNo, &str)> {
    let rest = uuid.strip_prefix(UUID_PREFIX)?;
    let (tag, rest) = rest.split_once('-')?;
    let role = Role::ALL.into_iter().find(|r| r.tag() == tag)?;
    let (dev, group) = rest.split_once('-')?;
    Some((role, dev.parse().ok()?, group))
}

/// Whether `uuid` is a snapshot image's (`…-snap`), the one dm device of a
/// group that is meant to be read.
pub(crate) fn is_image_uuid(uuid: &str) -> bool {
    matches!(parse_uuid(uuid), Some((Role::Snap, _, _)))
}

/// The dm devices of one snapshotted device.
#[derive(Clone, Debug, Default)]
struct Part {
    origin: Option<DmDevice>,
    snap: Option<DmDevice>,
    cow: Option<DmDevice>,
    cow_loop: bool,
}

/// What dm-snapshot's status line says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CowStatus {
    state: SnapState,
    reason: Option<String>,
    used: Option<Sectors>,
    total: Option<Sectors>,
}

/// dm-snapshot's status: `USED/TOTAL METADATA`, or `Invalid`, `Overflow`,
/// `Merge failed`, `Unknown`.
fn parse_status(line: &str) -> CowStatus {
    let invalid = |why: &str| CowStatus {
        state: SnapState::Invalid,
        reason: Some(why.to_string()),
        used: None,
        total: None,
    };
    let line = line.trim();
    match line {
        // dm-snapshot drops a snapshot whose COW store cannot take another
        // chunk (ENOMEM/ENOSPC) or fails I/O (EIO); full is by far the
        // common case, and the kernel log names which.
        "Invalid" => invalid(
            "COW store full (overflow), or a COW I/O error (`dmesg | grep snapshots` says which)",
        ),
        "Overflow" => invalid("COW store full (overflow)"),
        "Merge failed" => invalid("merge failed"),
        _ => {
            let first = line.split_whitespace().next().unwrap_or("");
            match first.split_once('/').map(|(u, t)| (u.parse(), t.parse())) {
                Some((Ok(u), Ok(t))) => CowStatus {
                    state: SnapState::Valid,
                    reason: None,
                    used: Some(Sectors(u)),
                    total: Some(Sectors(t)),
                },
                _ => CowStatus {
                    state: SnapState::Unknown,
                    reason: Some(format!("unexpected status `{line}`")),
                    used: None,
                    total: None,
                },
            }
        }
    }
}

/// One device's plan in `create`.
struct Plan {
    dev: DevNo,
    kname: String,
    /// The interposer the device is on now, if any.
    stacked_on: Option<DevNo>,
    /// (COW store, offset, length) of its slice.
    slice: (usize, Sectors, Sectors),
    /// Its chunk: the request's, or [`choose_chunk`]'s.
    chunk: Sectors,
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Snapshot `req.devices` at one point in time.
    ///
    /// Builds, per device, a COW slice, a `snapshot` and a `snapshot-origin`
    /// (see the [module docs](self)), then moves every device onto its origin
    /// with one SWITCH.  Each step undoes the ones before it when it fails;
    /// until the SWITCH nothing touches the devices' I/O.
    ///
    /// ```no_run
    /// use blk_interposer::ops::snapshot::{CowStore, SnapshotRequest};
    /// use blk_interposer::Ops;
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let ops = Ops::system()?;
    /// let req = SnapshotRequest::new(
    ///     "bk",
    ///     vec!["/dev/vdb1".into(), "/dev/vdb2".into()],
    ///     CowStore::Devices(vec!["/dev/vdc".into()]),
    /// );
    /// let group = ops.snapshot_create(&req)?;
    /// for m in &group.devices {
    ///     // mount -o ro,noload /dev/mapper/bk-vdb1-snap /backup, or dd it
    ///     println!("{} -> {:?}", m.device, m.snapshot_path);
    /// }
    /// ops.snapshot_remove("bk")?;
    /// # Ok(()) }
    /// ```
    pub fn snapshot_create(&self, req: &SnapshotRequest) -> Result<SnapshotGroup> {
        let (plans, stores) = self.snapshot_plan(req)?;
        let mut undo = Vec::new();
        match self.snapshot_steps(req, &plans, stores, &mut undo) {
            Ok(()) => self.snapshot_info(&req.name),
            Err(e) => Err(self.undo(e, undo)),
        }
    }

    /// Check everything that can be checked before any change.
    fn snapshot_plan(&self, req: &SnapshotRequest) -> Result<(Vec<Plan>, Vec<Store>)> {
        check_name(&req.name)?;
        if let Some(Sectors(chunk)) = req.chunk {
            if chunk < 8 || !chunk.is_power_of_two() {
                return Err(Error::BadRequest {
                    what: format!(
                        "chunk size {chunk} sectors: it must be a power of two of at least 8 sectors (4 KiB)"
                    ),
                });
            }
        }
        if req.devices.is_empty() {
            return Err(Error::BadRequest {
                what: "no device to snapshot".into(),
            });
        }
        if !self.snapshot_parts(Some(&req.name))?.is_empty() {
            return Err(Error::BadRequest {
                what: format!(
                    "a snapshot group named `{}` exists already; pick another --name or `interposer snapshot remove {}`",
                    req.name, req.name
                ),
            });
        }
        let mut devs = Vec::new();
        for p in &req.devices {
            let dev = self.resolve_device(p)?;
            if devs.contains(&dev) {
                return Err(Error::BadRequest {
                    what: format!("{} is given twice", p.display()),
                });
            }
            devs.push(dev);
        }
        let stores = match &req.cow {
            CowStore::Devices(v) => {
                if v.len() != 1 && v.len() != devs.len() {
                    return Err(Error::CowCount {
                        cows: v.len(),
                        devices: devs.len(),
                    });
                }
                let mut stores = Vec::new();
                for p in v {
                    let dev = self.resolve_any(p)?;
                    if devs.contains(&dev) {
                        return Err(Error::BadRequest {
                            what: format!(
                                "{} is both snapshotted and a COW store; give another device to --cow",
                                p.display()
                            ),
                        });
                    }
                    match self.host.occupied(dev)? {
                        Some(what @ Occupied::InUse) => {
                            return Err(Error::CowOccupied {
                                cow: p.display().to_string(),
                                what: what.to_string(),
                                yes_helps: false,
                            })
                        }
                        Some(what) if !req.overwrite => {
                            return Err(Error::CowOccupied {
                                cow: p.display().to_string(),
                                what: what.to_string(),
                                yes_helps: true,
                            })
                        }
                        _ => {}
                    }
                    stores.push(Store {
                        label: p.display().to_string(),
                        dev: Some(dev),
                        size: self.host.sectors(dev)?,
                    });
                }
                stores
            }
            CowStore::File { path, size } => vec![Store {
                label: path.display().to_string(),
                dev: None,
                size: *size,
            }],
        };
        let share = if stores.len() == 1 { devs.len() } else { 1 };
        let mut plans = Vec::new();
        for (i, &dev) in devs.iter().enumerate() {
            let kname = self
                .host
                .kernel_name(dev)
                .unwrap_or_else(|| dev.to_string())
                .replace('/', "!");
            for role in [Role::Cow, Role::Snap, Role::Origin] {
                let name = dm_name(&req.name, &kname, role);
                check_name(&name)?;
                if self.dm.devno(&name)?.is_some() {
                    return Err(Error::DmExists { name });
                }
            }
            let stacked_on = match self.kernel.status(dev) {
                Ok(s) if s.state == State::Attached => s.interposer,
                Ok(s) if s.state == State::Gone => {
                    return Err(Error::NoSuchDevice {
                        op: "snapshot",
                        dev: self.device_label(dev),
                    })
                }
                Ok(_) | Err(Error::NoLower { .. }) => None,
                Err(e) => return Err(e),
            };
            let (store, nth) = if stores.len() == 1 { (0, i) } else { (i, 0) };
            // slices start on a multiple of the largest chunk we choose,
            // so that either choice divides them
            let whole = stores[store].size.0 / share as u64;
            let align = req.chunk.unwrap_or(LARGE_CHUNK).0;
            let len = Sectors(whole / align * align);
            let chunk = match req.chunk {
                Some(c) => c,
                None => choose_chunk(self.host.sectors(dev)?, len, req.persistent),
            };
            if len < MIN_COW {
                return Err(Error::CowTooSmall {
                    cow: stores[store].label.clone(),
                    have: len.0,
                    need: MIN_COW.0,
                });
            }
            plans.push(Plan {
                dev,
                kname,
                stacked_on,
                slice: (store, Sectors(len.0 * nth as u64), len),
                chunk,
            });
        }
        Ok((plans, stores))
    }

    fn snapshot_steps(
        &self,
        req: &SnapshotRequest,
        plans: &[Plan],
        mut stores: Vec<Store>,
        undo: &mut Vec<Undo>,
    ) -> Result<()> {
        let mut made_loop = false;
        if let CowStore::File { path, size } = &req.cow {
            let dev = self.host.loop_create(path, *size)?;
            undo.push(Undo::Loop(dev));
            stores[0].dev = Some(dev);
            made_loop = true;
        }
        let mode = if req.persistent { "P" } else { "N" };
        let mut moves = Vec::new();
        for p in plans {
            let base = match p.stacked_on {
                Some(x) => x,
                None => {
                    let (lower, created) = self.lower_of(p.dev)?;
                    if created {
                        undo.push(Undo::Lower(p.dev));
                    }
                    lower.devno
                }
            };
            let size = self.kernel.status(p.dev)?.sectors;
            let (store, offset, len) = p.slice;
            let store = stores[store].dev.expect("the loop device exists by now");
            let cow_role = if made_loop { Role::CowLoop } else { Role::Cow };
            let cow = self.snapshot_dm(
                req,
                p,
                cow_role,
                &format!("0 {len} linear {store} {offset}"),
                undo,
            )?;
            // Zero the slice's start, then keep it from dm-snapshot
            // (COW_RESERVED): no copy of the origin's first chunk there for
            // blkid to find, and no old header for a persistent store to
            // load as an existing snapshot (LVM zeroes it too).
            let cow_name = dm_name(&req.name, &p.kname, cow_role);
            self.host
                .zero_start(&mapper_path(&cow_name), COW_RESERVED)?;
            let copies: Table = format!(
                "0 {} linear {store} {}",
                len.0 - COW_RESERVED.0,
                offset.0 + COW_RESERVED.0
            )
            .parse()?;
            self.dm.load(&cow_name, &copies)?;
            self.dm.resume(&cow_name)?;
            self.snapshot_dm(
                req,
                p,
                Role::Snap,
                &format!("0 {size} snapshot {base} {cow} {mode} {}", p.chunk),
                undo,
            )?;
            let origin = self.snapshot_dm(
                req,
                p,
                Role::Origin,
                &format!("0 {size} snapshot-origin {base}"),
                undo,
            )?;
            // The origin computes its chunk boundary at resume (NOTES.md):
            // resume it once more now that everything is in place.
            let name = dm_name(&req.name, &p.kname, Role::Origin);
            self.dm.suspend(&name)?;
            self.dm.resume(&name)?;
            moves.push(Switch {
                dev: p.dev,
                to: Some(origin),
            });
        }
        self.switch_devices(&moves)
    }

    /// Create, load and resume one dm device of the group, with its node.
    fn snapshot_dm(
        &self,
        req: &SnapshotRequest,
        p: &Plan,
        role: Role,
        table: &str,
        undo: &mut Vec<Undo>,
    ) -> Result<DevNo> {
        let name = dm_name(&req.name, &p.kname, role);
        let table: Table = table.parse()?;
        let uuid = snap_uuid(role, p.dev, &req.name);
        Ok(self.dm_live(&name, &uuid, &table, undo)?.0)
    }

    /// The dm devices of every snapshot group (or of `group`), from their
    /// uuids: group -> device -> part.
    fn snapshot_parts(
        &self,
        group: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeMap<DevNo, Part>>> {
        let mut groups: BTreeMap<String, BTreeMap<DevNo, Part>> = BTreeMap::new();
        for d in self.dm.list()? {
            let Some(uuid) = self.dm.uuid(&d.name)? else {
                continue;
            };
            let Some((role, dev, g)) = parse_uuid(&uuid) else {
                continue;
            };
            if group.is_some_and(|want| want != g) {
                continue;
            }
            let part = groups
                .entry(g.to_string())
                .or_default()
                .entry(dev)
                .or_default();
            match role {
                Role::Origin => part.origin = Some(d),
                Role::Snap => part.snap = Some(d),
                Role::Cow | Role::CowLoop => {
                    part.cow_loop = role == Role::CowLoop;
                    part.cow = Some(d);
                }
            }
        }
        Ok(groups)
    }

    /// The snapshot group dm device `name` belongs to, if any.
    pub(crate) fn snapshot_group_of(&self, name: &str) -> Result<Option<String>> {
        let uuid = self.dm.uuid(name)?;
        Ok(uuid
            .as_deref()
            .and_then(parse_uuid)
            .map(|(_, _, g)| g.to_string()))
    }

    /// Every snapshot group, from the dm devices' uuids and tables, with
    /// each snapshot's COW use and state.
    ///
    /// ```no_run
    /// use blk_interposer::{Ops, SnapState};
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// for group in Ops::system()?.snapshot_list()? {
    ///     for m in group.devices {
    ///         if m.state != SnapState::Valid {
    ///             eprintln!("{}: {} is {:?}: {:?}", group.name, m.device, m.state, m.reason);
    ///         }
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn snapshot_list(&self) -> Result<Vec<SnapshotGroup>> {
        let all = self.kernel.list()?;
        Ok(self
            .snapshot_parts(None)?
            .into_iter()
            .map(|(name, parts)| self.snapshot_group(name, &parts, &all))
            .collect())
    }

    /// One snapshot group.
    pub fn snapshot_info(&self, name: &str) -> Result<SnapshotGroup> {
        let all = self.kernel.list()?;
        let parts = self
            .snapshot_parts(Some(name))?
            .remove(name)
            .ok_or_else(|| Error::SnapshotNotFound { name: name.into() })?;
        Ok(self.snapshot_group(name.to_string(), &parts, &all))
    }

    fn snapshot_group(
        &self,
        name: String,
        parts: &BTreeMap<DevNo, Part>,
        all: &[Status],
    ) -> SnapshotGroup {
        let devices = parts
            .iter()
            .map(|(&dev, p)| self.snapshot_member(dev, p, all))
            .collect();
        SnapshotGroup { name, devices }
    }

    /// The device the snapshot reads and the origin writes: the lower
    /// device, or the interposer the group stacks on.
    fn snapshot_base(&self, p: &Part) -> Option<DevNo> {
        if let Some(o) = &p.origin {
            if let Some(&d) = self.dm.deps(o.devno).ok()?.first() {
                return Some(d);
            }
        }
        let t = self.dm.table(&p.snap.as_ref()?.name).ok()?;
        let base = t.plain_args().next()?.parse().ok();
        base
    }

    /// Where `dev` goes back to: `None` (itself) or the interposer the group
    /// stacks on.
    fn snapshot_back_to(&self, p: &Part, status: Option<&Status>) -> Option<DevNo> {
        let base = self.snapshot_base(p)?;
        (status.map(|s| s.lower.devno) != Some(base)).then_some(base)
    }

    fn snapshot_member(&self, dev: DevNo, p: &Part, all: &[Status]) -> SnapshotMember {
        let status = all.iter().find(|s| s.dev == dev);
        let attached = p.origin.is_some()
            && status.and_then(|s| s.interposer) == p.origin.as_ref().map(|o| o.devno);
        let stacked_on = self.snapshot_back_to(p, status).map(|x| {
            self.dm
                .name_of(x)
                .ok()
                .flatten()
                .unwrap_or_else(|| x.to_string())
        });
        let table = p.snap.as_ref().and_then(|s| self.dm.table(&s.name).ok());
        let args: Vec<&str> = table
            .as_ref()
            .map(|t| t.plain_args().collect())
            .unwrap_or_default();
        let cow = match &p.snap {
            Some(s) => match self.dm.status(&s.name) {
                Ok(line) => parse_status(&line),
                Err(e) => CowStatus {
                    state: SnapState::Unknown,
                    reason: Some(e.to_string()),
                    used: None,
                    total: None,
                },
            },
            None => CowStatus {
                state: SnapState::Unknown,
                reason: Some("the snapshot device is missing".into()),
                used: None,
                total: None,
            },
        };
        let percent = match (cow.used, cow.total) {
            (Some(u), Some(t)) if t.0 > 0 => {
                Some((u.0 as f64 * 10000.0 / t.0 as f64).round() / 100.0)
            }
            _ => None,
        };
        let chunk: Option<Sectors> = args.get(3).and_then(|c| c.parse().ok());
        let persistent = args
            .get(2)
            .map(|m| m.eq_ignore_ascii_case("p") || m.eq_ignore_ascii_case("po"));
        let cow_worst = match (table.as_ref(), chunk, persistent) {
            (Some(t), Some(c), Some(pers)) => Some(cow_worst_case(t.size(), c, pers)),
            _ => None,
        };
        let cow_store = p.cow.as_ref().and_then(|c| {
            let d = *self.dm.deps(c.devno).ok()?.first()?;
            Some(self.device_label(d))
        });
        SnapshotMember {
            device: self.device_label(dev),
            dev,
            attached,
            stacked_on,
            origin: p.origin.as_ref().map(|o| o.name.clone()),
            snapshot: p.snap.as_ref().map(|s| s.name.clone()),
            snapshot_path: p.snap.as_ref().map(|s| mapper_path(&s.name)),
            cow: p.cow.as_ref().map(|c| c.name.clone()),
            cow_store,
            chunk,
            persistent,
            cow_worst,
            state: cow.state,
            reason: cow.reason,
            cow_used: cow.used,
            cow_total: cow.total,
            cow_used_percent: percent,
        }
    }

    /// Take snapshot group `name` away: one SWITCH moves every device back
    /// (to itself, or to the interposer the group stacked on), then the
    /// snapshots, origins and COW slices are removed, the loop devices and
    /// COW files `create` made, and the lower devices nothing uses any more.
    ///
    /// Refuses, before changing anything, while a snapshot is open (mounted):
    /// without its origin it would stop being a point in time under the
    /// reader.  After the SWITCH it keeps going past a failed step and lists
    /// what is left; running it again finishes the job.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), blk_interposer::Error> {
    /// let report = blk_interposer::Ops::system()?.snapshot_remove("bk")?;
    /// println!("{} back on their own", report.devices.join(", "));
    /// # Ok(()) }
    /// ```
    pub fn snapshot_remove(&self, name: &str) -> Result<SnapshotRemoveReport> {
        let parts = self
            .snapshot_parts(Some(name))?
            .remove(name)
            .ok_or_else(|| Error::SnapshotNotFound { name: name.into() })?;
        for s in parts.values().filter_map(|p| p.snap.as_ref()) {
            if self.dm.open_count(&s.name)? > 0 {
                return Err(Error::SnapshotInUse {
                    name: name.into(),
                    snapshot: mapper_path(&s.name).display().to_string(),
                });
            }
        }
        let all = self.kernel.list()?;
        let mut moves = Vec::new();
        let mut back = BTreeMap::new();
        for (&dev, p) in &parts {
            let status = all.iter().find(|s| s.dev == dev);
            let to = self.snapshot_back_to(p, status);
            back.insert(dev, to);
            let on_origin = status.and_then(|s| s.interposer);
            if on_origin.is_some() && on_origin == p.origin.as_ref().map(|o| o.devno) {
                moves.push(Switch { dev, to });
            }
        }
        if !moves.is_empty() {
            self.switch_devices(&moves)?;
        }
        let mut report = SnapshotRemoveReport {
            name: name.into(),
            devices: parts.keys().map(|&d| self.device_label(d)).collect(),
            back_on: back
                .values()
                .map(|to| {
                    to.map(|x| {
                        self.dm
                            .name_of(x)
                            .ok()
                            .flatten()
                            .unwrap_or_else(|| x.to_string())
                    })
                })
                .collect(),
            switched: moves.len(),
            removed: Vec::new(),
            cow_files_removed: Vec::new(),
            lowers_removed: Vec::new(),
        };
        let mut leftovers = Vec::new();
        let mut loops = Vec::new();
        for p in parts.values() {
            if p.cow_loop {
                if let Some(c) = &p.cow {
                    loops.extend(self.dm.deps(c.devno).unwrap_or_default());
                }
            }
            // The snapshot before its origin: an origin whose snapshot is
            // gone is a plain mapping, never the other way round.
            for d in [&p.snap, &p.origin, &p.cow].into_iter().flatten() {
                match self.dm.remove(&d.name) {
                    Ok(()) => {
                        let _ = self.host.remove_node(&mapper_path(&d.name), d.devno);
                        report.removed.push(d.name.clone());
                    }
                    Err(e) => leftovers.push(format!("dm device {} ({e})", d.name)),
                }
            }
        }
        loops.sort();
        loops.dedup();
        for l in loops {
            match self.host.loop_remove(l) {
                Ok(file) => report.cow_files_removed.extend(file),
                Err(e) => leftovers.push(format!("loop device {} ({e})", self.device_label(l))),
            }
        }
        for (&dev, to) in &back {
            if to.is_some() {
                continue; // the lower device belongs to the interposer below
            }
            match self.kernel.lower_remove(dev) {
                Ok(()) => report.lowers_removed.push(self.device_label(dev)),
                // Still used by another table, or already gone: not ours to force.
                Err(Error::LowerBusy { .. } | Error::NoLower { .. }) => {}
                Err(e) => {
                    leftovers.push(format!("lower device of {} ({e})", self.device_label(dev)))
                }
            }
        }
        if leftovers.is_empty() {
            Ok(report)
        } else {
            Err(Error::SnapshotLeftovers {
                name: name.into(),
                leftovers,
            })
        }
    }
}

/// A COW store: a block device, or (`dev: None`) a file still to create.
struct Store {
    label: String,
    dev: Option<DevNo>,
    size: Sectors,
}

fn dm_name(group: &str, kname: &str, role: Role) -> String {
    format!("{group}-{kname}-{}", role.suffix())
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
