//! myrr-tlsprobe: a MySQL server's TLS sessions, read inside the server's TLS library by eBPF
//! uprobes (`myrr capture --tls-probe`).
//!
//! Sessions set up while the probe runs: their handshake secrets ([`Seen::Secret`]), from
//! OpenSSL 3's public `EVP_KDF_derive` in the server's libcrypto (the labels in its
//! `OSSL_PARAM` array tell TLS 1.3's traffic secrets and TLS 1.2's master secret from the
//! rest), tied to the socket the thread gave `SSL_set_fd` just before: a few hits per
//! handshake and none per query; the capture decrypts their packets. Sessions open before the
//! probe started: their plaintext ([`Seen::Plaintext`]) through the data probes below, which
//! are attached only while such connections are open (the BPF side passes over the sessions
//! it has secrets for).
//!
//! The eBPF program (`src/bpf/tlsprobe.bpf.c`, built by `build.rs` with clang, loaded with
//! libbpf-rs) probes `SSL_read`/`SSL_read_ex` (what the server decrypted: the client's bytes)
//! and `SSL_write`/`SSL_write_ex` (what it is about to encrypt: its answers) in the one process
//! named, plus `SSL_set_fd`/`SSL_free` (a session's start and end) and the `sys_enter` raw
//! tracepoint (the fd of a socket read or written inside an `SSL_*` call). OpenSSL's private
//! structures are never read. User space turns a session's fd into its addresses with
//! `pidfd_getfd` + `getsockname`/`getpeername`, and hands each piece of plaintext on as a
//! [`Chunk`] with the connection's addresses, its direction and the kernel's time.
//!
//! Why libbpf-rs rather than aya: it is libbpf's own Rust binding, kept by the kernel's BPF
//! maintainers and released with libbpf (1.7 here); uprobe attachment by symbol name in a
//! shared library or executable, ring buffers and raw tracepoints are libbpf's tested code.
//! aya's current release needs a newer compiler than this project's (1.98 vs 1.95) and would
//! only save libbpf's C build, which setup already covers.
//!
//! Loss is never silent: bytes the kernel side could not deliver (ring buffer full, a call
//! moving more than 256 KiB) are counted there and reported on the session's next chunk
//! ([`Chunk::lost_before`]), which the capture turns into a gap; bytes whose socket could not
//! be found are counted in [`ProbeStats`].

mod elf;
mod procfs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, ObjectBuilder, UprobeOpts};

pub use procfs::{
    crypto_library_candidates, find_listener, missing_capabilities, tls_library_candidates,
};

static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tlsprobe.bpf.o"));
/// The same program keeping each thread's call in a hash by thread id, for kernels that do
/// not give tracing programs task storage (before 5.11).
static BPF_OBJECT_BY_TID: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tlsprobe-by-tid.bpf.o"));

/// Which way a chunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Read by the server: the client's bytes.
    ToServer,
    /// Written by the server.
    ToClient,
}

/// Plaintext of one TLS connection of the server.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// When the server had it (read: `SSL_read` returned; write: `SSL_write` was called), in
    /// µs since the Unix epoch, as packet timestamps are.
    pub ts_us: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub dir: Dir,
    pub data: Vec<u8>,
    /// Bytes of this connection and direction lost just before this chunk.
    pub lost_before: u64,
}

/// A secret of one TLS session's handshake, as the server derived it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// TLS 1.3: the handshake traffic secrets.
    ClientHandshake,
    ServerHandshake,
    /// TLS 1.3: the first application traffic secrets.
    ClientTraffic,
    ServerTraffic,
    /// TLS 1.0–1.2: the master secret.
    Master,
}

/// The secret of one TLS connection of the server: its packets can then be decrypted.
#[derive(Debug, Clone)]
pub struct Secret {
    /// When the server derived it, µs since the Unix epoch.
    pub ts_us: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub kind: SecretKind,
    pub secret: Vec<u8>,
}

/// What the probe hands on.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Plaintext of a session that began before the probe (its keys were never seen).
    Plaintext(Chunk),
    /// A secret of a session whose handshake the probe saw.
    Secret(Secret),
}

