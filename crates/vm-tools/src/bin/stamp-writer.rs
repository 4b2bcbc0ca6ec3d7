//! stamp-writer: overlapping, sequence-stamped `O_DIRECT` writes to a raw
//! block device, and the check that every sector holds the last completed
//! write aimed at it.
//!
//! Every write gets a sequence number and covers 1..=`--max-sectors`
//! 512-byte sectors at a random offset, so writes of varying sizes overlap
//! each other all the time.  Each sector it writes is stamped with
//!
//! ```text
//!   0..8    magic "STAMPv1\0"
//!   8..16   sequence number of the write      (u64 LE)
//!   16..24  the sector's own number           (u64 LE)
//!   24..32  first sector of the write         (u64 LE)
//!   32..512 bytes derived from (seq, sector)
//! ```
//!
//! Writer threads run concurrently, but two writes that overlap are never in
//! flight at the same time (a range lock), and a write's sequence number is
//! taken when it enters the range lock: so for every sector the order of
//! the writes covering it is defined, and when a write completes the map
//! `sector -> last completed seq` (kept in memory, saved to `--map` in the
//! VM's tmpfs) is exact.  `verify` reads the region back with `O_DIRECT`
//! and compares every sector with the map: a lost write shows an older
//! sequence number, a misdirected one the wrong sector number, a torn or
//! corrupted sector the wrong fill bytes.
//!
//! ```text
//! stamp-writer init   --dev D --sectors N --map M            stamp every sector with seq 0
//! stamp-writer run    --dev D --map M --stop FILE [--threads K] [--max-sectors S]
//!                     [--seed X] [--nowait] [--tolerate-eio] [--max-writes W] [--cover-unknown]
//!                     [--pause-ms P]
//! stamp-writer verify --dev D --map M
//! ```
//!
//! `run` writes until FILE exists (or W writes are done); with `--pause-ms`
//! each thread sleeps P ms after each write, a steady load that leaves the
//! VM time for other work.  `--nowait` uses
//! `pwritev2(RWF_NOWAIT)`: `EAGAIN` is counted and the same write (same
//! seq, same bytes) retried until it succeeds.  With `--tolerate-eio` an
//! `EIO` is counted and the sectors of that write become unknown (not
//! checked until written again); without it any error fails the run.  The
//! last line of `run` is `stamp-writer: writes=.. ok=.. eagain=.. eio=..
//! other=.. next_seq=..`; `--cover-unknown` first rewrites every sector of
//! unknown content, so that a following `verify` checks all of them.  The exit status is 1 when an error that was not
//! tolerated happened.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::libc;
use vm_tools::{AlignedBuf, Rng};

const SECTOR: usize = 512;
const MAGIC: &[u8; 8] = b"STAMPv1\0";
const MAP_MAGIC: &[u8; 8] = b"STMAPv1\0";
/// A sector whose content is not known (a write to it failed).
const UNKNOWN: u64 = u64::MAX;
/// Give up a write that gets EAGAIN this many times in a row.
const MAX_EAGAIN_RETRIES: u32 = 100_000;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("stamp-writer: {msg}");
    std::process::exit(2)
}

/// `--key value` and `--flag` arguments.
struct Args {
    values: HashMap<String, String>,
}

impl Args {
    fn parse(args: &[String], flags: &[&str]) -> Args {
        let mut values = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .unwrap_or_else(|| die(format!("unexpected argument `{a}`")));
            if flags.contains(&key) {
                values.insert(key.to_string(), String::new());
            } else {
                let v = it
                    .next()
                    .unwrap_or_else(|| die(format!("--{key} needs a value")));
                values.insert(key.to_string(), v.clone());
            }
        }
        Args { values }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn need(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| die(format!("--{key} is required")))
    }

    fn num(&self, key: &str, default: u64) -> u64 {
        self.get(key).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| die(format!("--{key} `{v}` is not a number")))
        })
    }

    fn flag(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }
}

