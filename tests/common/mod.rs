//! Shared helpers for the end-to-end tests: the project's own MariaDB pair (started by
//! `scripts/db.sh`, idempotent), the `myrr` binary, reading recordings, and real client
//! libraries running a pooled prepared-statement workload (`clients`).
#![allow(dead_code)]

pub mod clients;
pub mod genlog;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use myrr_recording::{Event, RecordingReader};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Db {
    pub source_port: u16,
    pub candidate_port: u16,
    pub source_url: String,
    pub candidate_url: String,
    pub env: HashMap<String, String>,
}

/// The MariaDB pair: started by scripts/db.sh if it is not up yet.
pub fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let script = root().join("scripts/db.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg("start")
            .status()
            .expect("run scripts/db.sh start");
        assert!(st.success(), "scripts/db.sh start failed");
        let out = Command::new("bash")
            .arg(&script)
            .arg("env")
            .output()
            .expect("run scripts/db.sh env");
        assert!(out.status.success());
        let env: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches('\'').trim_matches('"').to_string(),
                )
            })
            .collect();
        Db {
            source_port: env["MYRR_SOURCE_PORT"].parse().unwrap(),
            candidate_port: env["MYRR_CANDIDATE_PORT"].parse().unwrap(),
            source_url: env["MYRR_SOURCE_URL"].clone(),
            candidate_url: env["MYRR_CANDIDATE_URL"].clone(),
            env,
        }
    })
}

/// The mariadb CLI over TCP to `port`, batch mode, running `statements`.
pub fn mariadb_cli(port: u16, statements: &str) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "-h127.0.0.1",
        "--protocol=tcp",
        "-umyrr",
        "-pmyrr",
        "-N",
        "-B",
    ])
    .arg(format!("-P{port}"))
    .arg("-e")
    .arg(statements);
    c
}

/// Runs SQL with the mariadb CLI, going on after errors (some statements are meant to fail).
pub fn sql_force(port: u16, statements: &str) {
    let _ = mariadb_cli(port, statements)
        .arg("--force")
        .output()
        .expect("run mariadb");
}

/// Runs SQL with the mariadb CLI over TCP; returns tab-separated rows.
pub fn sql(port: u16, statements: &str) -> String {
    let out = mariadb_cli(port, statements).output().expect("run mariadb");
    assert!(
        out.status.success(),
        "mariadb -e {statements:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn myrr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myrr"))
}

pub fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = root()
        .join("target/test-tmp")
        .join(format!("{}-{}", std::process::id(), n));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn read_events(path: &Path) -> Vec<Event> {
    RecordingReader::open(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// A background `myrr capture -i lo`, ready once it says it is capturing.
pub struct LiveCapture {
    child: Child,
    stderr: Receiver<String>,
    /// What it said before it was capturing.
    early: String,
    pub output: PathBuf,
}

impl LiveCapture {
    pub fn start(port: u16, output: &Path) -> Self {
        Self::start_with(port, output, &[])
    }

    /// [`LiveCapture::start`] with more arguments for `myrr capture`.
    pub fn start_with(port: u16, output: &Path, extra: &[&str]) -> Self {
        let mut child = myrr()
            .args([
                "capture",
                "-i",
                "lo",
                "--port",
                &port.to_string(),
                "--duration",
                "300s",
                "-o",
            ])
            .arg(output)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start myrr capture");
        let (tx, rx) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut early = String::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("capturing on") => break,
                Ok(l) => {
                    eprintln!("capture: {l}");
                    early.push_str(&l);
                    early.push('\n');
                }
                Err(_) if Instant::now() > deadline => panic!("myrr capture did not start"),
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("myrr capture exited early: {st}");
                    }
                }
            }
        }
        // The kernel ring is set up before the message; give the reader thread a moment.
        std::thread::sleep(Duration::from_millis(300));
        Self {
            child,
            stderr: rx,
            early,
            output: output.to_owned(),
        }
    }

    /// Stops it with SIGINT (as Ctrl-C would) and returns its stderr (all of it, from the
    /// start).
    pub fn stop(mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        let st = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = self.child.wait().unwrap();
        let mut err = std::mem::take(&mut self.early);
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            err.push_str(&l);
            err.push('\n');
        }
        assert!(status.success(), "myrr capture failed ({status}):\n{err}");
        err
    }
}

