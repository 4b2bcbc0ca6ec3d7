//! The data path with temporary files as the snapshot.

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::backup::FullReason;

const MIB: u64 = 1 << 20;

/// A "device" of `size` bytes: zeros, with a few non-zero regions.
fn disk(size: u64) -> (tempfile::NamedTempFile, Vec<u8>) {
    let mut data = vec![0u8; size as usize];
    for (i, b) in data[..100_000].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    let tail = size as usize - 5000;
    data[tail..].fill(0xee);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &data).unwrap();
    (f, data)
}

/// Write `bytes` at `offset` into both the file and the model.
fn poke(f: &tempfile::NamedTempFile, data: &mut [u8], offset: u64, bytes: &[u8]) {
    f.as_file().write_all_at(bytes, offset).unwrap();
    data[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
}

fn version(size: u64, kind: Kind, ranges: Vec<(u64, u64)>) -> NewVersion {
    NewVersion {
        source: Source {
            device: "/dev/sdb1".into(),
            identity: crate::era::record::DeviceIdentity {
                sectors: size / 512,
                ..Default::default()
            },
            size,
            kind,
            full_reason: (kind == Kind::Full).then_some(FullReason::First),
            checkpoint: None,
            block_bytes: None,
            group: None,
        },
        ranges,
    }
}

/// Counts progress, and checks it adds up per phase.
#[derive(Default)]
struct Count {
    phases: Vec<(String, u64, u64)>,
}

impl Progress for Count {
    fn start(&mut self, phase: &str, total: u64) {
        self.phases.push((phase.into(), total, 0));
    }
    fn advance(&mut self, bytes: u64) {
        self.phases.last_mut().unwrap().2 += bytes;
    }
}

/// A device of `size` bytes and a backup directory with its full version 1.
fn with_full(
    size: u64,
) -> (
    tempfile::NamedTempFile,
    Vec<u8>,
    tempfile::TempDir,
    BackupDir,
) {
    let (src, data) = disk(size);
    let tmp = tempfile::tempdir().unwrap();
    let dir = BackupDir::create(&tmp.path().join("bk")).unwrap();
    dir.stage(&version(size, Kind::Full, vec![]), src.as_file(), &mut ())
        .unwrap()
        .commit()
        .unwrap();
    (src, data, tmp, dir)
}

#[test]
fn a_full_image_is_sparse_where_the_device_is_zero() {
    let size = 16 * MIB + 4096 + 512;
    let (src, data) = disk(size);
    let tmp = tempfile::tempdir().unwrap();
    let dir = BackupDir::create(&tmp.path().join("bk")).unwrap();
    let mut count = Count::default();
    let m = dir
        .stage(
            &version(size, Kind::Full, vec![]),
            src.as_file(),
            &mut count,
        )
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(
        (m.version, m.source.kind, m.previous.clone()),
        (1, Kind::Full, None)
    );
    assert_eq!(m.pieces.len(), 5, "4 MiB pieces and the rest");
    assert_eq!(m.copied_bytes(), size);
    assert_eq!(
        count.phases,
        [("copy".into(), size, size), ("verify".into(), size, size)]
    );
    let img = tmp.path().join("bk/000001.full.img");
    assert_eq!(std::fs::read(&img).unwrap(), data);
    assert_eq!(m.data.sha256, sha256(&data));
    let blocks = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(blocks < 2 * MIB, "{blocks} bytes allocated: not sparse");
    assert!(tmp.path().join("bk/000001.json").exists());
}

#[test]
fn deltas_restore_exactly_each_version() {
    let size = 9 * MIB + 512;
    let (src, mut data, tmp, dir) = with_full(size);
    let mut want = vec![data.clone()];
    // Three increments: each writes somewhere, and lists a superset of it
    // (as era does, in whole blocks), one reaching the odd-sized end.
    let writes: [&[(u64, u64, u8)]; 3] = [
        &[(4096, 100, 1), (5 * MIB, 70_000, 2)],
        &[(0, 1, 3), (size - 512, 512, 4)],
        &[(4 * MIB - 10, 20, 5)],
    ];
    for w in writes {
        let mut ranges = Vec::new();
        for &(off, len, v) in w {
            poke(&src, &mut data, off, &vec![v; len as usize]);
            let b = off / 65536 * 65536;
            ranges.push((b, (off + len).div_ceil(65536) * 65536 - b));
        }
        let m = dir
            .stage(
                &version(size, Kind::Incremental, ranges),
                src.as_file(),
                &mut (),
            )
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(m.previous.as_ref().unwrap().version, m.version - 1);
        want.push(data.clone());
    }
    assert_eq!(dir.versions().unwrap(), [1, 2, 3, 4]);
    let delta = std::fs::metadata(tmp.path().join("bk/000003.delta")).unwrap();
    assert_eq!(
        delta.len(),
        65536 + 512,
        "only the listed ranges, clipped at the end"
    );
    let r = dir.verify(None, &mut ()).unwrap();
    assert_eq!(r.versions.len(), 4);
    for (i, want) in want.iter().enumerate() {
        let v = i as u32 + 1;
        let out = tmp.path().join(format!("restored-{v}"));
        let r = dir.restore(Some(v), &out, &mut ()).unwrap();
        assert_eq!(r.applied, (1..=v).collect::<Vec<_>>());
        assert!(std::fs::read(&out).unwrap() == *want, "version {v} differs");
    }
    // Never over a file of the directory itself.
    let e = dir
        .restore(Some(1), &tmp.path().join("bk/000002.delta"), &mut ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside the backup directory"), "{e}");
    dir.verify(None, &mut ()).unwrap();
    // A file that was there is replaced, not merged into.
    let out = tmp.path().join("restored-1");
    std::fs::write(&out, vec![9u8; size as usize + 7]).unwrap();
    dir.restore(Some(1), &out, &mut ()).unwrap();
    assert!(std::fs::read(&out).unwrap() == want[0]);
}

#[test]
fn a_failed_run_leaves_earlier_versions_alone_and_is_cleaned_next_time() {
    let size = 2 * MIB;
    let (src, _, tmp, dir) = with_full(size);
    let path = tmp.path().join("bk");
    let before: Vec<(String, Vec<u8>)> = ["000001.full.img", "000001.json"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(path.join(n)).unwrap()))
        .collect();
    // The source ends before a listed range: the copy fails half way.
    let e = dir
        .stage(
            &version(size + MIB, Kind::Incremental, vec![(0, 4096), (size, 4096)]),
            src.as_file(),
            &mut (),
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read the snapshot of /dev/sdb1"),
        "{e}"
    );
    // Staged but not committed: dropped, its file goes.
    let s = dir
        .stage(
            &version(size, Kind::Incremental, vec![(0, 4096)]),
            src.as_file(),
            &mut (),
        )
        .unwrap();
    assert!(path.join("000002.delta.partial").exists());
    drop(s);
    assert!(!path.join("000002.delta.partial").exists());
    // What a crash leaves: partial files, a data file without manifest.
    std::fs::write(path.join("000002.json.partial"), "{").unwrap();
    std::fs::write(path.join("000002.delta"), "x").unwrap();
    drop(dir);
    let dir = BackupDir::create(&path).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["000001.full.img", "000001.json", "lock"]);
    for (n, b) in before {
        assert!(std::fs::read(path.join(&n)).unwrap() == b, "{n} changed");
    }
    assert_eq!(dir.versions().unwrap(), [1]);
}

