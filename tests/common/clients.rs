//! Real client libraries as the application under capture: a pooled workload of server-side
//! prepared statements, written once for node's mysql2 (`tests/clients/app.js`, `pool.execute()`)
//! and once for mysql-connector-python (`tests/clients/app.py`, `cursor(prepared=True)`), both
//! installed by `scripts/setup.sh` into `target/clients/`.
//!
//! A test seeds a database with [`seed`], starts an app with [`App::start`] — which returns
//! once the app has opened its connections, prepared its statements on each and executed each
//! once (`ready`) — starts or stops what it needs (a capture), then [`App::run`] lets the
//! workload go and waits for it to end. [`checksums`] gives `CHECKSUM TABLE` of the workload's
//! tables; the workload makes them depend only on the number of workers and iterations, never
//! on how the sessions interleaved, so a replay onto an identical copy must end with equal
//! checksums.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{root, sql};

/// The workload's tables, in the order [`checksums`] reports them.
pub const TABLES: [&str; 2] = ["accounts", "events"];

/// How long an app may take to connect, prepare and say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the workload may take after `go`.
const DONE_TIMEOUT: Duration = Duration::from_secs(300);

/// A client library, with its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// node's mysql2: a pool, `getConnection()` per worker, `execute()`.
    Node,
    /// mysql-connector-python (pure Python): a pool, `cursor(prepared=True)`.
    Python,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Node => "node",
            Driver::Python => "python",
        }
    }

    /// The interpreter running the app, with its library found.
    fn command(self) -> Command {
        let clients = root().join("target/clients");
        let (program, app, lib) = match self {
            Driver::Node => (
                "node".into(),
                "app.js",
                clients.join("node/node_modules/mysql2/package.json"),
            ),
            Driver::Python => {
                let python = clients.join("venv/bin/python");
                (python.clone(), "app.py", python)
            }
        };
        assert!(
            lib.exists(),
            "{} is missing: the {} client library is not installed; run `bash scripts/setup.sh`",
            lib.display(),
            self.name()
        );
        let mut c = Command::new(program);
        c.arg(root().join("tests/clients").join(app));
        if self == Driver::Node {
            c.env("NODE_PATH", clients.join("node/node_modules"));
        }
        c
    }
}

/// Creates database `db` afresh on the server at `port`: the workload's tables, and the four
/// accounts of each worker `1..=workers` (ids `w*100 .. w*100+3`). The same call gives the same
/// data on any server.
pub fn seed(port: u16, db: &str, workers: u32) {
    let accounts: Vec<String> = (1..=workers)
        .flat_map(|w| {
            (0..4).map(move |k| {
                format!(
                    "({}, {w}, {}.{k}0, 'seed', '2024-01-01 00:00:00')",
                    w * 100 + k,
                    100 + w
                )
            })
        })
        .collect();
    sql(
        port,
        &format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; USE {db};
             CREATE TABLE accounts (id INT PRIMARY KEY, owner INT NOT NULL,
                 balance DECIMAL(12,2) NOT NULL, note VARCHAR(64), updated DATETIME(6) NOT NULL);
             CREATE TABLE events (worker INT NOT NULL, seq INT NOT NULL, kind VARCHAR(16) NOT NULL,
                 amount DECIMAL(12,2), at DATETIME(6) NOT NULL, PRIMARY KEY (worker, seq));
             INSERT INTO accounts VALUES {};",
            accounts.join(", ")
        ),
    );
}

/// `CHECKSUM TABLE` of each of the workload's [`TABLES`] in `db`, by table name.
pub fn checksums(port: u16, db: &str) -> BTreeMap<String, u64> {
    let tables: Vec<String> = TABLES.iter().map(|t| format!("{db}.{t}")).collect();
    let out = sql(port, &format!("CHECKSUM TABLE {}", tables.join(", ")));
    let sums: BTreeMap<String, u64> = out
        .lines()
        .map(|l| {
            let (table, sum) = l.split_once('\t').unwrap_or((l, ""));
            let sum = sum
                .parse()
                .unwrap_or_else(|_| panic!("port {port}: no checksum for {table}: {out:?}"));
            let table = table.strip_prefix(&format!("{db}.")).unwrap_or(table);
            (table.to_string(), sum)
        })
        .collect();
    assert_eq!(sums.len(), TABLES.len(), "port {port}: {out:?}");
    sums
}