/// Runs a command to completion, failing the test with its output if it fails.
/// tcpdump recording `port` on loopback into `pcap`, every packet written at once
/// (`--immediate-mode`: nothing is left in a buffer block when it is stopped), with a 64 MiB
/// kernel buffer so that a busy machine does not drop packets under it.
pub struct Tcpdump(Child);

impl Tcpdump {
    pub fn start(port: u16, pcap: &Path) -> Self {
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-B", "65536", "-w"])
            .arg(pcap)
            .args(["tcp port", &port.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // Started once it says it is listening.
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "tcpdump: {line}");
        Self(child)
    }

    /// Stops it (after 300 ms for the last packets) and checks that the kernel dropped none:
    /// a pcap with holes would make the decoding tests fail for the wrong reason.
    pub fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(300));
        run(Command::new("kill").args(["-INT", &self.0.id().to_string()]));
        let mut rest = String::new();
        std::io::Read::read_to_string(self.0.stderr.as_mut().unwrap(), &mut rest).unwrap();
        self.0.wait().unwrap();
        assert!(
            rest.lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump dropped packets:\n{rest}"
        );
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sysbench(port: u16, args: &[&str]) -> Command {
    sysbench_test("oltp_read_write", port, args)
}

pub fn sysbench_test(test: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("sysbench");
    c.arg(test)
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-user=myrr",
            "--mysql-password=myrr",
        ])
        .arg(format!("--mysql-port={port}"))
        .args(args);
    c
}

/// Writes a capture-kind recording from plain SQL: one session per entry of `sessions`, each
/// exchange at (offset µs from the start, SQL). Responses are left as recorded "ok".
pub fn synthetic_recording(path: &Path, db: &str, sessions: &[Vec<(u64, String)>]) {
    let starting: Vec<_> = sessions.iter().map(|xs| (0, xs.clone())).collect();
    synthetic_recording_starting(path, db, &starting);
}

/// A recording of the given commands (offset µs, command, recorded answer) per session, as
/// user `myrr` on database `db`.
pub fn synthetic_commands(
    path: &Path,
    db: &str,
    sessions: &[Vec<(u64, myrr_recording::Command, myrr_recording::Response)>],
) {
    let starting: Vec<_> = sessions.iter().map(|xs| (0, xs.clone())).collect();
    synthetic_sessions(path, db, &starting);
}

/// A recording of the given commands (start µs, end µs, command, recorded answer) per
/// session, as user `myrr` on database `db`.
pub fn synthetic_timed(
    path: &Path,
    db: &str,
    sessions: &[Vec<(u64, u64, myrr_recording::Command, myrr_recording::Response)>],
) {
    let starting: Vec<_> = sessions
        .iter()
        .map(|xs| {
            let timed = xs
                .iter()
                .map(|(s, e, c, r)| (*s, c.clone(), r.clone(), e.saturating_sub(*s)))
                .collect();
            (0, timed)
        })
        .collect();
    timed_sessions(path, db, &starting);
}

/// Queries (offset µs, SQL) per session, each session starting at its own offset (µs).
pub fn synthetic_recording_starting(path: &Path, db: &str, sessions: &[(u64, Vec<(u64, String)>)]) {
    use myrr_recording::*;
    let sessions: Vec<_> = sessions
        .iter()
        .map(|(start, xs)| {
            let xs = xs
                .iter()
                .map(|(off, sql)| {
                    let q = Command::Query {
                        sql: sql.clone().into_bytes(),
                        attrs: vec![],
                    };
                    (*off, q, Response::Ok(OkInfo::default()))
                })
                .collect();
            (*start, xs)
        })
        .collect();
    synthetic_sessions(path, db, &sessions);
}

type Commands = Vec<(u64, myrr_recording::Command, myrr_recording::Response)>;
type Timed = Vec<(u64, myrr_recording::Command, myrr_recording::Response, u64)>;

/// A recording of the given sessions (start offset µs, and per command its offset µs, the
/// command and its recorded answer, each answered 100 µs later), as user `myrr` on `db`.
fn synthetic_sessions(path: &Path, db: &str, sessions: &[(u64, Commands)]) {
    let timed: Vec<(u64, Timed)> = sessions
        .iter()
        .map(|(start, xs)| {
            let xs = xs
                .iter()
                .map(|(o, c, r)| (*o, c.clone(), r.clone(), 100))
                .collect();
            (*start, xs)
        })
        .collect();
    timed_sessions(path, db, &timed);
}