#[test]
fn verify_names_a_flipped_byte_and_a_missing_link() {
    let size = 3 * MIB;
    let (src, mut data, tmp, dir) = with_full(size);
    let path = tmp.path().join("bk");
    for v in 2..=3u8 {
        poke(&src, &mut data, 8192, &[v; 10]);
        dir.stage(
            &version(size, Kind::Incremental, vec![(0, 65536)]),
            src.as_file(),
            &mut (),
        )
        .unwrap()
        .commit()
        .unwrap();
    }
    drop(dir);
    let dir = BackupDir::open(&path).unwrap();
    dir.verify(None, &mut ()).unwrap();
    // One byte of version 2's delta.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path.join("000002.delta"))
        .unwrap();
    f.write_all_at(&[0x55], 100).unwrap();
    let e = dir.verify(None, &mut ()).unwrap_err();
    assert!(matches!(e, Error::BackupDamaged { version: 2, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("000002.delta do not match their checksum"),
        "{e}"
    );
    // Restoring 3 reads 2: refused before anything is written.
    let out = tmp.path().join("out.img");
    assert!(matches!(
        dir.restore(None, &out, &mut ()).unwrap_err(),
        Error::BackupDamaged { version: 2, .. }
    ));
    assert!(!out.exists());
    // Version 1 alone is fine.
    assert_eq!(dir.verify(Some(1), &mut ()).unwrap().versions.len(), 1);
    // Version 1's manifest rewritten: version 2 no longer builds on it.
    let one = path.join("000001.json");
    let text = std::fs::read(&one).unwrap();
    std::fs::write(&one, [&text[..], b" "].concat()).unwrap();
    let e = dir.verify(Some(1), &mut ()).expect("1 itself still reads");
    assert_eq!(e.versions[0].version, 1);
    let e = dir.chain(3).unwrap_err().to_string();
    assert!(
        e.contains("version 1's manifest is not the one it was built on"),
        "{e}"
    );
    std::fs::write(&one, text).unwrap();
    // Version 2's manifest gone: 3 has no base.
    std::fs::remove_file(path.join("000002.json")).unwrap();
    let e = dir.verify(Some(3), &mut ()).unwrap_err().to_string();
    assert!(e.starts_with("backup version 3 in"), "{e}");
    assert!(e.contains("the version it builds on, 2, is missing"), "{e}");
}

#[test]
fn a_locked_directory_is_refused_and_a_missing_one_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bk");
    let dir = BackupDir::create(&path).unwrap();
    let e = BackupDir::create(&path).unwrap_err();
    assert!(matches!(e, Error::BackupBusy { .. }), "{e}");
    assert!(matches!(
        BackupDir::open(&path).unwrap_err(),
        Error::BackupBusy { .. }
    ));
    drop(dir);
    let r1 = BackupDir::open(&path).unwrap();
    let _r2 = BackupDir::open(&path).expect("readers share the lock");
    assert!(matches!(
        r1.verify(None, &mut ()).unwrap_err(),
        Error::BackupNoVersion { version: None, .. }
    ));
    let e = BackupDir::open(&tmp.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("nope does not exist or is not a directory"),
        "{e}"
    );
}

#[test]
fn streaming_gives_the_whole_image() {
    let size = 5 * MIB + 512;
    let (src, data) = disk(size);
    let mut out = Vec::new();
    let sha = stream_full(src.as_file(), size, &mut out, &mut ()).unwrap();
    assert!(out == data);
    assert_eq!(sha, sha256(&data));
}

#[test]
fn a_full_version_may_follow_a_damaged_one_an_incremental_may_not() {
    let size = MIB;
    let (src, data, tmp, dir) = with_full(size);
    let path = tmp.path().join("bk");
    std::fs::write(path.join("000001.json"), "{ not json").unwrap();
    let incr = version(size, Kind::Incremental, vec![(0, 4096)]);
    let e = dir.stage(&incr, src.as_file(), &mut ()).unwrap_err();
    assert!(matches!(e, Error::BackupDamaged { version: 1, .. }), "{e}");
    assert!(e.to_string().contains("--full"), "{e}");
    let m = dir
        .stage(&version(size, Kind::Full, vec![]), src.as_file(), &mut ())
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!((m.version, m.previous), (2, None));
    let out = tmp.path().join("out");
    dir.restore(None, &out, &mut ()).unwrap();
    assert!(std::fs::read(&out).unwrap() == data);
}