/// What a probe saw and lost.
#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    /// Chunks handed on, and their bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// TLS sessions seen: handshakes whose secrets came, and SSL objects whose data came.
    pub sessions: u64,
    /// Kernel side: ring buffer records that could not be written, and the bytes they held
    /// (the ring buffer was full, or one call moved more than the probe copies).
    pub lost_records: u64,
    pub lost_bytes: u64,
    /// Bytes whose socket could not be found (closed before we looked, or never known), or
    /// on a socket that is not a client of the server's port.
    pub unattributed_bytes: u64,
    pub other_sockets_bytes: u64,
    /// `*_ex` calls whose byte count could not be read.
    pub unreadable_counts: u64,
    /// Secrets handed on, and those of sockets that are not a client of the server's port or
    /// whose socket could not be found.
    pub secrets: u64,
    pub secrets_unattributed: u64,
    /// Connections to the server's port open when the probe started: only for them are the
    /// data probes (`SSL_read`/`SSL_write`, a trap per call) attached, until they are all
    /// closed.
    pub existing_connections: u64,
    /// When the data probes were detached, seconds after the start (None: never attached, or
    /// attached to the end).
    pub data_probes_detached_after_s: Option<f64>,
}

/// Why the probe could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "the TLS probe needs {missing}: run myrr as root, or grant them: \
         sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_net_raw,cap_net_admin=eip $(command -v myrr) \
         (CAP_BPF and CAP_PERFMON load and attach the probe, CAP_SYS_PTRACE reads the server's sockets)"
    )]
    Permission { missing: String },
    #[error("no process listens on TCP port {port} on this host (give its PID: --tls-probe PID)")]
    NoListener { port: u16 },
    #[error("port {port} is listened on, but by no process this user can see (give its PID, or run as root)")]
    ListenerNotVisible { port: u16 },
    #[error("several processes listen on port {port} ({pids:?}): name one with --tls-probe PID")]
    ManyListeners { port: u16, pids: Vec<u32> },
    #[error("reading {what}: {error}")]
    Proc { what: String, error: String },
    #[error(
        "no TLS library to probe in process {pid}: searched {searched} for SSL_read/SSL_write \
         (OpenSSL or a library with its API, mapped as libssl.so*, or linked into the \
         executable with its symbols); a stripped static build or another TLS library cannot \
         be probed: {detail}"
    )]
    NoTlsLibrary {
        pid: u32,
        searched: String,
        detail: String,
    },
    #[error("loading the eBPF probe: {0}")]
    Load(String),
    #[error("attaching the eBPF probe to {what}: {error}")]
    Attach { what: String, error: String },
}

/// A running probe; [`Probe::stop`] detaches it (so does dropping it, and the process's exit).
pub struct Probe {
    pub pid: u32,
    /// The file probed (a libssl, or the server's executable).
    pub library: PathBuf,
    /// Functions probed in it.
    pub functions: Vec<&'static str>,
    /// Functions probed through the internal function they share (`SSL_read/SSL_read_ex at
    /// +0x35290`), not at their own first instruction.
    pub shared: Vec<String>,
    /// Where the key derivation is probed (sessions set up from the start on are read from
    /// the packets with their secrets), or why it is not (every session is then read by the
    /// data probes).
    pub keys: Result<PathBuf, String>,
    /// Connections to the server's port open at the start: the data probes stay attached
    /// for them (all of them, without keys), until they are closed.
    pub existing: usize,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ProbeStats>>,
}

struct Attached {
    library: PathBuf,
    functions: Vec<&'static str>,
    shared: Vec<String>,
    keys: Result<PathBuf, String>,
    existing: usize,
}

impl Probe {
    /// Probes the TLS library of process `pid` (its sockets on `server_ports` are the MySQL
    /// connections); every secret and chunk of plaintext goes to `sink`, on the probe's own
    /// thread.
    pub fn start(
        pid: u32,
        server_ports: Vec<u16>,
        sink: impl FnMut(Seen) + Send + 'static,
    ) -> Result<Probe, ProbeError> {
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(ProbeError::Permission {
                missing: missing.join(" and "),
            });
        }
        let candidates = tls_library_candidates(pid)?;
        let crypto = crypto_library_candidates(pid)?;
        let sockets = procfs::Sockets::open(pid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("myrr-tlsprobe".into())
            .spawn(move || {
                run(
                    pid,
                    (candidates, crypto),
                    Reader::new(sockets, server_ports, sink),
                    thread_stop,
                    ready_tx,
                )
            })
            .map_err(|e| ProbeError::Load(format!("starting the probe's thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(a)) => Ok(Probe {
                pid,
                library: a.library,
                functions: a.functions,
                shared: a.shared,
                keys: a.keys,
                existing: a.existing,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ProbeError::Load("the probe's thread ended".into()))
            }
        }
    }

