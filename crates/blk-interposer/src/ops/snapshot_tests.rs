//! Snapshot orchestration order and undo, against the recording mock.

use std::path::PathBuf;

use super::*;
use crate::ops::mock::{Mock, DEV, LOOP0, OTHER};

fn ops(m: &Mock) -> Ops<&Mock, &Mock, &Mock> {
    Ops::new(m, m, m)
}

fn req(devices: &[&str], cow: &[&str]) -> SnapshotRequest {
    SnapshotRequest::new(
        "bk",
        devices.iter().map(PathBuf::from).collect(),
        CowStore::Devices(cow.iter().map(PathBuf::from).collect()),
    )
}

/// The calls that change something, in order.
fn changes(m: &Mock) -> Vec<String> {
    m.calls()
        .into_iter()
        .filter(|c| !["status", "list", "dm_status"].contains(&c.split(' ').next().unwrap()))
        .collect()
}

fn eio() -> Error {
    Error::Ioctl {
        op: "X",
        errno: nix::errno::Errno::EIO,
    }
}

#[test]
fn create_registers_the_snapshot_before_the_origin_takes_a_bio() {
    let m = Mock::new();
    let g = ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap();
    assert_eq!(
        changes(&m),
        [
            "lower_create 254:16",
            "dm_create bk-vdb-cow INTERPOSER-SNAP-COW-254:16-bk",
            "dm_load bk-vdb-cow 0 8192 linear 254:32 0",
            "dm_resume bk-vdb-cow",
            "ensure_node /dev/mapper/bk-vdb-cow 253:0",
            "zero_start /dev/mapper/bk-vdb-cow 2048",
            "dm_load bk-vdb-cow 0 6144 linear 254:32 2048",
            "dm_resume bk-vdb-cow",
            "dm_create bk-vdb-snap INTERPOSER-SNAP-SNAP-254:16-bk",
            "dm_load bk-vdb-snap 0 2048 snapshot 252:0 253:0 N 128",
            "dm_resume bk-vdb-snap",
            "ensure_node /dev/mapper/bk-vdb-snap 253:1",
            "dm_create bk-vdb-origin INTERPOSER-SNAP-ORIGIN-254:16-bk",
            "dm_load bk-vdb-origin 0 2048 snapshot-origin 252:0",
            "dm_resume bk-vdb-origin",
            "ensure_node /dev/mapper/bk-vdb-origin 253:2",
            "dm_suspend bk-vdb-origin",
            "dm_resume bk-vdb-origin",
            "switch 254:16>253:2",
        ]
    );
    assert_eq!(g.name, "bk");
    let d = &g.devices[0];
    assert_eq!((d.dev, d.attached, d.state), (DEV, true, SnapState::Valid));
    assert_eq!(d.snapshot_path, Some("/dev/mapper/bk-vdb-snap".into()));
    assert_eq!(d.stacked_on, None);
    // the 8192-sector slice holds every 64 KiB chunk of the 2048-sector
    // device: large chunks, metadata in memory
    assert_eq!((d.chunk, d.persistent), (Some(LARGE_CHUNK), Some(false)));
    assert_eq!(d.cow_worst, Some(Sectors(2048)));
    assert_eq!(d.cow_store.as_deref(), Some("/dev/vdc"));
    assert_eq!(
        (d.cow_used, d.cow_total),
        (Some(Sectors(16)), Some(Sectors(2048)))
    );
}

#[test]
fn one_cow_is_split_and_one_switch_moves_the_group() {
    let m = Mock::new();
    let mut r = req(&["/dev/vdb", "/dev/vdd"], &["/dev/vdc"]);
    r.persistent = false;
    r.chunk = Some(Sectors(128));
    let g = ops(&m).snapshot_create(&r).unwrap();
    let c = changes(&m);
    assert!(c.contains(&"dm_load bk-vdb-cow 0 4096 linear 254:32 0".to_string()));
    assert!(c.contains(&"dm_load bk-vdd-cow 0 4096 linear 254:32 4096".to_string()));
    assert!(c.contains(&"dm_load bk-vdd-snap 0 2048 snapshot 252:2 253:3 N 128".to_string()));
    assert_eq!(c.iter().filter(|c| c.starts_with("switch")).count(), 1);
    assert_eq!(c.last().unwrap(), "switch 254:16>253:2 254:48>253:5");
    assert_eq!(g.devices.len(), 2);
    assert!(g
        .devices
        .iter()
        .all(|d| d.attached && d.persistent == Some(false)));
}

