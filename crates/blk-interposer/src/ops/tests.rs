//! Orchestration order and undo, against the recording mock.

use super::mock::{status, Mock, DEV, LOWER, OTHER};
use super::Ops;
use crate::dm::Table;
use crate::error::Error;
use crate::kernel::State;
use crate::types::DevNo;
use std::path::Path;

const LIN: &str = "0 2048 linear [interpose]/dev/disk/by-id/vdb 0";
const DM0: DevNo = DevNo::new(253, 0);

fn ops(m: &Mock) -> Ops<&Mock, &Mock, &Mock> {
    Ops::new(m, m, m)
}

fn table() -> Table {
    LIN.parse().unwrap()
}

/// The calls that change something, in order.
fn changes(m: &Mock) -> Vec<String> {
    m.calls()
        .into_iter()
        .filter(|c| !c.starts_with("status") && !c.starts_with("list"))
        .collect()
}

#[test]
fn create_makes_the_dm_device_live_before_attaching() {
    let m = Mock::new();
    let r = ops(&m).create("vdb-lin", &table()).unwrap();
    assert_eq!(
        changes(&m),
        [
            "lower_create 254:16",
            "dm_create vdb-lin INTERPOSER-vdb-vdb-lin",
            "dm_load vdb-lin 0 2048 linear 252:0 0",
            "dm_resume vdb-lin",
            "ensure_node /dev/mapper/vdb-lin 253:0",
            "attach 254:16 253:0",
        ]
    );
    assert_eq!(r.device, "/dev/disk/by-id/vdb");
    assert_eq!((r.dev, r.lower_dev, r.dm_dev), (DEV, LOWER, DM0));
    assert_eq!(r.lower, "/dev/interposer/vdb");
    assert!(r.lower_created && r.node_created);
    assert_eq!(r.table, "0 2048 linear 252:0 0\n");
    assert_eq!(m.lowers.borrow()[&DEV].state, State::Attached);
}

#[test]
fn create_reuses_an_existing_lower_device_and_keeps_it_on_failure() {
    let m = Mock::new();
    m.lowers.borrow_mut().insert(DEV, status(DEV));
    m.fail_at("attach", || Error::TryAgain { op: "ATTACH" });
    let e = ops(&m).create("vdb-lin", &table()).unwrap_err();
    assert!(matches!(e, Error::TryAgain { .. }), "{e:?}");
    let c = changes(&m);
    assert_eq!(c[0], "lower_create 254:16");
    assert_eq!(
        &c[c.len() - 2..],
        ["remove_node /dev/mapper/vdb-lin 253:0", "dm_remove vdb-lin"]
    );
    assert!(
        m.lowers.borrow().contains_key(&DEV),
        "a lower device we did not create stays"
    );
}

#[test]
fn each_failing_step_undoes_the_ones_before() {
    let cases: [(&'static str, &[&str]); 5] = [
        ("lower_create", &[]),
        ("dm_create", &["lower_remove 254:16"]),
        ("dm_load", &["dm_remove vdb-lin", "lower_remove 254:16"]),
        ("dm_resume", &["dm_remove vdb-lin", "lower_remove 254:16"]),
        (
            "attach",
            &[
                "remove_node /dev/mapper/vdb-lin 253:0",
                "dm_remove vdb-lin",
                "lower_remove 254:16",
            ],
        ),
    ];
    for (step, undo) in cases {
        let m = Mock::new();
        m.fail_at(step, || Error::Ioctl {
            op: "X",
            errno: nix::errno::Errno::EIO,
        });
        let e = ops(&m).create("vdb-lin", &table()).unwrap_err();
        assert!(matches!(e, Error::Ioctl { .. }), "{step}: {e:?}");
        let c = changes(&m);
        let at = c.iter().position(|c| c.starts_with(step)).unwrap();
        assert_eq!(&c[at + 1..], undo, "undo after {step}");
        assert!(
            m.dms.borrow().is_empty() && m.lowers.borrow().is_empty(),
            "{step}"
        );
        assert!(m.nodes.borrow().is_empty(), "{step}");
    }
}

#[test]
fn a_failing_undo_is_reported_with_what_is_left() {
    let m = Mock::new();
    m.fail_at("dm_resume", || Error::Ioctl {
        op: "X",
        errno: nix::errno::Errno::EIO,
    });
    m.fail_at("dm_remove", || Error::Dm {
        op: "remove",
        name: "vdb-lin".into(),
        what: "busy".into(),
        errno: None,
    });
    let e = ops(&m).create("vdb-lin", &table()).unwrap_err();
    let Error::UndoFailed { error, leftovers } = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(error.as_ref(), Error::Ioctl { .. }));
    assert_eq!(leftovers.len(), 1);
    assert!(e.to_string().contains("dmsetup remove vdb-lin"), "{e}");
}

