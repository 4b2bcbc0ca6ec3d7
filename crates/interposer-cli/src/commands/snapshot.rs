//! `interposer snapshot create|ls|remove`

use std::path::{Path, PathBuf};

use anyhow::Context;
use blk_interposer::{
    CowStore, Sectors, SnapState, SnapshotGroup, SnapshotMember, SnapshotRemoveReport,
    SnapshotRequest,
};

use crate::cli::{
    CowArgs, SnapshotCommand, SnapshotCreateArgs, SnapshotNameArgs, SnapshotRemoveArgs,
};
use crate::output;

pub fn exec(cmd: SnapshotCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create(args) => create(args, json),
        SnapshotCommand::Ls => ls(json),
        SnapshotCommand::Info(args) => info(args, json),
        SnapshotCommand::Remove(args) => remove(args, json),
    }
}

fn create(args: SnapshotCreateArgs, json: bool) -> anyhow::Result<()> {
    let req = request(args);
    let devices: Vec<&Path> = req.devices.iter().map(PathBuf::as_path).collect();
    let cows: Vec<&Path> = match &req.cow {
        CowStore::Devices(v) => v.iter().map(PathBuf::as_path).collect(),
        CowStore::File { .. } => Vec::new(),
    };
    let group = super::with_system(&[devices, cows].concat(), |ops| ops.snapshot_create(&req))
        .with_context(|| format!("cannot create snapshot group {}", req.name))?;
    if json {
        return output::json(&group);
    }
    let mut lines = vec![format!(
        "Snapshot group {}: {} device{} at one point in time.",
        group.name,
        group.devices.len(),
        if group.devices.len() == 1 { "" } else { "s" }
    )];
    lines.extend(output::table(&rows(std::slice::from_ref(&group))));
    let chose = req.chunk.is_none();
    lines.extend(group.devices.iter().map(|m| cow_line(m, chose)));
    if let Some(p) = group.devices.first().and_then(|m| m.snapshot_path.as_ref()) {
        lines.push(format!(
            "Read it, e.g. `mount -o ro,noload {} /backup` (XFS: -o ro,nouuid,norecovery); then `interposer snapshot remove {}`.",
            p.display(),
            group.name
        ));
    }
    output::report(lines)
}

/// The library request from the arguments.
fn request(args: SnapshotCreateArgs) -> SnapshotRequest {
    let name = args.name.unwrap_or_else(|| {
        let first = args.devices[0].file_name().unwrap_or_default();
        format!("snap-{}", Path::new(first).display())
    });
    SnapshotRequest {
        chunk: args.chunk_size.map(Sectors),
        persistent: args.persistent,
        overwrite: args.yes,
        ..SnapshotRequest::new(&name, args.devices, cow_store(args.cow))
    }
}

/// The library's COW store from `--cow` or `--cow-file`/`--cow-size`.
pub fn cow_store(args: CowArgs) -> CowStore {
    match (args.cow_file, args.cow_size) {
        (Some(path), Some(size)) => CowStore::File {
            path,
            size: Sectors(size),
        },
        _ => CowStore::Devices(args.cow),
    }
}

fn ls(json: bool) -> anyhow::Result<()> {
    let groups = super::system()?
        .snapshot_list()
        .context("cannot list snapshots")?;
    if json {
        output::json(&groups)
    } else if groups.is_empty() {
        output::lines(["No snapshots.".to_string()])
    } else {
        output::lines(output::table(&rows(&groups)))
    }
}

fn info(args: SnapshotNameArgs, json: bool) -> anyhow::Result<()> {
    let group = super::with_system(&[], |ops| ops.snapshot_info(&args.name))
        .with_context(|| format!("cannot show snapshot group {}", args.name))?;
    if json {
        output::json(&group)
    } else {
        output::lines(output::table(&rows(std::slice::from_ref(&group))))
    }
}

fn remove(args: SnapshotRemoveArgs, json: bool) -> anyhow::Result<()> {
    let report = super::system()?
        .snapshot_remove(&args.name)
        .with_context(|| format!("cannot remove snapshot group {}", args.name))?;
    if json {
        output::json(&report)
    } else {
        output::report(human_remove(&report))
    }
}