#[test]
fn the_chunk_is_small_unless_the_slice_holds_the_whole_device() {
    for (dev, persistent, slice_holds) in [
        // vdc's 8192 sectors less the reserved 2048 hold 6144
        (6144, false, true),
        // 6144 sectors in 64 KiB chunks need 2 more chunks for P's header and metadata
        (6144, true, false),
        (5888, true, true),
        (6145, false, false),
    ] {
        let m = Mock::new();
        m.sizes.borrow_mut().insert(DEV, Sectors(dev));
        let r = SnapshotRequest {
            persistent,
            ..req(&["/dev/vdb"], &["/dev/vdc"])
        };
        let g = ops(&m).snapshot_create(&r).unwrap();
        let d = &g.devices[0];
        let want = if slice_holds {
            LARGE_CHUNK
        } else {
            SMALL_CHUNK
        };
        assert_eq!(
            d.chunk,
            Some(want),
            "{dev} sectors, persistent {persistent}"
        );
        assert_eq!(
            d.cow_worst,
            Some(cow_worst_case(Sectors(dev), want, persistent))
        );
        assert_eq!(slice_holds, d.cow_worst <= Some(Sectors(8192 - 2048)));
    }
}

#[test]
fn group_slices_stay_aligned_to_either_chunk() {
    // 2 devices share 8300 sectors: 4150 each is no multiple of a 64 KiB
    // chunk; the slices are 4096 sectors, at 0 and 4096
    let m = Mock::new();
    m.sizes.borrow_mut().insert(OTHER, Sectors(8300));
    m.sizes.borrow_mut().insert(DEV, Sectors(4160));
    let r = req(&["/dev/vdb", "/dev/vdd"], &["/dev/vdc"]);
    let g = ops(&m).snapshot_create(&r).unwrap();
    let c = changes(&m);
    assert!(
        c.contains(&"dm_load bk-vdd-cow 0 4096 linear 254:32 4096".to_string()),
        "{c:?}"
    );
    // vdb (4160 sectors) does not fit its slice: 4 KiB chunks; vdd (2048) does
    assert_eq!(g.devices[0].chunk, Some(SMALL_CHUNK));
    assert_eq!(g.devices[1].chunk, Some(LARGE_CHUNK));
    // an asked chunk aligns the slices to itself only: 4150 -> 4144
    let m = Mock::new();
    m.sizes.borrow_mut().insert(OTHER, Sectors(8300));
    let r = SnapshotRequest {
        chunk: Some(SMALL_CHUNK),
        ..req(&["/dev/vdb", "/dev/vdd"], &["/dev/vdc"])
    };
    ops(&m).snapshot_create(&r).unwrap();
    assert!(changes(&m).contains(&"dm_load bk-vdd-cow 0 4144 linear 254:32 4144".to_string()));
}