#[test]
fn create_refuses_before_touching_anything() {
    let m = Mock::new().with_interposer("old");
    let e = ops(&m).create("vdb-lin", &table()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/dev/disk/by-id/vdb is already interposed by old; remove it first with `interposer remove old`"
    );
    let e = ops(&m).create("old", &table()).unwrap_err();
    assert!(matches!(e, Error::DmExists { .. }), "{e:?}");
    let e = ops(&m)
        .create("x", &"0 8 linear /dev/vdc 0".parse().unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::NoInterpose), "{e:?}");
    let e = ops(&m).create("a/b", &table()).unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");
    assert!(changes(&m).is_empty(), "{:?}", m.calls());
}

#[test]
fn create_names_the_winner_of_an_attach_race() {
    let m = Mock::new();
    m.fail_at("attach", || Error::AlreadyAttached {
        dev: "/dev/vdb".into(),
        by: None,
    });
    let e = ops(&m).create("vdb-lin", &table()).unwrap_err();
    assert!(matches!(e, Error::AlreadyAttached { .. }), "{e:?}");
}

/// What `remove` of the interposer `create` made does, in order.
const REMOVE_CALLS: [&str; 4] = [
    "detach 254:16",
    "dm_remove vdb-lin",
    "remove_node /dev/mapper/vdb-lin 253:0",
    "lower_remove 254:16",
];

#[test]
fn remove_detaches_before_removing_the_dm_device() {
    let m = Mock::new();
    ops(&m).create("vdb-lin", &table()).unwrap();
    m.calls.borrow_mut().clear();
    let r = ops(&m).remove("vdb-lin").unwrap();
    assert_eq!(changes(&m), REMOVE_CALLS);
    assert!(r.detached && r.node_removed && r.lower_removed);
    assert_eq!(
        (r.device.as_str(), r.dm_dev, r.lower_kept),
        ("/dev/vdb", DM0, None)
    );
    assert!(m.dms.borrow().is_empty() && m.lowers.borrow().is_empty());
}

#[test]
fn remove_takes_the_interposer_attached_to_a_named_device() {
    for what in ["/dev/vdb", "254:16", "vdb"] {
        let m = Mock::new();
        ops(&m).create("vdb-lin", &table()).unwrap();
        m.calls.borrow_mut().clear();
        let r = ops(&m).remove(what).unwrap();
        assert_eq!(r.name, "vdb-lin", "{what}");
        assert_eq!(changes(&m), REMOVE_CALLS, "{what}");
    }
}

#[test]
fn remove_of_a_device_needs_it_attached() {
    let m = Mock::new();
    m.lowers.borrow_mut().insert(DEV, status(DEV));
    let e = ops(&m).remove("/dev/vdb").unwrap_err();
    assert!(matches!(e, Error::NotAttached { .. }), "{e:?}");
    assert!(changes(&m).is_empty());
    let e = ops(&m).remove("nothing-by-that-name").unwrap_err();
    assert!(matches!(e, Error::DmNotFound { .. }), "{e:?}");
}

#[test]
fn remove_keeps_a_busy_lower_device() {
    let m = Mock::new().with_interposer("vdb-lin");
    m.fail_at("lower_remove", || Error::LowerBusy {
        dev: "/dev/vdb".into(),
    });
    let r = ops(&m).remove("vdb-lin").unwrap();
    assert!(r.detached && !r.lower_removed);
    assert!(r.lower_kept.unwrap().contains("busy"));
}