    /// Detaches the probe, after handing on what the ring buffer still holds.
    pub fn stop(mut self) -> ProbeStats {
        self.finish()
    }

    fn finish(&mut self) -> ProbeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.finish();
    }
}

/// (entry program, function, required, with the return probe): the uprobes.
const PROBES: &[(&str, &str, bool, bool)] = &[
    ("myrr_read_in", "SSL_read", true, true),
    ("myrr_write_in", "SSL_write", true, true),
    ("myrr_readx_in", "SSL_read_ex", false, true),
    ("myrr_writex_in", "SSL_write_ex", false, true),
    ("myrr_set_fd", "SSL_set_fd", false, false),
    ("myrr_free", "SSL_free", false, false),
];

/// Where one probe goes: a function by name, or a function start by file offset.
#[derive(Clone, Copy)]
enum At {
    Func(&'static str),
    Offset(u64),
}

/// The probes for one library: where `SSL_read`/`SSL_read_ex` (`SSL_write`/`_ex`) share an
/// internal function that [`elf::engine`] can prove, one probe there replaces both (their
/// first instruction would cost a single-step trap per call; see elf.rs).
/// (entry program, where, required, with the return probe, the functions it covers).
fn plan(lib: &std::path::Path) -> Vec<(&'static str, At, bool, bool, Vec<&'static str>)> {
    let (read, write) = elf::engines(lib);
    let mut plan = Vec::new();
    for &(entry, func, required, ret) in PROBES {
        let shared = match func {
            "SSL_read" | "SSL_read_ex" => read,
            "SSL_write" | "SSL_write_ex" => write,
            _ => None,
        };
        match (shared, func) {
            (Some(off), "SSL_read") => plan.push((
                "myrr_readx_in",
                At::Offset(off),
                true,
                true,
                vec!["SSL_read", "SSL_read_ex"],
            )),
            (Some(off), "SSL_write") => plan.push((
                "myrr_writex_in",
                At::Offset(off),
                true,
                true,
                vec!["SSL_write", "SSL_write_ex"],
            )),
            (Some(_), _) => {}
            (None, _) => plan.push((entry, At::Func(func), required, ret, vec![func])),
        }
    }
    plan
}

/// Attaches the key derivation's probes (`EVP_KDF_derive`, entry and return) to the first of
/// `candidates` that has it; the library, or why none.
fn attach_kdf(
    obj: &libbpf_rs::Object,
    pid: u32,
    candidates: &[PathBuf],
    links: &mut Vec<libbpf_rs::Link>,
) -> Result<PathBuf, String> {
    let prog = |name: &str| obj.progs_mut().find(|p| p.name() == name);
    let mut tried = Vec::new();
    for lib in candidates {
        let attach = |name: &str, retprobe: bool| {
            let p = prog(name).ok_or_else(|| format!("no program {name}"))?;
            p.attach_uprobe_with_opts(
                pid as i32,
                lib,
                0,
                UprobeOpts {
                    func_name: Some("EVP_KDF_derive".into()),
                    retprobe,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())
        };
        match attach("myrr_kdf_in", false).and_then(|a| Ok((a, attach("myrr_kdf_out", true)?))) {
            Ok((a, b)) => {
                links.extend([a, b]);
                return Ok(lib.clone());
            }
            Err(e) => tried.push(format!("{}: {e}", lib.display())),
        }
    }
    Err(format!(
        "no EVP_KDF_derive (OpenSSL 3's key derivation) to probe: {}",
        if tried.is_empty() {
            "no libcrypto mapped".into()
        } else {
            tried.join("; ")
        }
    ))
}

fn run(
    pid: u32,
    (candidates, crypto): (Vec<PathBuf>, Vec<PathBuf>),
    mut reader: Reader,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<Attached, ProbeError>>,
) -> ProbeStats {
    let loaded = (|| {
        let load = |object: &[u8]| {
            ObjectBuilder::default()
                .open_memory(object)
                .and_then(|o| o.load())
                .map_err(|e| ProbeError::Load(e.to_string()))
        };
        let obj = load(BPF_OBJECT).or_else(|e| load(BPF_OBJECT_BY_TID).map_err(|_| e))?;
        let target = obj
            .maps()
            .find(|m| m.name() == "target")
            .ok_or_else(|| ProbeError::Load("no map `target`".into()))?;
        target
            .update(&0u32.to_ne_bytes(), &pid.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| ProbeError::Load(e.to_string()))?;
        Ok::<_, ProbeError>(obj)
    })();
    let obj = match loaded {
        Ok(o) => o,
        Err(e) => {
            let _ = ready.send(Err(e));
            return ProbeStats::default();
        }
    };
    // The key derivation first: a session set up once SSL_set_fd is probed is read with its
    // secrets, so they must be seen from then on.
    let mut links = Vec::new();
    let keys = attach_kdf(&obj, pid, &crypto, &mut links);
    if keys.is_ok() {
        if let Some(target) = obj.maps().find(|m| m.name() == "target") {
            if let Err(e) = target.update(&1u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY) {
                let _ = ready.send(Err(ProbeError::Load(e.to_string())));
                return ProbeStats::default();
            }
        }
    }
    let prog = |name: &str| obj.progs_mut().find(|p| p.name() == name);
    // The data probes (SSL_read/SSL_write: a trap per call) and the sys_enter tracepoint,
    // kept only while sessions without keys may be open.
    let mut data_links = Vec::new();
    let mut attached: Option<Attached> = None;
    let mut tried = Vec::new();
    for lib in &candidates {
        let mut lib_links = Vec::new();
        let mut functions = Vec::new();
        let mut shared = Vec::new();
        let mut failed = None;
        for (entry, at, required, ret, covers) in plan(lib) {
            let Some(p) = prog(entry) else { continue };
            let what = match at {
                At::Func(f) => f.to_string(),
                At::Offset(o) => {
                    shared.push(format!("{} at +{o:#x}", covers.join("/")));
                    format!("{} (their common code at +{o:#x})", covers.join("/"))
                }
            };
            let attach = |p: &libbpf_rs::ProgramMut<'_>, retprobe: bool| {
                let (func_name, offset) = match at {
                    At::Func(f) => (Some(f.to_string()), 0),
                    At::Offset(o) => (None, o as usize),
                };
                p.attach_uprobe_with_opts(
                    pid as i32,
                    lib,
                    offset,
                    UprobeOpts {
                        func_name,
                        retprobe,
                        ..Default::default()
                    },
                )
            };
            let data = ret;
            match attach(&p, false) {
                Ok(l) => {
                    lib_links.push((data, l));
                    functions.extend(covers);
                    if ret {
                        match prog("myrr_ssl_out").map(|o| attach(&o, true)) {
                            Some(Ok(l)) => lib_links.push((data, l)),
                            Some(Err(e)) => {
                                failed = Some(format!("{what} (return): {e}"));
                                break;
                            }
                            None => {}
                        }
                    }
                }
                Err(e) if required => {
                    failed = Some(format!("{what}: {e}"));
                    break;
                }
                Err(_) => {}
            }
        }
        match failed {
            None => {
                for (data, l) in lib_links {
                    if data {
                        data_links.push(l);
                    } else {
                        links.push(l);
                    }
                }
                attached = Some(Attached {
                    library: lib.clone(),
                    functions,
                    shared,
                    keys: keys.clone(),
                    existing: 0,
                });
                break;
            }
            Some(why) => tried.push(format!("{} ({why})", lib.display())),
        }
    }
    let Some(mut attached) = attached else {
        let _ = ready.send(Err(ProbeError::NoTlsLibrary {
            pid,
            searched: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            detail: tried.join("; "),
        }));
        return ProbeStats::default();
    };
    match prog("myrr_sys_enter").map(|p| p.attach_raw_tracepoint("sys_enter")) {
        Some(Ok(l)) => data_links.push(l),
        Some(Err(e)) => {
            let _ = ready.send(Err(ProbeError::Attach {
                what: "the sys_enter raw tracepoint".into(),
                error: e.to_string(),
            }));
            return ProbeStats::default();
        }
        None => {}
    }
    let Some(events) = obj.maps().find(|m| m.name() == "events") else {
        let _ = ready.send(Err(ProbeError::Load("no map `events`".into())));
        return ProbeStats::default();
    };
    let reader = std::cell::RefCell::new(&mut reader);
    let mut rb = libbpf_rs::RingBufferBuilder::new();
    let built = rb
        .add(&events, |bytes: &[u8]| {
            reader.borrow_mut().record(bytes);
            0
        })
        .map(|_| ())
        .and_then(|()| rb.build());
    let rb = match built {
        Ok(rb) => rb,
        Err(e) => {
            let _ = ready.send(Err(ProbeError::Load(e.to_string())));
            return ProbeStats::default();
        }
    };
    // Sessions that began before the probe have no secrets to read them with: the data probes
    // stay for them (the probe's BPF side passes over the sessions it has keys for). With
    // keys and no connection open, they go now; else once the last of those connections is
    // closed.
    let existing: Vec<(SocketAddr, SocketAddr)> = {
        let mut r = reader.borrow_mut();
        let found = r.sockets.connections(pid, &r.server_ports);
        // Their sockets may be closed before their data is read from the ring buffer.
        r.fd_at_start = found.iter().map(|&(fd, c, s)| (fd, (c, s))).collect();
        found.into_iter().map(|(_, c, s)| (c, s)).collect()
    };
    attached.existing = existing.len();
    reader.borrow_mut().stats.existing_connections = existing.len() as u64;
    let started = std::time::Instant::now();
    let mut detached = false;
    let mut detach_if_done = |data_links: &mut Vec<libbpf_rs::Link>, reader: &mut Reader| {
        if detached || keys.is_err() {
            return;
        }
        let open: Vec<_> = reader
            .sockets
            .connections(pid, &reader.server_ports)
            .into_iter()
            .map(|(_, c, s)| (c, s))
            .collect();
        if existing.iter().all(|c| !open.contains(c)) {
            data_links.clear();
            detached = true;
            if !existing.is_empty() {
                reader.stats.data_probes_detached_after_s = Some(started.elapsed().as_secs_f64());
            }
        }
    };
    detach_if_done(&mut data_links, &mut reader.borrow_mut());
    let _ = ready.send(Ok(attached));
    // The kernel side writes without waking us (BPF_RB_NO_WAKEUP): a wakeup per record cost
    // the server more than the copy. Every few milliseconds, what came is handed on.
    let mut polls = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_EVERY);
        let _ = rb.consume();
        polls += 1;
        if polls % CHECK_EXISTING_EVERY == 0 && !data_links.is_empty() {
            detach_if_done(&mut data_links, &mut reader.borrow_mut());
        }
    }
    // Detach first, then hand on what is left in the ring buffer.
    drop(data_links);
    drop(links);
    let _ = rb.consume();
    drop(rb);
    let mut stats = reader.borrow_mut().finish();
    if let Some(c) = obj.maps().find(|m| m.name() == "counters") {
        let sum = |i: u32| -> u64 {
            c.lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| {
                    v.iter()
                        .map(|b| u64::from_ne_bytes(b[..8].try_into().unwrap_or([0; 8])))
                        .sum()
                })
                .unwrap_or(0)
        };
        stats.lost_records = sum(0);
        stats.lost_bytes = sum(1);
        stats.unreadable_counts = sum(3);
    }
    stats
}

