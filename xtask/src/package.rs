//! `cargo xtask package`: the Debian packages, in target/package/.
//!
//! - `blk-interposer-dkms_<version>-1_all.deb`: kmod/ under /usr/src/blk-interposer-<version>/
//!   with packaging/dkms/dkms.conf.in; its maintainer scripts call dkms as dh_dkms's do.
//! - `interposer_<version>-1_amd64.deb`: the release binary at /usr/sbin/interposer, one man
//!   page per verb (clap_mangen) and bash/zsh/fish completions (clap_complete), both made from
//!   the clap definitions of crates/interposer-cli/src/cli.rs, the udev rule of packaging/udev/,
//!   the era boot unit of packaging/systemd/ and the LVM example of packaging/lvm/.
//!
//! Each is staged under target/package/stage/<package>/ and built with
//! `dpkg-deb --root-owner-group --build`: no debian/ source package and no dpkg-buildpackage
//! run, only dpkg-deb (and dpkg-shlibdeps for the binary's library dependencies), both part of
//! dpkg-dev. The version is the workspace's ([workspace.package] in Cargo.toml) with Debian
//! revision 1, so that the changelog is the changelog.Debian.gz of a non-native package.
//! Then lintian checks both, if it is installed; an error fails the task.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::{capture, cargo, kmod, run_cmd, VERSION};

/// The name of the module's source package in DKMS (`dkms status` shows it).
const DKMS_NAME: &str = "blk-interposer";
const DKMS_PACKAGE: &str = "blk-interposer-dkms";
const CLI_PACKAGE: &str = "interposer";
const BIN: &str = "interposer";
/// The udev rule's file name; below 60 so that it runs before 60-persistent-storage.rules.
const UDEV_RULE: &str = "58-blk-interposer.rules";
/// The template unit of `interposer era enable`.
const ERA_UNIT: &str = "interposer-era@.service";

/// Build both packages and lint them; returns the .deb paths.
pub fn run(root: &Path) -> Result<Vec<PathBuf>> {
    let out = root.join("target/package");
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("cleaning {}", out.display()))?;
    }
    let meta = Meta::new(root)?;
    cargo(&["build", "--release", "-p", "interposer-cli"])?;
    let debs = vec![dkms_deb(root, &out, &meta)?, cli_deb(root, &out, &meta)?];
    lintian(&debs)?;
    for deb in &debs {
        println!("package: {}", deb.display());
    }
    Ok(debs)
}

/// What the templates of packaging/ are filled in with.
struct Meta {
    deb_version: String,
    maintainer: String,
    commit: String,
    /// The commit's date, RFC 2822 for the changelog and YYYY-MM-DD for the man pages, so
    /// that two builds of one commit are the same.
    date: String,
    day: String,
}

impl Meta {
    fn new(root: &Path) -> Result<Meta> {
        let git = |format: &str| -> Result<String> {
            let root = root.to_string_lossy();
            Ok(capture(
                "git",
                &["-C", &root, "log", "-1", &format!("--format={format}")],
            )?
            .trim()
            .to_string())
        };
        Ok(Meta {
            deb_version: format!("{VERSION}-1"),
            maintainer: git("%an <%ae>")?,
            commit: git("%h")?,
            date: git("%aD")?,
            day: git("%as")?,
        })
    }

    /// Fill in `@VERSION@`, `@DEB_VERSION@`, ... in packaging/`template`.
    fn fill(&self, root: &Path, template: &str, extra: &[(&str, &str)]) -> Result<String> {
        let path = root.join("packaging").join(template);
        let mut text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let vars = [
            ("VERSION", VERSION),
            ("DEB_VERSION", &self.deb_version),
            ("MAINTAINER", &self.maintainer),
            ("COMMIT", &self.commit),
            ("DATE", &self.date),
        ];
        for (key, value) in vars.iter().chain(extra) {
            text = text.replace(&format!("@{key}@"), value);
        }
        if let Some(var) = unfilled(&text) {
            bail!("{}: @{var}@ is not filled in", path.display());
        }
        Ok(text)
    }
}