#[test]
fn a_cow_file_gets_a_loop_device_that_remove_takes_away() {
    let m = Mock::new();
    let r = SnapshotRequest::new(
        "bk",
        vec!["/dev/vdb".into()],
        CowStore::File {
            path: "/var/tmp/bk.cow".into(),
            size: Sectors(4096),
        },
    );
    ops(&m).snapshot_create(&r).unwrap();
    let c = changes(&m);
    assert_eq!(c[0], "loop_create /var/tmp/bk.cow 4096");
    assert!(c.contains(&"dm_create bk-vdb-cow INTERPOSER-SNAP-COWLOOP-254:16-bk".to_string()));
    assert!(c.contains(&format!("dm_load bk-vdb-cow 0 4096 linear {LOOP0} 0")));
    m.calls.borrow_mut().clear();
    let rep = ops(&m).snapshot_remove("bk").unwrap();
    assert_eq!(
        changes(&m),
        [
            "switch 254:16>0:0",
            "dm_remove bk-vdb-snap",
            "remove_node /dev/mapper/bk-vdb-snap 253:1",
            "dm_remove bk-vdb-origin",
            "remove_node /dev/mapper/bk-vdb-origin 253:2",
            "dm_remove bk-vdb-cow",
            "remove_node /dev/mapper/bk-vdb-cow 253:0",
            "loop_remove 7:0",
            "lower_remove 254:16",
        ]
    );
    assert_eq!(rep.cow_files_removed, [PathBuf::from("/var/tmp/bk.cow")]);
    assert_eq!(rep.switched, 1);
    assert!(m.dms.borrow().is_empty() && m.lowers.borrow().is_empty());
    assert!(m.loops.borrow().is_empty() && m.nodes.borrow().is_empty());
}

#[test]
fn each_failing_step_undoes_the_ones_before() {
    for step in [
        "loop_create",
        "lower_create",
        "dm_create",
        "dm_load",
        "dm_resume",
        "ensure_node",
        "dm_suspend",
        "zero_start",
        "switch",
    ] {
        let m = Mock::new();
        m.fail_at(step, eio);
        let r = SnapshotRequest::new(
            "bk",
            vec!["/dev/vdb".into(), "/dev/vdd".into()],
            CowStore::File {
                path: "/var/tmp/bk.cow".into(),
                size: Sectors(8192),
            },
        );
        let e = ops(&m).snapshot_create(&r).unwrap_err();
        assert!(matches!(e, Error::Ioctl { .. }), "{step}: {e:?}");
        assert!(m.dms.borrow().is_empty(), "{step}: {:?}", m.dms.borrow());
        assert!(m.lowers.borrow().is_empty(), "{step}");
        assert!(m.nodes.borrow().is_empty(), "{step}");
        assert!(m.loops.borrow().is_empty(), "{step}");
        let c = changes(&m);
        assert!(
            !c.iter().any(|c| c.starts_with("switch")) || step == "switch",
            "{step}"
        );
        // Undo runs in reverse: an origin goes before its snapshot.
        let pos = |s: &str| c.iter().position(|c| c == s);
        if let (Some(o), Some(s)) = (pos("dm_remove bk-vdb-origin"), pos("dm_remove bk-vdb-snap")) {
            assert!(o < s, "{step}: {c:?}");
        }
    }
}

#[test]
fn a_snapshot_of_an_interposed_device_stacks_on_its_interposer() {
    let m = Mock::new().with_interposer("vdb-era");
    let g = ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap();
    let c = changes(&m);
    assert!(!c.iter().any(|c| c.starts_with("lower_create")), "{c:?}");
    assert!(c.contains(&"dm_load bk-vdb-snap 0 2048 snapshot 253:7 253:0 N 128".to_string()));
    assert!(c.contains(&"dm_load bk-vdb-origin 0 2048 snapshot-origin 253:7".to_string()));
    assert_eq!(c.last().unwrap(), "switch 254:16>253:2");
    assert_eq!(g.devices[0].stacked_on.as_deref(), Some("vdb-era"));
    m.calls.borrow_mut().clear();
    ops(&m).snapshot_remove("bk").unwrap();
    let c = changes(&m);
    assert_eq!(c[0], "switch 254:16>253:7");
    assert!(!c.iter().any(|c| c.starts_with("lower_remove")), "{c:?}");
    let l = m.lowers.borrow();
    assert_eq!(l[&DEV].interposer, Some(DevNo::new(253, 7)), "back on era");
}