/// What an app's workload executed (the `done` line): EXECUTEs per statement, the setup's left
/// out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub select: u64,
    pub update: u64,
    pub insert: u64,
    pub delete: u64,
    /// Connections a worker closed and replaced (`--reconnect-every`).
    pub reconnects: u64,
}

impl Counts {
    /// What `workers` workers of `iterations` iterations each execute.
    pub fn expected(workers: u32, iterations: u32) -> Self {
        let (n, m) = (u64::from(workers), u64::from(iterations));
        // A DELETE on every fifth iteration from the fifth on.
        Counts {
            select: n * m,
            update: n * m,
            insert: n * m,
            delete: n * (m / 5),
            reconnects: 0,
        }
    }

    pub fn executes(&self) -> u64 {
        self.select + self.update + self.insert + self.delete
    }

    fn parse(line: &str) -> Option<Self> {
        let mut c = Counts::default();
        for field in line.strip_prefix("done")?.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            let v = v.parse().ok()?;
            match k {
                "select" => c.select = v,
                "update" => c.update = v,
                "insert" => c.insert = v,
                "delete" => c.delete = v,
                "reconnects" => c.reconnects = v,
                _ => return None,
            }
        }
        Some(c)
    }
}

/// A running app, between `ready` and `go`: its connections are open and its statements
/// prepared. Dropped before [`App::run`] finished, the app is killed.
pub struct App {
    driver: Driver,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    /// Everything the app wrote to stderr so far (collected by a thread).
    stderr: Arc<Mutex<String>>,
    /// Stdout lines so far, for messages.
    seen: Vec<String>,
}

impl App {
    /// Starts `driver`'s app against database `db` on 127.0.0.1:`port` with `connections`
    /// workers of `iterations` iterations each; returns once the app printed `ready`. Panics,
    /// with the app's output, if it exits or takes longer than a minute.
    pub fn start(driver: Driver, port: u16, db: &str, connections: u32, iterations: u32) -> Self {
        Self::start_with(driver, port, db, connections, iterations, &[])
    }

    /// [`App::start`] with more arguments for the app (e.g. `--reconnect-every K`, node).
    pub fn start_with(
        driver: Driver,
        port: u16,
        db: &str,
        connections: u32,
        iterations: u32,
        extra: &[&str],
    ) -> Self {
        let mut child = driver
            .command()
            .arg("--url")
            .arg(format!("mysql://myrr:myrr@127.0.0.1:{port}/{db}"))
            .args(["--connections", &connections.to_string()])
            .args(["--iterations", &iterations.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {} app: {e}", driver.name()));
        let (tx, stdout) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                collected.lock().unwrap().push_str(&text);
            }
        });
        let mut app = App {
            driver,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        };
        app.wait_for("ready", READY_TIMEOUT);
        app
    }

    /// Sends `go`, waits for the workload to end and the app to exit 0; returns what it
    /// executed. Panics, with the app's output, on a failure or after five minutes.
    pub fn run(mut self) -> Counts {
        let mut stdin = self.stdin.take().expect("stdin");
        if let Err(e) = stdin.write_all(b"go\n").and_then(|()| stdin.flush()) {
            self.fail(&format!("could not send go: {e}"));
        }
        drop(stdin);
        let line = self.wait_for("done", DONE_TIMEOUT);
        let Some(counts) = Counts::parse(&line) else {
            self.fail(&format!("unreadable done line {line:?}"));
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return counts,
                Ok(Some(st)) => self.fail(&format!("exited with {st} after done")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => self.fail("still running 10 s after done"),
                Err(e) => self.fail(&format!("wait: {e}")),
            }
        }
    }

    /// Waits for a stdout line starting with `word`; returns it.
    fn wait_for(&mut self, word: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.split_whitespace().next() == Some(word) => return line,
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no `{word}` within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the app is exiting; let stderr's reader catch up.
                    let status = match self.child.wait() {
                        Ok(st) => st.to_string(),
                        Err(e) => e.to_string(),
                    };
                    std::thread::sleep(Duration::from_millis(200));
                    self.fail(&format!("exited ({status}) before `{word}`"))
                }
            }
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "{} app: {what}\n--- its stdout:\n{}\n--- its stderr:\n{}",
            self.driver.name(),
            self.seen.join("\n"),
            self.stderr.lock().unwrap()
        );
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