/// The first `@NAME@` left in `text` (an e-mail address is no such thing).
fn unfilled(text: &str) -> Option<&str> {
    text.split('@')
        .skip(1)
        .zip(text.split('@').skip(2))
        .map(|(name, _)| name)
        .find(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
}

/// A package's tree under target/package/stage/.
struct Stage {
    name: &'static str,
    dir: PathBuf,
}

impl Stage {
    fn new(out: &Path, name: &'static str) -> Result<Stage> {
        let dir = out.join("stage").join(name);
        fs::create_dir_all(dir.join("DEBIAN"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(Stage { name, dir })
    }

    /// Write `path` (absolute in the package) with `mode`.
    fn write(&self, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let to = self.dir.join(path.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", to.display()))
    }

    /// Write `path` gzipped the way Debian wants it (best compression, no name or time).
    fn write_gz(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut gzip = Command::new("gzip")
            .args(["-9n", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running gzip")?;
        gzip.stdin
            .take()
            .expect("piped")
            .write_all(bytes)
            .context("writing to gzip")?;
        let out = gzip.wait_with_output().context("running gzip")?;
        if !out.status.success() {
            bail!("gzip failed ({})", out.status);
        }
        self.write(path, &out.stdout, 0o644)
    }

    /// copyright and changelog.Debian.gz under /usr/share/doc/<package>/, and the lintian
    /// overrides of packaging/debian/<package>.lintian-overrides.
    fn docs(&self, root: &Path, meta: &Meta) -> Result<()> {
        let overrides = root
            .join("packaging/debian")
            .join(format!("{}.lintian-overrides", self.name));
        if overrides.exists() {
            let text =
                fs::read(&overrides).with_context(|| format!("reading {}", overrides.display()))?;
            self.write(
                &format!("/usr/share/lintian/overrides/{}", self.name),
                &text,
                0o644,
            )?;
        }
        let doc = format!("/usr/share/doc/{}", self.name);
        let copyright = meta.fill(root, "debian/copyright.in", &[])?;
        self.write(&format!("{doc}/copyright"), copyright.as_bytes(), 0o644)?;
        let changelog = meta.fill(root, "debian/changelog.in", &[("PACKAGE", self.name)])?;
        self.write_gz(&format!("{doc}/changelog.Debian.gz"), changelog.as_bytes())
    }

    /// DEBIAN/md5sums, DEBIAN/control from `template`, then the .deb in `out`.
    fn build(
        &self,
        root: &Path,
        out: &Path,
        meta: &Meta,
        extra: &[(&str, &str)],
    ) -> Result<PathBuf> {
        fix_dir_modes(&self.dir)?;
        let mut sums = String::new();
        let mut size = 0u64;
        for file in files(&self.dir)? {
            let rel = file.strip_prefix(&self.dir).expect("below the stage");
            if rel.starts_with("DEBIAN") {
                continue;
            }
            size += fs::metadata(&file)?.len();
            sums.push_str(&format!("{}  {}\n", md5_hex(&file)?, rel.display()));
        }
        self.write("DEBIAN/md5sums", sums.as_bytes(), 0o644)?;
        let kib = size.div_ceil(1024).to_string();
        let mut vars = vec![("INSTALLED_SIZE", kib.as_str())];
        vars.extend_from_slice(extra);
        let control = meta.fill(root, &format!("debian/{}.control.in", self.name), &vars)?;
        self.write("DEBIAN/control", control.as_bytes(), 0o644)?;
        let deb = out.join(format!(
            "{}_{}_{}.deb",
            self.name,
            meta.deb_version,
            arch(&control)
        ));
        let (dir, deb_s) = (self.dir.to_string_lossy(), deb.to_string_lossy());
        run_cmd(
            "dpkg-deb",
            &["--root-owner-group", "-Zxz", "--build", &dir, &deb_s],
            &[],
        )?;
        Ok(deb)
    }
}

/// The Architecture: field of a control file.
fn arch(control: &str) -> &str {
    control
        .lines()
        .find_map(|l| l.strip_prefix("Architecture:"))
        .map_or("all", str::trim)
}

fn md5_hex(file: &Path) -> Result<String> {
    let out = capture("md5sum", &[&file.to_string_lossy()])?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Every regular file below `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(files(&path)?);
        } else {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// 0755 on every directory, whatever the umask.
fn fix_dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            fix_dir_modes(&path)?;
        }
    }
    Ok(())
}

/// The module's source for DKMS, dkms.conf, and the scripts that hand it to dkms.
fn dkms_deb(root: &Path, out: &Path, meta: &Meta) -> Result<PathBuf> {
    let stage = Stage::new(out, DKMS_PACKAGE)?;
    let src = format!("/usr/src/{DKMS_NAME}-{VERSION}");
    let src_dir = stage.dir.join(src.trim_start_matches('/'));
    kmod::copy_sources(&root.join("kmod"), &src_dir)?;
    for file in files(&src_dir)? {
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
    }
    let conf = meta.fill(root, "dkms/dkms.conf.in", &[])?;
    stage.write(&format!("{src}/dkms.conf"), conf.as_bytes(), 0o644)?;
    for script in ["postinst", "prerm"] {
        let text = meta.fill(root, &format!("debian/{DKMS_PACKAGE}.{script}.in"), &[])?;
        stage.write(&format!("DEBIAN/{script}"), text.as_bytes(), 0o755)?;
    }
    stage.docs(root, meta)?;
    stage.build(root, out, meta, &[])
}

/// The tool, its man pages and completions, the udev rule, the era boot unit and the LVM
/// example.
fn cli_deb(root: &Path, out: &Path, meta: &Meta) -> Result<PathBuf> {
    let stage = Stage::new(out, CLI_PACKAGE)?;
    let bin = root.join("target/release").join(BIN);
    let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    stage.write(&format!("/usr/sbin/{BIN}"), &bytes, 0o755)?;
    let staged_bin = stage.dir.join("usr/sbin").join(BIN);
    run_cmd(
        "strip",
        &[
            "--remove-section=.comment",
            "--remove-section=.note",
            "--strip-unneeded",
            &staged_bin.to_string_lossy(),
        ],
        &[],
    )?;

    let cli = interposer_cli::cli::Cli::command();
    for (name, page) in man_pages(cli.clone(), meta)? {
        stage.write_gz(&format!("/usr/share/man/man8/{name}.8.gz"), &page)?;
    }
    for (shell, path) in [
        (
            Shell::Bash,
            format!("/usr/share/bash-completion/completions/{BIN}"),
        ),
        (
            Shell::Zsh,
            format!("/usr/share/zsh/vendor-completions/_{BIN}"),
        ),
        (
            Shell::Fish,
            format!("/usr/share/fish/vendor_completions.d/{BIN}.fish"),
        ),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli.clone(), BIN, &mut script);
        stage.write(&path, &script, 0o644)?;
    }

    let rule = fs::read(root.join("packaging/udev").join(UDEV_RULE))?;
    stage.write(&format!("/usr/lib/udev/rules.d/{UDEV_RULE}"), &rule, 0o644)?;
    let unit = fs::read(root.join("packaging/systemd").join(ERA_UNIT))?;
    stage.write(&format!("/lib/systemd/system/{ERA_UNIT}"), &unit, 0o644)?;
    let lvm = fs::read(root.join("packaging/lvm/lvm-filter.conf"))?;
    stage.write(
        &format!("/usr/share/doc/{CLI_PACKAGE}/examples/lvm-filter.conf"),
        &lvm,
        0o644,
    )?;
    stage.docs(root, meta)?;
    let depends = shlibs_depends(out, &staged_bin)?;
    stage.build(root, out, meta, &[("SHLIBS_DEPENDS", &depends)])
}

/// interposer(8), and interposer-VERB(8) for each verb and nested verb
/// (interposer-snapshot-create(8)), as roff.
fn man_pages(cli: clap::Command, meta: &Meta) -> Result<Vec<(String, Vec<u8>)>> {
    let mut cli = cli;
    cli.build();
    let mut pages = Vec::new();
    man_page(&cli, BIN, meta, &mut pages)?;
    Ok(pages)
}

fn man_page(
    cmd: &clap::Command,
    name: &str,
    meta: &Meta,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.to_string()))
        .section("8")
        .manual("System Administration")
        .source(format!("interposer {VERSION}"))
        .date(&meta.day)
        .render(&mut roff)
        .with_context(|| format!("rendering {name}(8)"))?;
    pages.push((name.to_string(), roff));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        man_page(sub, &format!("{name}-{}", sub.get_name()), meta, pages)?;
    }
    Ok(())
}

/// `libc6 (>= …), …` for `binary`, from dpkg-shlibdeps (which wants a debian/control).
fn shlibs_depends(out: &Path, binary: &Path) -> Result<String> {
    let work = out.join("shlibdeps");
    fs::create_dir_all(work.join("debian"))?;
    fs::write(
        work.join("debian/control"),
        format!("Source: {CLI_PACKAGE}\n\nPackage: {CLI_PACKAGE}\nArchitecture: any\n"),
    )?;
    let output = Command::new("dpkg-shlibdeps")
        .args(["-O", "-e"])
        .arg(binary)
        .current_dir(&work)
        .output()
        .context("running dpkg-shlibdeps (apt-get install dpkg-dev)")?;
    if !output.status.success() {
        bail!(
            "dpkg-shlibdeps failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// lintian on each package: errors fail, warnings are printed. Overrides live in
/// packaging/debian/<package>.lintian-overrides.
fn lintian(debs: &[PathBuf]) -> Result<()> {
    if Command::new("lintian").arg("--version").output().is_err() {
        println!("package: lintian is not installed (apt-get install lintian), not checked");
        return Ok(());
    }
    let mut args = vec!["--fail-on", "error", "--info", "--display-info"];
    let debs: Vec<String> = debs
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    args.extend(debs.iter().map(String::as_str));
    run_cmd("lintian", &args, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_man_page_per_verb_from_the_clap_definitions() {
        let meta = Meta {
            deb_version: format!("{VERSION}-1"),
            maintainer: "M <m@example.org>".into(),
            commit: "abc".into(),
            date: "Tue, 1 Dec 2026 12:00:00 +0000".into(),
            day: "2026-12-01".into(),
        };
        let pages = man_pages(interposer_cli::cli::Cli::command(), &meta).unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "interposer",
            "interposer-create",
            "interposer-remove",
            "interposer-snapshot",
            "interposer-snapshot-create",
            "interposer-era-changed",
            "interposer-version",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.ends_with("-help")), "{names:?}");
        let (_, create) = pages
            .iter()
            .find(|(n, _)| n == "interposer-create")
            .unwrap();
        let create = String::from_utf8_lossy(create);
        assert!(create.contains(".TH interposer-create 8"), "{create}");
        assert!(create.contains("[interpose]"), "{create}");
        // The exit statuses of interposer --help are in interposer(8).
        let (_, top) = pages.iter().find(|(n, _)| n == "interposer").unwrap();
        let top = String::from_utf8_lossy(top);
        assert!(top.contains("Exit status:"), "{top}");
        assert!(top.contains("tracking_gap"), "{top}");
    }

    #[test]
    fn unfilled_template_variables_are_found_and_addresses_are_not() {
        assert_eq!(unfilled("Version: @DEB_VERSION@\n"), Some("DEB_VERSION"));
        assert_eq!(unfilled("Maintainer: A <a@example.org>\n"), None);
        assert_eq!(unfilled("a@b.c and @X_Y@"), Some("X_Y"));
        assert_eq!(unfilled("no variables"), None);
    }
}