/// How often the ring buffer is read (the 64 MiB ring holds seconds of a busy server).
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Every this many polls (1 s), whether the connections open at the start are all closed.
const CHECK_EXISTING_EVERY: u32 = 200;

/// The ring buffer record's header (`struct event` in the C program).
const HEADER: usize = 56;

/// One ring buffer record, read.
#[derive(Debug, PartialEq)]
struct Record<'a> {
    ts_ns: u64,
    ssl: u64,
    lost_before: u64,
    fd: i32,
    kind: u8,
    dir: Dir,
    /// SECRET records: which secret (the C program's `enum secret`).
    which: u8,
    data: &'a [u8],
}

impl<'a> Record<'a> {
    /// None for a record shorter than its header; `data` is at most what the record holds.
    fn parse(b: &'a [u8]) -> Option<Self> {
        let header = b.get(..HEADER)?;
        let u64_at = |i: usize| u64::from_ne_bytes(header[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_ne_bytes(header[i..i + 4].try_into().unwrap_or([0; 4]));
        let len = (u32_at(36) as usize).min(b.len() - HEADER);
        Some(Record {
            ts_ns: u64_at(0),
            ssl: u64_at(8),
            lost_before: u64_at(16),
            fd: u32_at(32) as i32,
            kind: header[48],
            dir: if header[49] == 0 {
                Dir::ToServer
            } else {
                Dir::ToClient
            },
            which: header[49],
            data: &b[HEADER..HEADER + len],
        })
    }
}
const DATA: u8 = 0;
const SET_FD: u8 = 1;
const FREE: u8 = 2;
const SECRET: u8 = 3;
/// Chunks of a session whose fd is not known yet are held, up to this many bytes in all.
const HELD_MAX: usize = 4 << 20;

/// A chunk waiting for its socket: (time µs, direction, bytes, lost before).
type Held = (u64, Dir, Vec<u8>, u64);

struct Reader {
    sockets: procfs::Sockets,
    server_ports: Vec<u16>,
    sink: Box<dyn FnMut(Seen) + Send>,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, ns.
    clock_offset_ns: i128,
    /// fd → (SSL object, client, server), or None for a socket that is not a MySQL client's.
    by_fd: HashMap<i32, (u64, Option<(SocketAddr, SocketAddr)>)>,
    /// Chunks of SSL objects whose fd is not known yet.
    held: HashMap<u64, Vec<Held>>,
    held_bytes: usize,
    /// The connections open at the start, by fd: a session's first data may be read after
    /// its socket is closed.
    fd_at_start: HashMap<i32, (SocketAddr, SocketAddr)>,
    seen: std::collections::HashSet<u64>,
    stats: ProbeStats,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Reader {
    fn new(
        sockets: procfs::Sockets,
        server_ports: Vec<u16>,
        sink: impl FnMut(Seen) + Send + 'static,
    ) -> Self {
        let offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
        Self {
            sockets,
            server_ports,
            sink: Box::new(sink),
            clock_offset_ns: offset,
            by_fd: HashMap::new(),
            held: HashMap::new(),
            held_bytes: 0,
            fd_at_start: HashMap::new(),
            seen: Default::default(),
            stats: ProbeStats::default(),
        }
    }

    fn record(&mut self, b: &[u8]) {
        let Some(Record {
            ts_ns,
            ssl,
            lost_before,
            fd,
            kind,
            dir,
            which,
            data,
        }) = Record::parse(b)
        else {
            return;
        };
        let ts_us = ((ts_ns as i128 + self.clock_offset_ns).max(0) / 1000) as u64;
        match kind {
            SET_FD => {
                // A new session on this socket: what the fd was is stale.
                let addrs = self.resolve(fd);
                self.by_fd.insert(fd, (ssl, addrs));
            }
            FREE => {
                if let Some(h) = self.held.remove(&ssl) {
                    for (_, _, d, _) in h {
                        self.held_bytes -= d.len();
                        self.stats.unattributed_bytes += d.len() as u64;
                    }
                }
                self.by_fd.retain(|_, (s, _)| *s != ssl);
                self.seen.remove(&ssl);
            }
            SECRET => {
                let kind = match which {
                    0 => SecretKind::ClientHandshake,
                    1 => SecretKind::ServerHandshake,
                    2 => SecretKind::ClientTraffic,
                    3 => SecretKind::ServerTraffic,
                    _ => SecretKind::Master,
                };
                // One per handshake (an SSL object's address may be reused).
                if matches!(kind, SecretKind::ServerTraffic | SecretKind::Master) {
                    self.stats.sessions += 1;
                }
                let addrs = match self.by_fd.get(&fd) {
                    Some((s, a)) if *s == ssl => *a,
                    _ => {
                        let a = self.resolve(fd);
                        self.by_fd.insert(fd, (ssl, a));
                        a
                    }
                };
                match addrs {
                    Some((client, server)) if self.server_ports.contains(&server.port()) => {
                        self.stats.secrets += 1;
                        (self.sink)(Seen::Secret(Secret {
                            ts_us,
                            client,
                            server,
                            kind,
                            secret: data.to_vec(),
                        }));
                    }
                    _ => self.stats.secrets_unattributed += 1,
                }
            }
            DATA => {
                if self.seen.insert(ssl) {
                    self.stats.sessions += 1;
                }
                let data = data.to_vec();
                if fd < 0 {
                    if self.held_bytes + data.len() > HELD_MAX {
                        self.stats.unattributed_bytes += data.len() as u64 + lost_before;
                        return;
                    }
                    self.held_bytes += data.len();
                    self.held
                        .entry(ssl)
                        .or_default()
                        .push((ts_us, dir, data, lost_before));
                    return;
                }
                let addrs = match self.by_fd.get(&fd) {
                    Some((s, a)) if *s == ssl => *a,
                    _ => {
                        let a = self.resolve(fd);
                        self.by_fd.insert(fd, (ssl, a));
                        a
                    }
                };
                if let Some(h) = self.held.remove(&ssl) {
                    for (t, d, bytes, lost) in h {
                        self.held_bytes -= bytes.len();
                        self.deliver(addrs, t, d, bytes, lost);
                    }
                }
                self.deliver(addrs, ts_us, dir, data, lost_before);
            }
            _ => {}
        }
    }

    /// The probe is detached: chunks still waiting for their socket never find it.
    fn finish(&mut self) -> ProbeStats {
        let held: u64 = self
            .held
            .drain()
            .flat_map(|(_, h)| h)
            .map(|(_, _, d, lost)| d.len() as u64 + lost)
            .sum();
        self.held_bytes = 0;
        self.stats.unattributed_bytes += held;
        std::mem::take(&mut self.stats)
    }

    /// The connection on the server's `fd`, if it is a client of one of the server ports.
    fn resolve(&mut self, fd: i32) -> Option<(SocketAddr, SocketAddr)> {
        match self.sockets.addresses(fd) {
            Some((local, peer)) => Some((peer, local)),
            None => self.fd_at_start.get(&fd).copied(),
        }
    }

    fn deliver(
        &mut self,
        addrs: Option<(SocketAddr, SocketAddr)>,
        ts_us: u64,
        dir: Dir,
        data: Vec<u8>,
        lost_before: u64,
    ) {
        let Some((client, server)) = addrs else {
            self.stats.unattributed_bytes += data.len() as u64 + lost_before;
            return;
        };
        if !self.server_ports.contains(&server.port()) {
            self.stats.other_sockets_bytes += data.len() as u64;
            return;
        }
        self.stats.chunks += 1;
        self.stats.bytes += data.len() as u64;
        (self.sink)(Seen::Plaintext(Chunk {
            ts_us,
            client,
            server,
            dir,
            data,
            lost_before,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fd: i32, len: u32, dir: u8, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_ne_bytes());
        b.extend_from_slice(&0xabcdu64.to_ne_bytes());
        b.extend_from_slice(&3u64.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&2u32.to_ne_bytes());
        b.extend_from_slice(&fd.to_ne_bytes());
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        b.push(DATA);
        b.push(dir);
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn records_read_as_the_c_program_writes_them() {
        let b = record(9, 5, 1, b"hello");
        assert_eq!(
            Record::parse(&b),
            Some(Record {
                ts_ns: 7,
                ssl: 0xabcd,
                lost_before: 3,
                fd: 9,
                kind: DATA,
                dir: Dir::ToClient,
                which: 1,
                data: b"hello",
            })
        );
        // A length beyond the record is cut to it; a record shorter than its header is none.
        assert_eq!(
            Record::parse(&record(-1, 999, 0, b"abc")).unwrap().data,
            b"abc"
        );
        assert_eq!(Record::parse(&b[..HEADER - 1]), None);
        // Any bytes: no panic.
        for n in 0..200 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = Record::parse(&junk);
        }
    }

    #[test]
    fn chunks_never_given_a_socket_are_counted_when_the_probe_stops() {
        let sockets = procfs::Sockets::open(std::process::id()).expect("pidfd_open on ourselves");
        let mut r = Reader::new(sockets, vec![3306], |_| panic!("nothing has a socket"));
        r.record(&record(-1, 5, 0, b"hello"));
        r.record(&record(-1, 2, 1, b"ok"));
        assert_eq!(r.stats.unattributed_bytes, 0, "held, not lost yet");
        assert_eq!(r.stats.sessions, 1);
        let stats = r.finish();
        // The bytes, and the 3 lost before each chunk.
        assert_eq!(stats.unattributed_bytes, 5 + 3 + 2 + 3);
        assert_eq!(r.held_bytes, 0);
    }
}