#[test]
fn remove_stops_when_detach_fails() {
    let m = Mock::new().with_interposer("vdb-lin");
    m.fail_at("detach", || Error::TryAgain { op: "DETACH" });
    assert!(matches!(
        ops(&m).remove("vdb-lin"),
        Err(Error::TryAgain { .. })
    ));
    assert_eq!(changes(&m), ["detach 254:16"]);
}

#[test]
fn remove_finishes_a_half_done_remove() {
    // Detached, but the dm device is still there on the lower device.
    let m = Mock::new().with_interposer("vdb-lin");
    m.lowers.borrow_mut().insert(DEV, status(DEV));
    let r = ops(&m).remove("vdb-lin").unwrap();
    assert!(!r.detached && r.lower_removed);
    assert_eq!(
        changes(&m),
        [
            "dm_remove vdb-lin",
            "remove_node /dev/mapper/vdb-lin 253:7",
            "lower_remove 254:16"
        ]
    );
}

#[test]
fn remove_refuses_what_is_not_an_interposer() {
    let m = Mock::new();
    m.dms
        .borrow_mut()
        .push(("plain".into(), DevNo::new(253, 9), true));
    let e = ops(&m).remove("plain").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`plain` is a device-mapper device but not an interposer; use `dmsetup remove plain`"
    );
    assert!(matches!(
        ops(&m).remove("nope"),
        Err(Error::DmNotFound { .. })
    ));
    assert!(changes(&m).is_empty());
}

#[test]
fn list_and_info_name_the_interposer() {
    let m = Mock::new().with_interposer("vdb-lin");
    let l = ops(&m).list().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].device, "/dev/vdb");
    assert_eq!(l[0].interposer.as_deref(), Some("vdb-lin"));
    assert_eq!(l[0].lower, "/dev/interposer/vdb");
    for what in ["vdb-lin", "/dev/vdb", "254:16", "vdb"] {
        assert_eq!(ops(&m).info(what).unwrap(), l[0], "{what}");
    }
    assert!(matches!(
        ops(&m).info("nope"),
        Err(Error::NoSuchName { .. })
    ));
    let json = serde_json::to_value(&l[0]).unwrap();
    assert_eq!(json["state"], "attached");
    assert_eq!(json["dev"], "254:16");
    assert_eq!(json["interposer_dev"], "253:7");
}

#[test]
fn attach_creates_the_lower_device_then_attaches() {
    let m = Mock::new();
    let r = ops(&m)
        .attach(Path::new("/dev/vdb"), Path::new("253:0"))
        .unwrap();
    assert_eq!(changes(&m), ["lower_create 254:16", "attach 254:16 253:0"]);
    assert!(r.lower_created);
    assert_eq!(r.interposer, Some(DM0));
}

#[test]
fn a_refused_attach_removes_the_lower_device_it_created() {
    let m = Mock::new();
    m.fail_at("attach", || Error::Loop {
        dev: "/dev/vdb".into(),
        interposer: "/dev/vdb".into(),
    });
    let e = ops(&m)
        .attach(Path::new("/dev/vdb"), Path::new("/dev/vdb"))
        .unwrap_err();
    assert!(matches!(e, Error::Loop { .. }), "{e}");
    assert_eq!(
        changes(&m),
        [
            "lower_create 254:16",
            "attach 254:16 254:16",
            "lower_remove 254:16"
        ]
    );
}

#[test]
fn detach_keeps_the_lower_device() {
    let m = Mock::new().with_interposer("vdb-lin");
    let r = ops(&m).detach(Path::new("/dev/vdb")).unwrap();
    assert_eq!(changes(&m), ["detach 254:16"]);
    assert_eq!(r.interposer, None);
    assert_eq!(r.lower, "/dev/interposer/vdb");
}

#[test]
fn switch_creates_missing_lower_devices_and_moves_all_in_one_call() {
    let m = Mock::new();
    m.lowers.borrow_mut().insert(DEV, status(DEV));
    let to = Path::new("253:1");
    let r = ops(&m)
        .switch(&[
            (Path::new("/dev/vdb"), Some(to)),
            (Path::new("/dev/vdc"), Some(Path::new("253:2"))),
        ])
        .unwrap();
    let other = OTHER.to_string();
    assert_eq!(
        changes(&m),
        [
            "lower_create 254:16".to_string(),
            format!("lower_create {other}"),
            format!("switch 254:16>253:1 {other}>253:2"),
        ]
    );
    assert_eq!(r.len(), 2);
    assert!(!r[0].lower_created && r[1].lower_created);
    assert_eq!(r[0].interposer, Some(DevNo::new(253, 1)));
    assert_eq!(m.lowers.borrow()[&OTHER].state, State::Attached);
}