/// The bytes of one stamped sector.
fn stamp(buf: &mut [u8], seq: u64, sector: u64, first: u64) {
    buf[0..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[16..24].copy_from_slice(&sector.to_le_bytes());
    buf[24..32].copy_from_slice(&first.to_le_bytes());
    let mut rng = Rng::new(seq.wrapping_mul(0x1000_0000_01b3) ^ sector.rotate_left(29) ^ 1);
    for chunk in buf[32..SECTOR].chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// What a sector on disk says, or why it is not a stamp.
fn check_sector(buf: &[u8], sector: u64, want: u64) -> Result<(), String> {
    if &buf[0..8] != MAGIC {
        return Err(format!(
            "no stamp (first bytes {:02x?})",
            &buf[0..16.min(buf.len())]
        ));
    }
    let seq = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let at = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes"));
    let first = u64::from_le_bytes(buf[24..32].try_into().expect("8 bytes"));
    if at != sector {
        return Err(format!(
            "holds sector {at}'s stamp (seq {seq}, write at {first}): misdirected"
        ));
    }
    if seq != want {
        let what = if seq < want {
            "older: a completed write was lost"
        } else {
            "newer than any completed write"
        };
        return Err(format!(
            "holds seq {seq} (write at {first}), expected {want}: {what}"
        ));
    }
    let mut expect = [0u8; SECTOR];
    stamp(&mut expect, seq, sector, first);
    if buf[32..] != expect[32..] {
        return Err(format!(
            "seq {seq} right but the fill bytes differ: torn or corrupted"
        ));
    }
    Ok(())
}

/// The map file: magic, sector count, next seq, then one u64 per sector.
struct Map {
    next_seq: u64,
    last: Vec<u64>,
}

impl Map {
    fn load(path: &Path) -> io::Result<Map> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        if bytes.len() < 24 || &bytes[0..8] != MAP_MAGIC {
            return Err(io::Error::other(format!("{} is not a map", path.display())));
        }
        let n = u64::from_le_bytes(bytes[8..16].try_into().expect("8")) as usize;
        let next_seq = u64::from_le_bytes(bytes[16..24].try_into().expect("8"));
        if bytes.len() != 24 + n * 8 {
            return Err(io::Error::other(format!("{} is truncated", path.display())));
        }
        let last = bytes[24..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect();
        Ok(Map { next_seq, last })
    }

    fn save(&self, path: &Path) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(24 + self.last.len() * 8);
        bytes.extend_from_slice(MAP_MAGIC);
        bytes.extend_from_slice(&(self.last.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&self.next_seq.to_le_bytes());
        for v in &self.last {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let tmp = path.with_extension("tmp");
        File::create(&tmp)?.write_all(&bytes)?;
        std::fs::rename(tmp, path)
    }
}

fn open_direct(dev: &str) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| die(format!("cannot open {dev} with O_DIRECT: {e}")))
}

fn init(a: &Args) -> ExitCode {
    let dev = a.need("dev");
    let n = a.num("sectors", 0);
    if n == 0 {
        die("--sectors must be > 0");
    }
    let f = open_direct(dev);
    let chunk = 2048u64; // 1 MiB
    let mut buf = AlignedBuf::new(chunk as usize * SECTOR, 4096);
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let b = &mut buf.as_mut_slice()[..len as usize * SECTOR];
        for (i, sec) in b.chunks_mut(SECTOR).enumerate() {
            stamp(sec, 0, s + i as u64, s);
        }
        f.write_all_at(b, s * SECTOR as u64)
            .unwrap_or_else(|e| die(format!("init write at sector {s}: {e}")));
        s += len;
    }
    let map = Map {
        next_seq: 1,
        last: vec![0; n as usize],
    };
    map.save(Path::new(a.need("map")))
        .unwrap_or_else(|e| die(format!("saving the map: {e}")));
    println!("stamp-writer: init {n} sectors of {dev} with seq 0");
    ExitCode::SUCCESS
}

/// State shared by the writer threads.
struct Shared {
    /// In-flight extents `(start, len)` and the map; overlapping writes wait.
    state: Mutex<(Vec<(u64, u64)>, Map)>,
    free: Condvar,
    writes: AtomicU64,
    ok: AtomicU64,
    eagain: AtomicU64,
    eio: AtomicU64,
    other: AtomicU64,
    failed: AtomicBool,
}

