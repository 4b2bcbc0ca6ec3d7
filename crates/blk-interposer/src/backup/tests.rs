//! The decision between full and incremental, and the orchestration order
//! against the recording mock.

use super::*;
use crate::era::{ChangedRange, GapReason};
use crate::ops::mock::{Mock, DEV, META};
use crate::types::Sectors;

fn ops(m: &Mock) -> Ops<&Mock, &Mock, &Mock> {
    Ops::new(m, m, m)
}

fn changes(ranges: &[(u64, u64)]) -> EraChanges {
    EraChanges {
        name: "vdb-era".into(),
        device: "/dev/vdb".into(),
        since: "3".parse().unwrap(),
        era: 5,
        block_sectors: Sectors(128),
        block_bytes: 65536,
        nr_blocks: 16,
        changed_blocks: ranges.len() as u64,
        changed_bytes: ranges.iter().map(|r| r.1).sum(),
        ranges: ranges
            .iter()
            .map(|&(offset, length)| ChangedRange {
                begin: (offset / 65536) as u32,
                end: ((offset + length) / 65536) as u32,
                offset,
                length,
            })
            .collect(),
    }
}

fn manifest(checkpoint: Option<&str>) -> Manifest {
    Manifest {
        format: manifest::FORMAT,
        tool: "t".into(),
        created: 0,
        version: 1,
        source: Source {
            device: "/dev/vdb".into(),
            identity: DeviceIdentity {
                sectors: 2048,
                ..DeviceIdentity::default()
            },
            size: 1 << 20,
            kind: Kind::Full,
            full_reason: Some(FullReason::First),
            checkpoint: checkpoint.map(|c| c.parse().unwrap()),
            block_bytes: None,
            group: None,
        },
        previous: None,
        pieces: Vec::new(),
        data: manifest::DataFile {
            name: "000001.full.img".into(),
            bytes: 1 << 20,
            sha256: String::new(),
        },
    }
}

#[test]
fn plan_is_incremental_only_when_tracking_covers_the_time_since() {
    let id = manifest(None).source.identity;
    let prev = manifest(Some("3@00000000000000a1"));
    let never = |_| -> Result<EraChanges> { panic!("must not ask") };
    let why = |p: Result<Plan>| p.unwrap().full_reason.unwrap();
    assert_eq!(
        why(plan(None, false, true, &id, 1 << 20, never)),
        FullReason::First
    );
    assert_eq!(
        why(plan(None, true, true, &id, 1 << 20, never)),
        FullReason::Forced
    );
    assert_eq!(
        why(plan(Some(&prev), true, true, &id, 1 << 20, never)),
        FullReason::Forced
    );
    assert_eq!(
        why(plan(Some(&prev), false, false, &id, 1 << 20, never)),
        FullReason::NoTracking
    );
    assert_eq!(
        why(plan(
            Some(&manifest(None)),
            false,
            true,
            &id,
            1 << 20,
            never
        )),
        FullReason::NoCheckpoint
    );
    let other = DeviceIdentity {
        serial: Some("new-disk".into()),
        ..id.clone()
    };
    assert_eq!(
        why(plan(Some(&prev), false, true, &other, 1 << 20, never)),
        FullReason::DeviceChanged {
            what: "disk serial none -> new-disk".into()
        }
    );
    assert!(matches!(
        why(plan(Some(&prev), false, true, &id, 2 << 20, never)),
        FullReason::DeviceChanged { .. }
    ));
    // A gap: full, and the manifest keeps the error's words.
    let gap = |since: Checkpoint| -> Result<EraChanges> {
        Err(Error::EraGap {
            dev: "/dev/vdb".into(),
            since,
            reason: GapReason::Ended { era: 4 },
        })
    };
    let r = why(plan(Some(&prev), false, true, &id, 1 << 20, gap));
    let FullReason::Gap { message } = r else {
        panic!("{r:?}")
    };
    assert!(
        message.starts_with("cannot list the changes of /dev/vdb since era 3@00000000000000a1: tracking ended at era 4"),
        "{message}"
    );
    // Another error is not a reason for a full backup: it fails the run.
    let eio = |_| -> Result<EraChanges> { Err(Error::NoEra { what: "x".into() }) };
    assert!(plan(Some(&prev), false, true, &id, 1 << 20, eio).is_err());
    let p = plan(Some(&prev), false, true, &id, 1 << 20, |since| {
        assert_eq!(
            since.to_string(),
            "3@00000000000000a1",
            "the previous checkpoint"
        );
        Ok(changes(&[(65536, 65536)]))
    })
    .unwrap();
    assert_eq!((p.kind, p.full_reason), (Kind::Incremental, None));
}