#[test]
fn refused_switch_removes_only_the_lower_devices_it_created() {
    let m = Mock::new();
    m.lowers.borrow_mut().insert(DEV, status(DEV));
    m.fail_at("switch", || Error::TryAgain { op: "SWITCH" });
    let e = ops(&m)
        .switch(&[
            (Path::new("/dev/vdb"), None),
            (Path::new("/dev/vdc"), Some(Path::new("253:2"))),
        ])
        .unwrap_err();
    assert!(matches!(e, Error::TryAgain { .. }), "{e:?}");
    assert_eq!(
        changes(&m).last().unwrap(),
        &format!("lower_remove {}", OTHER)
    );
    assert!(m.lowers.borrow().contains_key(&DEV));
}

#[test]
fn a_device_named_twice_is_refused_before_the_kernel_sees_it() {
    let m = Mock::new();
    let e = ops(&m)
        .switch(&[
            (Path::new("/dev/vdb"), None),
            (Path::new("/dev/disk/by-id/vdb"), Some(Path::new("253:2"))),
        ])
        .unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
    assert!(changes(&m).is_empty());
}

#[test]
fn remove_refuses_a_suspended_interposer_before_detaching() {
    let m = Mock::new().with_interposer("vdb-lin");
    m.dms.borrow_mut()[0].2 = false; // dmsetup suspend vdb-lin
    let e = ops(&m).remove("vdb-lin").unwrap_err();
    assert!(matches!(e, Error::InterposerSuspended { .. }), "{e:?}");
    assert!(e.to_string().contains("dmsetup resume vdb-lin"), "{e}");
    assert!(changes(&m).is_empty(), "{:?}", changes(&m));
}

#[test]
fn switch_refuses_to_move_a_device_off_a_suspended_interposer() {
    let m = Mock::new().with_interposer("vdb-lin");
    m.dms.borrow_mut()[0].2 = false; // dmsetup suspend vdb-lin
    let e = ops(&m)
        .switch(&[(Path::new("/dev/vdb"), None)])
        .unwrap_err();
    assert!(matches!(e, Error::InterposerSuspended { .. }), "{e:?}");
    assert!(!changes(&m).iter().any(|c| c.starts_with("switch")));
}

#[test]
fn one_resolver_takes_paths_devnos_kernel_names_and_dm_names() {
    let m = Mock::new().with_interposer("vdb-lin");
    m.dms
        .borrow_mut()
        .push(("plain".into(), DevNo::new(253, 9), true));
    let o = ops(&m);
    let dev = |s: &str| o.resolve_device(Path::new(s));
    let any = |s: &str| o.resolve_any(Path::new(s));
    for what in [
        "/dev/vdb",
        "/dev/disk/by-id/vdb",
        "254:16",
        "vdb",
        "vdb-lin",
    ] {
        assert_eq!(dev(what).unwrap(), DEV, "{what}");
    }
    // Not through the interposer: the interposer itself.
    assert_eq!(any("vdb-lin").unwrap(), DevNo::new(253, 7));
    assert_eq!(any("vdc").unwrap(), OTHER);
    // A dm device that interposes nothing is itself.
    assert_eq!(dev("plain").unwrap(), DevNo::new(253, 9));
    let e = dev("nope").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`nope` names no device: there is neither /dev/nope nor a device-mapper device of that name (see `interposer ls`)"
    );
    assert!(matches!(any("/dev/nope"), Err(Error::PathNotFound { .. })));
    assert!(matches!(
        dev("/etc/passwd"),
        Err(Error::NotBlockDevice { .. })
    ));
    // detach names the device by its interposer too.
    assert_eq!(o.detach(Path::new("vdb-lin")).unwrap().dev, DEV);
}