#[test]
fn remove_switches_back_before_removing_anything() {
    let m = Mock::new();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb", "/dev/vdd"], &["/dev/vdc"]))
        .unwrap();
    m.calls.borrow_mut().clear();
    let r = ops(&m).snapshot_remove("bk").unwrap();
    let c = changes(&m);
    assert_eq!(c[0], "switch 254:16>0:0 254:48>0:0");
    let removes: Vec<&str> = c
        .iter()
        .filter_map(|c| c.strip_prefix("dm_remove "))
        .collect();
    assert_eq!(
        removes,
        [
            "bk-vdb-snap",
            "bk-vdb-origin",
            "bk-vdb-cow",
            "bk-vdd-snap",
            "bk-vdd-origin",
            "bk-vdd-cow"
        ]
    );
    assert_eq!(r.lowers_removed, ["/dev/vdb", "/dev/vdd"]);
    assert!(m.dms.borrow().is_empty() && m.lowers.borrow().is_empty());
    assert!(matches!(
        ops(&m).snapshot_remove("bk"),
        Err(Error::SnapshotNotFound { .. })
    ));
}

#[test]
fn remove_refuses_a_mounted_snapshot_and_a_failed_switch_changes_nothing() {
    let m = Mock::new();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap();
    m.calls.borrow_mut().clear();
    m.opens.borrow_mut().insert("bk-vdb-snap".into(), 1);
    let e = ops(&m).snapshot_remove("bk").unwrap_err();
    assert!(
        e.to_string().contains("/dev/mapper/bk-vdb-snap is open"),
        "{e}"
    );
    assert!(changes(&m).is_empty());
    m.opens.borrow_mut().clear();
    m.fail_at("switch", || Error::TryAgain { op: "SWITCH" });
    assert!(matches!(
        ops(&m).snapshot_remove("bk"),
        Err(Error::TryAgain { .. })
    ));
    assert_eq!(changes(&m), ["switch 254:16>0:0"]);
    assert_eq!(m.dms.borrow().len(), 3);
}

#[test]
fn remove_lists_leftovers_and_a_second_run_finishes() {
    let m = Mock::new();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap();
    m.fail_at("dm_remove", eio);
    let e = ops(&m).snapshot_remove("bk").unwrap_err();
    assert!(matches!(e, Error::SnapshotLeftovers { .. }), "{e:?}");
    assert!(
        e.to_string().contains("interposer snapshot remove bk"),
        "{e}"
    );
    m.fail.borrow_mut().clear();
    m.calls.borrow_mut().clear();
    let r = ops(&m).snapshot_remove("bk").unwrap();
    assert_eq!(r.switched, 0, "already switched back");
    assert!(m.dms.borrow().is_empty() && m.lowers.borrow().is_empty());
}

#[test]
fn ls_shows_use_and_an_overflowed_snapshot() {
    let m = Mock::new();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb", "/dev/vdd"], &["/dev/vdc"]))
        .unwrap();
    m.statuses
        .borrow_mut()
        .insert("bk-vdb-snap".into(), "1024/4096 16".into());
    m.statuses
        .borrow_mut()
        .insert("bk-vdd-snap".into(), "Invalid".into());
    let l = ops(&m).snapshot_list().unwrap();
    assert_eq!(l.len(), 1);
    let [a, b] = &l[0].devices[..] else { panic!() };
    assert_eq!(
        (a.state, a.cow_used_percent),
        (SnapState::Valid, Some(25.0))
    );
    assert_eq!(b.state, SnapState::Invalid);
    assert!(b
        .reason
        .as_deref()
        .unwrap()
        .starts_with("COW store full (overflow)"));
    let j = serde_json::to_value(&l).unwrap();
    assert_eq!(j[0]["devices"][1]["state"], "invalid");
    assert_eq!(j[0]["devices"][0]["cow_used"], 1024);
    assert_eq!(j[0]["devices"][0]["dev"], "254:16");
}