/// As [`synthetic_sessions`], each command with how long it took (µs).
fn timed_sessions(path: &Path, db: &str, sessions: &[(u64, Timed)]) {
    use myrr_recording::*;
    let t0 = 1_700_000_000_000_000u64;
    let header = Header {
        kind: RunKind::Capture,
        tool_version: "test".into(),
        source: "synthetic".into(),
        started_us: t0,
        options: vec![],
    };
    // Written in time order, as a capture writes them.
    let mut events = Vec::new();
    for (i, (start, xs)) in sessions.iter().enumerate() {
        let session = i as u64 + 1;
        events.push(Event::SessionStart(SessionStart {
            session,
            client: "127.0.0.1:1".into(),
            server: "127.0.0.1:2".into(),
            start_us: t0 + start,
            user: Some(b"myrr".to_vec()),
            db: Some(db.as_bytes().to_vec()),
            ..Default::default()
        }));
        for (seq, (off, command, response, took)) in xs.iter().enumerate() {
            events.push(Event::Exchange(Exchange {
                session,
                seq: seq as u64,
                clone: 0,
                scheduled_us: None,
                start_us: t0 + off,
                end_us: t0 + off + took,
                command: command.clone(),
                response: response.clone(),
                more: vec![],
            }));
        }
        events.push(Event::SessionEnd(SessionEnd {
            session,
            end_us: t0 + xs.iter().map(|x| x.0 + x.3).max().unwrap_or(0) + 100,
            reason: EndReason::Closed,
            login: Login::Ok,
            exchanges: xs.len() as u64,
        }));
    }
    events.sort_by_key(event_time);
    let mut w = RecordingWriter::create(path, &header).unwrap();
    for e in &events {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
}

/// Exchanges of a run keyed by (session, seq, clone).
pub fn exchanges_by_key(events: &[Event]) -> HashMap<(u64, u64, u32), myrr_recording::Exchange> {
    events
        .iter()
        .filter_map(Event::as_exchange)
        .map(|x| ((x.session, x.seq, x.clone), x.clone()))
        .collect()
}

/// Copies a database from the source server to the candidate (identical data on both).
pub fn copy_db(db: &Db, name: &str) {
    load_dump(db.candidate_port, &dump_db(db.source_port, name));
}

/// `mariadb-dump --databases name` of a server.
pub fn dump_db(port: u16, name: &str) -> Vec<u8> {
    let dump = Command::new("mariadb-dump")
        .args([
            "-h127.0.0.1",
            "--protocol=tcp",
            "-umyrr",
            "-pmyrr",
            "--databases",
            name,
        ])
        .arg(format!("-P{port}"))
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    dump.stdout
}

/// Loads a dump ([`dump_db`]) into a server.
pub fn load_dump(port: u16, dump: &[u8]) {
    let mut load = Command::new("mariadb")
        .args(["-h127.0.0.1", "--protocol=tcp", "-umyrr", "-pmyrr"])
        .arg(format!("-P{port}"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        load.stdin.take().unwrap().write_all(dump).unwrap();
    }
    assert!(load.wait().unwrap().success());
}

/// `analyze` limits for a dropped index: a full scan instead of an index lookup is hundreds of
/// times slower on the tests' tables (30,000 and 80,000 rows); 10× is far from it and from
/// what a shared 2-core machine's noise did to other shapes (a range count once came out 1.5×
/// slower beside other tests, and once over 3× in a CI run).
pub const SCAN_NOT_LOOKUP: &[&str] = &[
    "--max-p99-regression",
    "900%",
    "--min-change",
    "900%",
    "--alpha",
    "0.0001",
];

/// Runs `myrr analyze --format json` of `base` against the candidate run `cand` (one or more
/// files); returns (exit code, JSON report).
pub fn analyze_json<P: AsRef<Path>>(
    base: &Path,
    cand: &[P],
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let out = myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(base)
        .arg("--candidate")
        .args(cand.iter().map(AsRef::as_ref))
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "exit {code}, not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}