/// Column headers of the listing.
const HEADER: [&str; 6] = [
    "GROUP",
    "DEVICE",
    "SNAPSHOT",
    "COW-STORE",
    "COW-USED",
    "STATE",
];

fn rows(groups: &[SnapshotGroup]) -> Vec<Vec<String>> {
    let mut rows = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    for g in groups {
        for m in &g.devices {
            rows.push(vec![
                g.name.clone(),
                m.device.clone(),
                m.snapshot_path
                    .as_ref()
                    .map_or_else(|| "-".into(), |p| p.display().to_string()),
                m.cow_store.clone().unwrap_or_else(|| "-".into()),
                used(m),
                state(m),
            ]);
        }
    }
    rows
}

/// The chunk a member got, and what its COW slice can take.
fn cow_line(m: &SnapshotMember, chose: bool) -> String {
    let chunk = m.chunk.map_or_else(|| "?".into(), |c| output::size(c.0));
    let how = match (chose, m.cow_worst, m.cow_total) {
        (false, ..) => "as asked".to_string(),
        (true, Some(w), Some(t)) if w <= t => format!(
            "chosen: the COW slice, {}, holds every chunk of the device",
            output::size(t.0)
        ),
        (true, ..) => "chosen: the COW slice is smaller than the device".to_string(),
    };
    let store = match m.persistent {
        Some(true) => "metadata on the COW store (P)",
        _ => "metadata in memory (N)",
    };
    let worst = match (m.cow_worst, m.cow_total) {
        (Some(w), Some(t)) if w > t => format!(
            "; worst case {} of COW against {}: size it for the writes while the snapshot lives",
            output::size(w.0),
            output::size(t.0)
        ),
        (Some(w), _) => format!(
            "; worst case {} of COW, it cannot overflow",
            output::size(w.0)
        ),
        _ => String::new(),
    };
    format!("{}: chunk {chunk} ({how}), {store}{worst}.", m.device)
}

fn used(m: &SnapshotMember) -> String {
    match (m.cow_used, m.cow_total, m.cow_used_percent) {
        (Some(u), Some(t), Some(p)) => {
            format!("{} / {} ({p:.1}%)", output::size(u.0), output::size(t.0))
        }
        _ => "-".into(),
    }
}

fn state(m: &SnapshotMember) -> String {
    let s = match m.state {
        SnapState::Valid => "valid",
        SnapState::Invalid => "invalid",
        SnapState::Unknown => "unknown",
    };
    let mut s = match &m.reason {
        Some(r) => format!("{s}: {r}"),
        None => s.to_string(),
    };
    if !m.attached {
        s.push_str(" (device not on its origin)");
    }
    if let Some(x) = &m.stacked_on {
        s.push_str(&format!(" (on {x})"));
    }
    s
}

