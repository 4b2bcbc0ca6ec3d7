//! The Rust mirror in `src/abi.rs` must match `kmod/include/uapi/blk_interposer.h`.
//!
//! Compiles a tiny C program with the system C compiler (`$CC`, else `cc`)
//! that prints the size, alignment and field offsets/sizes of every struct and
//! every constant and ioctl number of the header, and compares each with the
//! Rust side.  Needs a C compiler and `<linux/types.h>` (linux-libc-dev).

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use blk_interposer::abi::{self, Cmd, IoctlHeader, RawDevno, RawStatus, RawSwitch};

/// Size of a field, from a projection closure.
fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `(C expression, Rust value)` for the layout of one struct.
macro_rules! layout {
    ($out:ident, $c:literal, $rs:ty, [$($f:ident),* $(,)?]) => {
        $out.push((format!("sizeof(struct {})", $c), size_of::<$rs>() as u64));
        $out.push((format!("_Alignof(struct {})", $c), align_of::<$rs>() as u64));
        $(
            $out.push((format!("offsetof(struct {}, {})", $c, stringify!($f)), offset_of!($rs, $f) as u64));
            $out.push((
                format!("sizeof(((struct {} *)0)->{})", $c, stringify!($f)),
                field_size::<$rs, _>(|s| &s.$f) as u64,
            ));
        )*
    };
}

#[allow(clippy::unnecessary_cast)] // ioctl_num_type is c_int on musl
fn expectations() -> Vec<(String, u64)> {
    let mut v = Vec::new();
    layout!(v, "blk_interposer_devno", RawDevno, [major, minor]);
    layout!(
        v,
        "blk_interposer_ioctl",
        IoctlHeader,
        [
            version, data_size, data_start, flags, count, padding, dev, interposer, lower,
            lower_name
        ]
    );
    layout!(
        v,
        "blk_interposer_status",
        RawStatus,
        [
            dev, lower, interposer, state, padding, sectors, redirected, lower_bios, deferred,
            attaches, lower_name
        ]
    );
    layout!(v, "blk_interposer_switch", RawSwitch, [dev, interposer]);
    for (c, r) in [
        ("BLK_INTERPOSER_SWITCH_MAX", abi::SWITCH_MAX as u64),
        ("BLK_INTERPOSER_VERSION_MAJOR", abi::VERSION_MAJOR as u64),
        ("BLK_INTERPOSER_VERSION_MINOR", abi::VERSION_MINOR as u64),
        ("BLK_INTERPOSER_VERSION_PATCH", abi::VERSION_PATCH as u64),
        ("BLK_INTERPOSER_NAME_LEN", abi::NAME_LEN as u64),
        ("BLK_INTERPOSER_BUFFER_FULL", abi::BUFFER_FULL as u64),
        ("BLK_INTERPOSER_ST_ATTACHED", abi::ST_ATTACHED as u64),
        ("BLK_INTERPOSER_ST_GONE", abi::ST_GONE as u64),
        ("BLK_INTERPOSER_IOCTL", abi::IOCTL_MAGIC as u64),
        (
            "sizeof(BLK_INTERPOSER_CTL_NAME) - 1",
            abi::CTL_NAME.len() as u64,
        ),
        (
            "sizeof(BLK_INTERPOSER_LOWER_DIR) - 1",
            abi::LOWER_DIR.len() as u64,
        ),
    ] {
        v.push((c.to_string(), r));
    }
    for cmd in Cmd::ALL {
        v.push((format!("BLK_INTERPOSER_{}_CMD", cmd.c_name()), cmd as u64));
        v.push((
            format!("BLK_INTERPOSER_{}", cmd.c_name()),
            cmd.request() as u64,
        ));
    }
    v
}

/// Compile and run the printer; `expression -> value`.
fn c_values(exprs: &[String]) -> BTreeMap<String, u64> {
    let header = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kmod/include/uapi");
    assert!(
        header.join("blk_interposer.h").exists(),
        "no header in {}",
        header.display()
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("abi_layout");
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"blk_interposer.h\"\nint main(void)\n{\n",
    );
    for e in exprs {
        src.push_str(&format!(
            "\tprintf(\"%s\\t%llu\\n\", {:?}, (unsigned long long)({e}));\n",
            e
        ));
    }
    src.push_str("\treturn 0;\n}\n");
    let c = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&c, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-Werror", "-I"])
        .arg(&header)
        .arg(&c)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e} (install gcc)"));
    assert!(
        out.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('\t').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn rust_mirror_matches_the_uapi_header() {
    let want = expectations();
    let exprs: Vec<String> = want.iter().map(|(e, _)| e.clone()).collect();
    let got = c_values(&exprs);
    let drift: Vec<String> = want
        .iter()
        .filter(|(e, r)| got.get(e) != Some(r))
        .map(|(e, r)| format!("{e}: C {:?}, Rust {r}", got.get(e)))
        .collect();
    assert!(
        drift.is_empty(),
        "abi.rs drifted from blk_interposer.h:\n{}",
        drift.join("\n")
    );
    assert_eq!(got.len(), want.len());
}