#[test]
fn bad_requests_are_refused_before_any_change() {
    let m = Mock::new();
    let cases: Vec<(SnapshotRequest, &str)> = vec![
        (
            req(
                &["/dev/vdb", "/dev/vdd"],
                &["/dev/vdc", "/dev/vdc", "/dev/vdc"],
            ),
            "3 COW stores for 2 devices",
        ),
        (
            req(&["/dev/vdb"], &["/dev/vdb"]),
            "both snapshotted and a COW store",
        ),
        (req(&["/dev/vdb", "/dev/vdb"], &["/dev/vdc"]), "given twice"),
        (req(&[], &["/dev/vdc"]), "no device"),
        (
            SnapshotRequest {
                chunk: Some(Sectors(12)),
                ..req(&["/dev/vdb"], &["/dev/vdc"])
            },
            "power of two",
        ),
        (
            SnapshotRequest::new(
                "bk",
                vec!["/dev/vdb".into()],
                CowStore::File {
                    path: "/tmp/x".into(),
                    size: Sectors(1000),
                },
            ),
            "less than 4096 (2 MiB",
        ),
    ];
    for (r, want) in cases {
        let e = ops(&m).snapshot_create(&r).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    // A COW device that holds a filesystem: refused unless overwrite
    // (--yes); one in use: refused all the same.
    use crate::host::Occupied;
    m.occupied
        .borrow_mut()
        .insert(OTHER, Occupied::Holds("a filesystem (ext4)".into()));
    let e = ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "the COW store /dev/vdc holds a filesystem (ext4) (blkid -p); `snapshot create` would overwrite it: give an empty device, or --yes if what it holds may be destroyed"
    );
    m.occupied.borrow_mut().insert(OTHER, Occupied::InUse);
    let e = ops(&m)
        .snapshot_create(&SnapshotRequest {
            overwrite: true,
            ..req(&["/dev/vdb"], &["/dev/vdc"])
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is in use (mounted, or held by dm, LVM or another program)")
            && e.contains("a device in use is never taken"),
        "{e}"
    );
    assert!(changes(&m).is_empty(), "{:?}", changes(&m));
    m.occupied
        .borrow_mut()
        .insert(OTHER, Occupied::Holds("a filesystem (ext4)".into()));
    ops(&m)
        .snapshot_create(&SnapshotRequest {
            overwrite: true,
            ..req(&["/dev/vdb"], &["/dev/vdc"])
        })
        .unwrap();
    ops(&m).snapshot_remove("bk").unwrap();
    m.occupied.borrow_mut().clear();
    m.calls.borrow_mut().clear();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap();
    let e = ops(&m)
        .snapshot_create(&req(&["/dev/vdd"], &["/dev/vdc"]))
        .unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
}

#[test]
fn uuids_round_trip() {
    let u = snap_uuid(Role::CowLoop, OTHER, "a-b.c");
    assert_eq!(u, "INTERPOSER-SNAP-COWLOOP-254:32-a-b.c");
    assert_eq!(parse_uuid(&u), Some((Role::CowLoop, OTHER, "a-b.c")));
    assert_eq!(parse_uuid("INTERPOSER-vdb-x"), None);
    assert_eq!(parse_uuid("INTERPOSER-SNAP-NOPE-1:2-x"), None);
    assert_eq!(parse_status("Overflow").state, SnapState::Invalid);
    assert_eq!(
        parse_status("Merge failed").reason.as_deref(),
        Some("merge failed")
    );
    assert_eq!(parse_status("junk").state, SnapState::Unknown);
}

#[test]
fn plain_remove_points_to_snapshot_remove() {
    let m = Mock::new();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb"], &["/dev/vdc"]))
        .unwrap();
    m.calls.borrow_mut().clear();
    let e = ops(&m).remove("bk-vdb-origin").unwrap_err();
    assert!(
        e.to_string().contains("`interposer snapshot remove bk`"),
        "{e}"
    );
    assert!(changes(&m).is_empty());
}

#[test]
fn every_device_of_a_group_is_private_to_udev_and_the_image_is_lowest() {
    use crate::dm::mapper::{udev_policy, UdevPolicy};
    let m = Mock::new();
    ops(&m)
        .snapshot_create(&req(&["/dev/vdb", "/dev/vdd"], &["/dev/vdc"]))
        .unwrap();
    let uuids = m.uuids.borrow();
    assert_eq!(uuids.len(), 6, "{uuids:?}");
    for (name, uuid) in uuids.iter() {
        let want = if name.ends_with("-snap") {
            UdevPolicy::PrivateLowPriority
        } else {
            UdevPolicy::Private
        };
        assert_eq!(udev_policy(Some(uuid)), want, "{name} {uuid}");
    }
}