struct RunCfg {
    sectors: u64,
    max_sectors: u64,
    nowait: bool,
    tolerate_eio: bool,
    max_writes: u64,
    pause: Duration,
    stop: PathBuf,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

fn pwrite(f: &File, buf: &[u8], off: u64, nowait: bool) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    // SAFETY: one iovec over a live buffer; the fd is open.
    let r = unsafe { libc::pwritev2(f.as_raw_fd(), &iov, 1, off as libc::off_t, flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn writer(f: &File, sh: &Shared, cfg: &RunCfg, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut buf = AlignedBuf::new(cfg.max_sectors as usize * SECTOR, 4096);
    loop {
        if sh.failed.load(Ordering::Relaxed) || cfg.stop.exists() {
            return;
        }
        if sh.writes.fetch_add(1, Ordering::Relaxed) >= cfg.max_writes {
            return;
        }
        // Mostly small writes, some large ones: sizes 1..=max, biased low.
        let len = match rng.below(4) {
            0 => cfg.max_sectors,
            1 => 1 + rng.below(8),
            _ => 1 + rng.below(cfg.max_sectors),
        }
        .min(cfg.max_sectors)
        .min(cfg.sectors);
        let start = rng.below(cfg.sectors - len + 1);
        let ext = (start, len);
        let seq = {
            let mut g = sh.state.lock().expect("lock");
            while g.0.iter().any(|&o| overlaps(o, ext)) {
                g = sh.free.wait(g).expect("lock");
            }
            g.0.push(ext);
            let seq = g.1.next_seq;
            g.1.next_seq += 1;
            seq
        };
        let b = &mut buf.as_mut_slice()[..len as usize * SECTOR];
        for (i, sec) in b.chunks_mut(SECTOR).enumerate() {
            stamp(sec, seq, start + i as u64, start);
        }
        let mut retries = 0;
        let outcome = loop {
            match pwrite(f, b, start * SECTOR as u64, cfg.nowait) {
                Ok(n) if n == b.len() => break Ok(()),
                Ok(n) => break Err(format!("short write: {n} of {} bytes", b.len())),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && cfg.nowait => {
                    sh.eagain.fetch_add(1, Ordering::Relaxed);
                    retries += 1;
                    if retries >= MAX_EAGAIN_RETRIES {
                        break Err(format!("EAGAIN {retries} times in a row"));
                    }
                    if retries % 16 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    } else {
                        std::thread::yield_now();
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    sh.eio.fetch_add(1, Ordering::Relaxed);
                    break Err(format!("EIO ({e})"));
                }
                Err(e) => {
                    sh.other.fetch_add(1, Ordering::Relaxed);
                    break Err(format!("{e}"));
                }
            }
        };
        let mut g = sh.state.lock().expect("lock");
        let value = match &outcome {
            Ok(()) => {
                sh.ok.fetch_add(1, Ordering::Relaxed);
                seq
            }
            Err(why) => {
                let tolerated = cfg.tolerate_eio && why.starts_with("EIO");
                if !tolerated {
                    eprintln!("stamp-writer: write seq {seq} sectors {start}+{len}: {why}");
                    sh.failed.store(true, Ordering::Relaxed);
                }
                UNKNOWN
            }
        };
        for s in start..start + len {
            g.1.last[s as usize] = value;
        }
        g.0.retain(|&o| o != ext);
        drop(g);
        sh.free.notify_all();
        if !cfg.pause.is_zero() {
            std::thread::sleep(cfg.pause);
        }
    }
}

/// Before the random writes: rewrite every sector whose content is unknown
/// (a failed write), so that `verify` afterwards checks every sector.
fn cover_unknown(dev: &str, map: &mut Map, max_sectors: u64) {
    let f = open_direct(dev);
    let mut buf = AlignedBuf::new(max_sectors as usize * SECTOR, 4096);
    let n = map.last.len() as u64;
    let mut covered = 0;
    let mut s = 0;
    while s < n {
        if map.last[s as usize] != UNKNOWN {
            s += 1;
            continue;
        }
        let mut len = 1;
        while len < max_sectors && s + len < n && map.last[(s + len) as usize] == UNKNOWN {
            len += 1;
        }
        let seq = map.next_seq;
        map.next_seq += 1;
        let b = &mut buf.as_mut_slice()[..len as usize * SECTOR];
        for (i, sec) in b.chunks_mut(SECTOR).enumerate() {
            stamp(sec, seq, s + i as u64, s);
        }
        f.write_all_at(b, s * SECTOR as u64)
            .unwrap_or_else(|e| die(format!("covering unknown sectors {s}+{len}: {e}")));
        for x in s..s + len {
            map.last[x as usize] = seq;
        }
        covered += len;
        s += len;
    }
    println!("stamp-writer: rewrote {covered} sectors of unknown content");
}

fn run(a: &Args) -> ExitCode {
    let dev = a.need("dev");
    let map_path = PathBuf::from(a.need("map"));
    let mut map = Map::load(&map_path).unwrap_or_else(|e| die(format!("loading the map: {e}")));
    let cfg = RunCfg {
        sectors: map.last.len() as u64,
        max_sectors: a.num("max-sectors", 128).max(1),
        nowait: a.flag("nowait"),
        tolerate_eio: a.flag("tolerate-eio"),
        max_writes: a.num("max-writes", u64::MAX),
        pause: Duration::from_millis(a.num("pause-ms", 0)),
        stop: PathBuf::from(a.need("stop")),
    };
    let threads = a.num("threads", 4).max(1);
    if a.flag("cover-unknown") {
        cover_unknown(dev, &mut map, cfg.max_sectors);
    }
    let seed = a.num("seed", std::process::id().into());
    let first_seq = map.next_seq;
    let f = Arc::new(open_direct(dev));
    let sh = Arc::new(Shared {
        state: Mutex::new((Vec::new(), map)),
        free: Condvar::new(),
        writes: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        eagain: AtomicU64::new(0),
        eio: AtomicU64::new(0),
        other: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });
    let cfg = Arc::new(cfg);
    println!(
        "stamp-writer: {dev}: {} sectors, {threads} threads, writes of 1..={} sectors, seq from {first_seq}, seed {seed}{}",
        cfg.sectors,
        cfg.max_sectors,
        if cfg.nowait { ", RWF_NOWAIT" } else { "" }
    );
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (f, sh, cfg) = (f.clone(), sh.clone(), cfg.clone());
            std::thread::spawn(move || writer(&f, &sh, &cfg, seed.wrapping_add(t * 7919)))
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread panicked");
    }
    let g = sh.state.lock().expect("lock");
    g.1.save(&map_path)
        .unwrap_or_else(|e| die(format!("saving the map: {e}")));
    let unknown = g.1.last.iter().filter(|&&v| v == UNKNOWN).count();
    println!(
        "stamp-writer: writes={} ok={} eagain={} eio={} other={} unknown_sectors={unknown} next_seq={}",
        g.1.next_seq - first_seq,
        sh.ok.load(Ordering::Relaxed),
        sh.eagain.load(Ordering::Relaxed),
        sh.eio.load(Ordering::Relaxed),
        sh.other.load(Ordering::Relaxed),
        g.1.next_seq
    );
    if sh.failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn verify(a: &Args) -> ExitCode {
    let dev = a.need("dev");
    let map = Map::load(Path::new(a.need("map")))
        .unwrap_or_else(|e| die(format!("loading the map: {e}")));
    let f = open_direct(dev);
    let n = map.last.len() as u64;
    let chunk = 2048u64;
    let mut buf = AlignedBuf::new(chunk as usize * SECTOR, 4096);
    let (mut bad, mut checked, mut skipped) = (0u64, 0u64, 0u64);
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let b = &mut buf.as_mut_slice()[..len as usize * SECTOR];
        f.read_exact_at(b, s * SECTOR as u64)
            .unwrap_or_else(|e| die(format!("reading sector {s}: {e}")));
        for (i, sec) in b.chunks(SECTOR).enumerate() {
            let sector = s + i as u64;
            let want = map.last[sector as usize];
            if want == UNKNOWN {
                skipped += 1;
                continue;
            }
            checked += 1;
            if let Err(why) = check_sector(sec, sector, want) {
                bad += 1;
                if bad <= 20 {
                    println!("stamp-writer: sector {sector}: {why}");
                }
            }
        }
        s += len;
    }
    let distinct = {
        let mut v: Vec<_> = map.last.iter().filter(|&&x| x != UNKNOWN).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    println!(
        "stamp-writer: verify {dev}: {checked} sectors checked ({distinct} distinct writes), {skipped} unknown skipped, {bad} bad"
    );
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        die("usage: stamp-writer init|run|verify --dev DEV --map MAP ...");
    };
    let a = Args::parse(rest, &["nowait", "tolerate-eio", "cover-unknown"]);
    match cmd.as_str() {
        "init" => init(&a),
        "run" => run(&a),
        "verify" => verify(&a),
        _ => die(format!("unknown command `{cmd}`")),
    }
}