fn human_remove(r: &SnapshotRemoveReport) -> Vec<String> {
    let each: Vec<String> = r
        .devices
        .iter()
        .zip(&r.back_on)
        .map(|(d, on)| match on {
            Some(i) => format!("{d} back on {i}"),
            None => format!("{d} back on its own"),
        })
        .collect();
    let mut v = vec![format!(
        "Snapshot group {} removed; {}.",
        r.name,
        each.join(", ")
    )];
    for f in &r.cow_files_removed {
        v.push(format!("COW file {} removed.", f.display()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use blk_interposer::DevNo;

    fn args(name: Option<&str>, cow_file: Option<&str>) -> SnapshotCreateArgs {
        SnapshotCreateArgs {
            devices: vec!["/dev/vdb1".into(), "/dev/vdb2".into()],
            name: name.map(Into::into),
            cow: CowArgs {
                cow: vec!["/dev/vdc".into()],
                cow_file: cow_file.map(Into::into),
                cow_size: cow_file.map(|_| 8192),
            },
            chunk_size: None,
            persistent: false,
            transient: false,
            yes: false,
        }
    }

    #[test]
    fn request_names_the_group_after_the_first_device() {
        let r = request(args(None, None));
        assert_eq!(r.name, "snap-vdb1");
        assert_eq!(r.cow, CowStore::Devices(vec!["/dev/vdc".into()]));
        assert_eq!((r.chunk, r.persistent), (None, false));
        let r = request(SnapshotCreateArgs {
            chunk_size: Some(128),
            persistent: true,
            ..args(Some("bk"), Some("/var/tmp/bk.cow"))
        });
        assert_eq!((r.chunk, r.persistent), (Some(Sectors(128)), true));
        assert_eq!(r.name, "bk");
        assert_eq!(
            r.cow,
            CowStore::File {
                path: "/var/tmp/bk.cow".into(),
                size: Sectors(8192)
            }
        );
    }

    #[test]
    fn renders_use_and_state() {
        let m = SnapshotMember {
            device: "/dev/vdb1".into(),
            dev: DevNo::new(254, 17),
            attached: true,
            stacked_on: None,
            origin: Some("bk-vdb1-origin".into()),
            snapshot: Some("bk-vdb1-snap".into()),
            snapshot_path: Some("/dev/mapper/bk-vdb1-snap".into()),
            cow: Some("bk-vdb1-cow".into()),
            cow_store: Some("/dev/vdc".into()),
            chunk: Some(Sectors(8)),
            persistent: Some(true),
            cow_worst: Some(Sectors(1 << 20)),
            state: SnapState::Valid,
            reason: None,
            cow_used: Some(Sectors(2048)),
            cow_total: Some(Sectors(262144)),
            cow_used_percent: Some(0.78),
        };
        let bad = SnapshotMember {
            state: SnapState::Invalid,
            reason: Some("COW store full (overflow)".into()),
            cow_used: None,
            cow_total: None,
            cow_used_percent: None,
            ..m.clone()
        };
        let g = SnapshotGroup {
            name: "bk".into(),
            devices: vec![m, bad],
        };
        assert_eq!(
            output::table(&rows(std::slice::from_ref(&g))),
            [
                "GROUP  DEVICE     SNAPSHOT                  COW-STORE  COW-USED                    STATE",
                "bk     /dev/vdb1  /dev/mapper/bk-vdb1-snap  /dev/vdc   1.0 MiB / 128.0 MiB (0.8%)  valid",
                "bk     /dev/vdb1  /dev/mapper/bk-vdb1-snap  /dev/vdc   -                           invalid: COW store full (overflow)",
            ]
        );
        assert_eq!(
            cow_line(&g.devices[0], true),
            "/dev/vdb1: chunk 4.0 KiB (chosen: the COW slice is smaller than the device), \
             metadata on the COW store (P); worst case 512.0 MiB of COW against 128.0 MiB: \
             size it for the writes while the snapshot lives."
        );
        let roomy = SnapshotMember {
            chunk: Some(Sectors(128)),
            persistent: Some(false),
            cow_worst: Some(Sectors(131072)),
            ..g.devices[0].clone()
        };
        assert_eq!(
            cow_line(&roomy, true),
            "/dev/vdb1: chunk 64.0 KiB (chosen: the COW slice, 128.0 MiB, holds every chunk of \
             the device), metadata in memory (N); worst case 64.0 MiB of COW, it cannot \
             overflow."
        );
        assert!(cow_line(&roomy, false).contains("(as asked)"));
    }

    #[test]
    fn remove_says_where_each_device_went_back_to() {
        let r = SnapshotRemoveReport {
            name: "bk".into(),
            devices: vec!["/dev/vdb1".into(), "/dev/vdb2".into()],
            back_on: vec![Some("vdb1-era".into()), None],
            switched: 2,
            removed: Vec::new(),
            cow_files_removed: Vec::new(),
            lowers_removed: Vec::new(),
        };
        assert_eq!(
            human_remove(&r),
            ["Snapshot group bk removed; /dev/vdb1 back on vdb1-era, /dev/vdb2 back on its own."]
        );
    }
}