/// A mock whose snapshot device reads `data` (every `open_direct` opens it).
fn with_disk(data: &[u8]) -> (Mock, tempfile::NamedTempFile) {
    let m = Mock::new();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    *m.image.borrow_mut() = Some(f.path().into());
    (m, f)
}

fn req(dir: &std::path::Path) -> BackupRequest {
    BackupRequest::new("/dev/vdb", dir, CowStore::Devices(vec!["/dev/vdc".into()]))
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {calls:#?}"))
}

#[test]
fn backup_without_tracking_is_full_reads_the_snapshot_and_removes_it() {
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 241) as u8).collect();
    let (m, _img) = with_disk(&data);
    let tmp = tempfile::tempdir().unwrap();
    let r = ops(&m).backup(&req(tmp.path()), &mut ()).unwrap();
    assert_eq!(
        (r.version, r.source.kind, r.source.full_reason.clone()),
        (1, Kind::Full, Some(FullReason::First))
    );
    assert_eq!(
        (r.source.size, r.copied_bytes, r.source.checkpoint),
        (1 << 20, 1 << 20, None)
    );
    assert_eq!(r.snapshot, None);
    assert!(std::fs::read(&r.data).unwrap() == data);
    let calls = m.calls();
    let snap = position(&calls, "switch 254:16>");
    let read = position(&calls, "open_direct");
    let removed = position(&calls, "dm_remove backup-vdb-vdb-snap");
    assert!(snap < read && read < removed, "{calls:#?}");
    // Again: still no tracking, so full again, and it says why.
    let r = ops(&m).backup(&req(tmp.path()), &mut ()).unwrap();
    assert_eq!(
        (r.version, r.previous, r.source.full_reason),
        (2, Some(1), Some(FullReason::NoTracking))
    );
}

#[test]
fn a_failed_copy_removes_the_snapshot_and_records_nothing() {
    let (m, _img) = with_disk(&[1u8; 1 << 20]);
    // The device is bigger than what its snapshot reads: the copy fails.
    m.sizes.borrow_mut().insert(DEV, Sectors(4096));
    let tmp = tempfile::tempdir().unwrap();
    let e = ops(&m).backup(&req(tmp.path()), &mut ()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read the snapshot of /dev/vdb"),
        "{e}"
    );
    let calls = m.calls();
    assert!(position(&calls, "open_direct") < position(&calls, "dm_remove backup-vdb-vdb-origin"));
    assert!(BackupDir::open(tmp.path())
        .unwrap()
        .versions()
        .unwrap()
        .is_empty());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["lock"]);
}

#[test]
fn keep_snapshot_names_it_and_leaves_it() {
    let (m, _img) = with_disk(&[3u8; 1 << 20]);
    let tmp = tempfile::tempdir().unwrap();
    let r = ops(&m)
        .backup(
            &BackupRequest {
                keep_snapshot: true,
                name: Some("bk".into()),
                ..req(tmp.path())
            },
            &mut (),
        )
        .unwrap();
    assert_eq!(r.snapshot.as_deref(), Some("bk"));
    assert_eq!(r.snapshot_path, Some("/dev/mapper/bk-vdb-snap".into()));
    assert!(!m.calls().iter().any(|c| c.starts_with("dm_remove")));
}

