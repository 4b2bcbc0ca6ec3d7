//! `create NAME TABLE`: lower device, rewritten table, live dm device, attach.

use std::path::PathBuf;

use serde::Serialize;

use crate::dm::check::check_table;
use crate::dm::mapper::{check_name, interposer_uuid};
use crate::dm::{DeviceMapper, Table};
use crate::error::{Error, Result};
use crate::host::{mapper_path, Host};
use crate::kernel::{Kernel, Lower, State};
use crate::ops::Ops;
use crate::types::DevNo;

/// What `create` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreateReport {
    /// The dm name.
    pub name: String,
    /// The dm uuid (`INTERPOSER-vdb-NAME`).
    pub uuid: String,
    /// The interposed device, e.g. `/dev/vdb`.
    pub device: String,
    /// Its number.
    pub dev: DevNo,
    /// The lower device, e.g. `/dev/interposer/vdb`.
    pub lower: String,
    /// Its number (what `[interpose]DEV` became in the table).
    pub lower_dev: DevNo,
    /// Whether this call created the lower device (or reused one).
    pub lower_created: bool,
    /// The dm device's number.
    pub dm_dev: DevNo,
    /// `/dev/mapper/NAME`.
    pub node: PathBuf,
    /// Whether we made that node (no udev).
    pub node_created: bool,
    /// The table as loaded, `[interpose]` rewritten.
    pub table: String,
}

/// A step to undo if a later one fails.
pub(super) enum Undo {
    Lower(DevNo),
    Dm(String),
    Node(PathBuf, DevNo),
    /// A loop device and its backing file.
    Loop(DevNo),
}

impl<K: Kernel, D: DeviceMapper, H: Host> Ops<K, D, H> {
    /// Create dm device `name` from `table` and put it on the device that
    /// `table` names as `[interpose]DEV`.  The dm device is live before any
    /// bio is redirected to it.
    pub fn create(&self, name: &str, table: &Table) -> Result<CreateReport> {
        check_name(name)?;
        if self.dm.devno(name)?.is_some() {
            return Err(Error::DmExists {
                name: name.to_string(),
            });
        }
        let target = check_table(table, &self.host, &self.dm)?;
        let dev = target.dev;
        let device = target.path.path().display().to_string();
        match self.kernel.status(dev) {
            Ok(s) if s.state == State::Attached => {
                let by = s.interposer.and_then(|i| self.dm.name_of(i).ok().flatten());
                return Err(Error::AlreadyAttached { dev: device, by });
            }
            Ok(_) | Err(Error::NoLower { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut undo = Vec::new();
        match self.create_steps(name, table, dev, &device, &mut undo) {
            Ok(report) => Ok(report),
            Err(error) => Err(self.undo(error, undo)),
        }
    }

    fn create_steps(
        &self,
        name: &str,
        table: &Table,
        dev: DevNo,
        device: &str,
        undo: &mut Vec<Undo>,
    ) -> Result<CreateReport> {
        let (lower, lower_created) = self.lower_of(dev)?;
        if lower_created {
            undo.push(Undo::Lower(dev));
        }
        let live = table.rewrite_interposed(lower.devno);
        let kname = self.host.kernel_name(dev).unwrap_or_else(|| {
            lower
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&lower.name)
                .to_string()
        });
        let uuid = interposer_uuid(&kname, name);
        let (dm_dev, node, node_created) = self.dm_live(name, &uuid, &live, undo)?;
        self.kernel.attach(dev, dm_dev).map_err(|e| match e {
            // Lost a race with another create: name the winner.
            Error::AlreadyAttached { dev: label, .. } => Error::AlreadyAttached {
                dev: label,
                by: self.interposer_name(dev),
            },
            e => e,
        })?;
        Ok(CreateReport {
            name: name.to_string(),
            uuid,
            device: device.to_string(),
            dev,
            lower: lower.path(),
            lower_dev: lower.devno,
            lower_created,
            dm_dev,
            node,
            node_created,
            table: live.to_string(),
        })
    }

    /// The lower device of `dev`: created now (`true`) or reused.
    pub(super) fn lower_of(&self, dev: DevNo) -> Result<(Lower, bool)> {
        match self.kernel.lower_create(dev) {
            Ok(lower) => Ok((lower, true)),
            Err(Error::LowerExists { .. }) => Ok((self.kernel.status(dev)?.lower, false)),
            Err(e) => Err(e),
        }
    }

    /// Create dm device `name`, load `table`, resume it and make its node;
    /// each step is pushed to `undo`.  Its number, node, and whether we made
    /// the node.
    pub(super) fn dm_live(
        &self,
        name: &str,
        uuid: &str,
        table: &Table,
        undo: &mut Vec<Undo>,
    ) -> Result<(DevNo, PathBuf, bool)> {
        let dev = self.dm.create(name, uuid)?;
        undo.push(Undo::Dm(name.to_string()));
        self.dm.load(name, table)?;
        self.dm.resume(name)?;
        let node = mapper_path(name);
        let created = self.host.ensure_node(&node, dev)?;
        if created {
            undo.push(Undo::Node(node.clone(), dev));
        }
        Ok((dev, node, created))
    }

    /// The dm name of the interposer `dev` is attached to, if any.
    fn interposer_name(&self, dev: DevNo) -> Option<String> {
        let s = self.kernel.status(dev).ok()?;
        self.dm.name_of(s.interposer?).ok().flatten()
    }

    /// Undo `steps` in reverse; the original error, with what is left
    /// behind when an undo fails too.
    pub(super) fn undo(&self, error: Error, steps: Vec<Undo>) -> Error {
        let mut leftovers = Vec::new();
        for step in steps.into_iter().rev() {
            match step {
                Undo::Node(path, d) => {
                    if self.host.remove_node(&path, d).is_err() {
                        leftovers.push(format!("device node {} (rm it)", path.display()));
                    }
                }
                Undo::Dm(name) => {
                    if let Err(e) = self.dm.remove(&name) {
                        leftovers.push(format!("dm device {name} ({e}; `dmsetup remove {name}`)"));
                    }
                }
                Undo::Loop(d) => {
                    if let Err(e) = self.host.loop_remove(d) {
                        leftovers.push(format!("loop device {d} ({e}; `losetup -d`)"));
                    }
                }
                Undo::Lower(d) => match self.kernel.lower_remove(d) {
                    Ok(()) => {}
                    Err(e) => {
                        leftovers.push(format!("lower device of {} ({e})", self.device_label(d)))
                    }
                },
            }
        }
        if leftovers.is_empty() {
            error
        } else {
            Error::UndoFailed {
                error: Box::new(error),
                leftovers,
            }
        }
    }
}