#[test]
fn with_era_the_checkpoint_precedes_the_snapshot_and_the_next_run_is_incremental() {
    use crate::era::meta::image;
    use crate::era::record::{self, Epoch, EpochEnd, TrackingRecord};
    use crate::ops::mock::META;
    use std::path::Path;

    // vdb: 1 MiB, 16 era blocks of 64 KiB; block 3 written in a late era.
    let mut eras = vec![0u32; 16];
    eras[3] = 1000;
    let meta = Sectors(1 << 17);
    let (m, img) = with_disk(&image::with_snapshot(&eras, 4, &[]));
    img.as_file().set_len(meta.bytes()).unwrap();
    m.sizes.borrow_mut().insert(META, meta);
    let rec = TrackingRecord {
        generation: 0xa1,
        device: m.identity(DEV).unwrap(),
        block_sectors: 128,
        epochs: vec![Epoch {
            start_era: 1,
            end: EpochEnd::Open,
        }],
    };
    record::write(img.as_file(), meta, &rec, 1).unwrap();
    let attach = || {
        ops(&m)
            .era_attach(Path::new("/dev/vdb"), Path::new("/dev/vdd"), 64 << 10, None)
            .unwrap()
    };
    attach();
    // As if tracking had been continuous since era 1 (the mock's eras
    // count from 1, the image's from further on).
    let mut s = record::read(img.as_file(), meta).unwrap().unwrap();
    s.record.epochs.last_mut().unwrap().start_era = 1;
    record::write(img.as_file(), meta, &s.record, s.seq + 1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r1 = ops(&m).backup(&req(tmp.path()), &mut ()).unwrap();
    assert_eq!(r1.source.full_reason, Some(FullReason::First));
    let c1 = r1.source.checkpoint.expect("a checkpoint");
    let calls = m.calls();
    assert!(
        position(&calls, "dm_message vdb-era checkpoint")
            < position(&calls, "dm_create backup-vdb-vdb-cow"),
        "the boundary is taken before the snapshot: {calls:#?}"
    );
    let r2 = ops(&m).backup(&req(tmp.path()), &mut ()).unwrap();
    assert_eq!(
        (r2.source.kind, r2.previous, r2.copied_bytes),
        (Kind::Incremental, Some(1), 65536),
        "{r2:?}"
    );
    assert_eq!(r2.source.block_bytes, Some(65536));
    assert!(r2.source.checkpoint.unwrap().era > c1.era);
    let calls = m.calls();
    let snap = calls
        .iter()
        .rposition(|c| c.starts_with("dm_create backup-vdb-vdb-snap"))
        .unwrap();
    let listed = calls
        .iter()
        .rposition(|c| c == "dm_message vdb-era take_metadata_snap")
        .unwrap();
    assert!(snap < listed, "the list is read with the snapshot in place");
    // Detached and attached again: the writes in between are in no era.
    ops(&m).era_detach("vdb").unwrap();
    attach();
    let r3 = ops(&m).backup(&req(tmp.path()), &mut ()).unwrap();
    assert_eq!((r3.version, r3.source.kind), (3, Kind::Full));
    let Some(FullReason::Gap { message }) = &r3.source.full_reason else {
        panic!("{r3:?}")
    };
    assert!(message.contains("tracking began again at era"), "{message}");
    let dir = BackupDir::open(tmp.path()).unwrap();
    assert_eq!(dir.verify(None, &mut ()).unwrap().versions.len(), 3);
}

#[test]
fn a_group_backup_snapshots_every_device_at_once_and_writes_a_version_each() {
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let (m, _img) = with_disk(&data);
    // vdb and vdd, 1 MiB each (the mock's snapshots both read the image).
    m.sizes.borrow_mut().insert(META, Sectors(2048));
    let tmp = tempfile::tempdir().unwrap();
    let group = GroupBackupRequest {
        members: vec![
            ("/dev/vdb".into(), tmp.path().join("vdb")),
            ("/dev/vdd".into(), tmp.path().join("vdd")),
        ],
        cow: CowStore::Devices(vec!["/dev/vdc".into()]), // one store, split in two
        full: false,
        keep_snapshot: false,
        name: None,
        overwrite: false,
    };
    let r = ops(&m).backup_group(&group, &mut ()).unwrap();
    assert_eq!(r.len(), 2);
    for (r, d) in r.iter().zip(["vdb", "vdd"]) {
        assert_eq!(r.dir, tmp.path().join(d));
        assert_eq!((r.version, r.source.kind), (1, Kind::Full));
        assert_eq!(
            r.source.group.as_deref(),
            Some(&["/dev/vdb".to_string(), "/dev/vdd".to_string()][..])
        );
        assert!(std::fs::read(&r.data).unwrap() == data, "{d}");
        let m = BackupDir::open(&r.dir)
            .unwrap()
            .latest()
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(
            m.source.group, r.source.group,
            "the manifest names the group"
        );
    }
    // One snapshot group for both: one switch moves both devices onto
    // their origins (one point in time) before either copy; the second
    // moves them back when the group is removed, after both.
    let calls = m.calls();
    let switches: Vec<_> = calls.iter().filter(|c| c.starts_with("switch ")).collect();
    assert_eq!(switches.len(), 2, "{switches:#?}");
    assert!(
        switches[0].contains("254:16>253:") && switches[0].contains("254:48>253:"),
        "{switches:#?}"
    );
    let snap = position(&calls, "switch ");
    let read = position(&calls, "open_direct");
    let removed = position(&calls, "dm_remove backup-vdb-vdd-vdb-snap");
    assert!(snap < read && read < removed, "{calls:#?}");
    // The same directory twice: refused before anything is snapshotted.
    let same = GroupBackupRequest {
        members: vec![
            ("/dev/vdb".into(), tmp.path().join("x")),
            ("/dev/vdd".into(), tmp.path().join("x")),
        ],
        ..group
    };
    let n = m.calls().len();
    let e = ops(&m).backup_group(&same, &mut ()).unwrap_err();
    assert!(matches!(e, Error::BackupBusy { .. }), "{e}");
    assert!(!m.calls()[n..].iter().any(|c| c.starts_with("switch")));
}
