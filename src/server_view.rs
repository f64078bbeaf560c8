//! Reading the server's view of its connections (`capture --server`, `myrr snapshot`):
//! processlist, protocol prepared statements from performance_schema and, where the server
//! has them, session variables. The monitor's password is used to log in and nowhere else.
//!
//! What the account or the server lacks is not fatal: it becomes a note in the snapshot
//! (and a message), and the capture goes on with what could be read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use myrr_capture::backfill::{
    ServerConnection, ServerSnapshot, ServerStatement, ServerView, SnapshotView,
};
use myrr_recording::Backfill;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Row};

/// Environment variable for the monitor's password when the URL has none.
pub const PASSWORD_ENV: &str = "MYRR_SERVER_PASSWORD";

/// Session variables read where the server has `performance_schema.variables_by_thread`.
const VARIABLES: &[&str] = &[
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "sql_mode",
    "autocommit",
    "time_zone",
    "transaction_isolation",
];

/// A connection to the monitored server, for snapshots.
pub struct Monitor {
    rt: tokio::runtime::Runtime,
    conn: mysql_async::Conn,
    address: String,
    port: u16,
    /// This connection's client address as the server sees it (a capture leaves it out).
    pub client: Option<SocketAddr>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Monitor({})", self.address)
    }
}

/// `mysql://user[:pass]@host:port` with the URL's password or [`PASSWORD_ENV`]; errors name
/// the URL without its password.
fn options(url: &str) -> anyhow::Result<Opts> {
    let opts = Opts::from_url(url).map_err(|e| anyhow::anyhow!("bad --server URL: {e}"))?;
    let mut b = OptsBuilder::from_opts(opts.clone()).prefer_socket(false);
    if opts.pass().is_none() {
        if let Ok(p) = std::env::var(PASSWORD_ENV) {
            b = b.pass(Some(p));
        }
    }
    Ok(b.into())
}

impl Monitor {
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let opts = options(url)?;
        let address = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let port = opts.tcp_port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut conn = rt
            .block_on(mysql_async::Conn::new(opts))
            .with_context(|| format!("cannot log in to {address} for the server's view"))?;
        let host: Option<String> = rt
            .block_on(conn.query_first(
                "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
            ))
            .context("reading the monitor's own address")?;
        let client = host.and_then(|h| {
            let (ip, port) = h.rsplit_once(':')?;
            let ip: std::net::IpAddr = ip.trim_matches(['[', ']']).parse().ok()?;
            Some(SocketAddr::new(ip, port.parse().ok()?))
        });
        Ok(Self {
            rt,
            conn,
            address,
            port,
            client,
        })
    }

    /// Every client connection the account can see, with its prepared statements.
    pub fn snapshot(&mut self) -> anyhow::Result<ServerSnapshot> {
        let Self {
            rt,
            conn,
            address,
            port,
            ..
        } = self;
        rt.block_on(read_snapshot(conn, address, *port))
    }
}

async fn read_snapshot(
    conn: &mut mysql_async::Conn,
    address: &str,
    port: u16,
) -> anyhow::Result<ServerSnapshot> {
    let taken_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut notes = Vec::new();
    let (version, pfs, text_limit): (String, Option<i64>, Option<i64>) = conn
        .query_first(
            "SELECT VERSION(), @@performance_schema, \
             @@performance_schema_max_sql_text_length",
        )
        .await
        .context("reading the server's version")?
        .unwrap_or_default();
    let process: Option<String> = conn
        .query_first(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES \
             WHERE PRIVILEGE_TYPE IN ('PROCESS', 'SUPER') LIMIT 1",
        )
        .await
        .context("reading the account's privileges")?;
    if process.is_none() {
        notes.push(
            "the monitor account lacks the PROCESS privilege, so it sees only its own \
             connections: GRANT PROCESS ON *.* TO the monitor account"
                .to_string(),
        );
    }
    let me: u64 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await?
        .unwrap_or(0);
    let mut rows: Vec<Row> = conn
        .query(
            "SELECT ID, USER, HOST, DB FROM information_schema.PROCESSLIST \
             WHERE HOST LIKE '%:%'",
        )
        .await
        .context("reading information_schema.PROCESSLIST")?;
    let mut connections: Vec<ServerConnection> = Vec::new();
    for r in rows.drain(..) {
        let (id, user, host, db): (u64, Option<String>, Option<String>, Option<String>) =
            mysql_async::from_row(r);
        if id == me {
            continue;
        }
        connections.push(ServerConnection {
            id,
            client: host.unwrap_or_default(),
            user,
            db,
            ..ServerConnection::default()
        });
    }
    if pfs == Some(1) {
        read_performance_schema(conn, &mut connections, text_limit, &mut notes).await;
    } else {
        notes.push(
            "performance_schema is off on the server, so prepared statements cannot be \
             backfilled (users and databases can): start it with performance_schema=ON"
                .to_string(),
        );
    }
    Ok(ServerSnapshot {
        server: address.to_string(),
        port,
        version,
        taken_us,
        connections,
        notes,
    })
}

/// The connections' protocol prepared statements and, where the server has them, session
/// variables; what cannot be read is a note.
async fn read_performance_schema(
    conn: &mut mysql_async::Conn,
    connections: &mut [ServerConnection],
    text_limit: Option<i64>,
    notes: &mut Vec<String>,
) {
    let by_id: HashMap<u64, usize> = connections
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let stmts: Result<Vec<(u64, u64, String)>, _> = conn
        .query(
            "SELECT t.PROCESSLIST_ID, p.STATEMENT_ID, p.SQL_TEXT \
             FROM performance_schema.prepared_statements_instances p \
             JOIN performance_schema.threads t ON t.THREAD_ID = p.OWNER_THREAD_ID \
             WHERE p.STATEMENT_NAME IS NULL AND p.OWNER_OBJECT_TYPE IS NULL \
             AND t.PROCESSLIST_ID IS NOT NULL",
        )
        .await;
    match stmts {
        Ok(stmts) => {
            let mut truncated = 0;
            for (owner, id, sql) in stmts {
                let Some(&i) = by_id.get(&owner) else {
                    continue;
                };
                if text_limit.is_some_and(|l| l > 0 && sql.chars().count() as i64 >= l) {
                    truncated += 1;
                    continue;
                }
                connections[i]
                    .statements
                    .push(ServerStatement { id: id as u32, sql });
            }
            if truncated > 0 {
                notes.push(format!(
                    "{truncated} prepared statement(s) left out: their text reaches \
                     performance_schema_max_sql_text_length ({}) and may be cut; raise it \
                     (a restart) to backfill them",
                    text_limit.unwrap_or(0)
                ));
            }
        }
        Err(e) => notes.push(format!(
            "cannot read performance_schema ({e}): GRANT SELECT ON performance_schema.* TO \
             the monitor account"
        )),
    }
    let vars: Result<Vec<(u64, String, String)>, _> = conn
        .query(format!(
            "SELECT t.PROCESSLIST_ID, v.VARIABLE_NAME, v.VARIABLE_VALUE \
             FROM performance_schema.variables_by_thread v \
             JOIN performance_schema.threads t ON t.THREAD_ID = v.THREAD_ID \
             WHERE v.VARIABLE_NAME IN ({})",
            VARIABLES
                .iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    match vars {
        Ok(vars) => {
            for (owner, name, value) in vars {
                if let Some(&i) = by_id.get(&owner) {
                    connections[i].variables.push((name, value));
                }
            }
        }
        Err(_) => notes.push(
            "session variables (sql_mode, time_zone, character set…) are not exposed by this \
             server (no performance_schema.variables_by_thread): sessions replay with the \
             target's defaults"
                .to_string(),
        ),
    }
}

/// A live capture's view: the snapshot read at its start, and a fresh read of one connection
/// for a flow the snapshot does not know (once per such flow, never per packet).
#[derive(Debug)]
pub struct LiveView {
    monitor: Monitor,
    view: SnapshotView,
    /// Read again for flows not in the first snapshot.
    pub rereads: u64,
    pub notes: Vec<String>,
}

impl LiveView {
    pub fn new(mut monitor: Monitor) -> anyhow::Result<Self> {
        let snapshot = monitor.snapshot()?;
        Ok(Self {
            monitor,
            view: SnapshotView::new(snapshot),
            rereads: 0,
            notes: Vec::new(),
        })
    }

    pub fn snapshot(&self) -> &ServerSnapshot {
        self.view.snapshot()
    }

    /// The monitor connection's client address, as the server sees it.
    pub fn client(&self) -> Option<SocketAddr> {
        self.monitor.client
    }
}

impl ServerView for LiveView {
    fn lookup(&mut self, client: SocketAddr, server: SocketAddr) -> Option<Backfill> {
        if let Some(b) = self.view.lookup(client, server) {
            return Some(b);
        }
        if server.port() != self.view.snapshot().port {
            return None;
        }
        self.rereads += 1;
        match self.monitor.snapshot() {
            Ok(s) => self.view.refresh(s),
            Err(e) => {
                self.notes
                    .push(format!("reading the server's view again: {e:#}"));
                return None;
            }
        }
        self.view.lookup(client, server)
    }
}

/// Reads a snapshot file written by `myrr snapshot`.
pub fn read_file(path: &Path) -> anyhow::Result<ServerSnapshot> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a server view written by `myrr snapshot`",
            path.display()
        )
    })
}

#[derive(clap::Args)]
#[command(
    after_help = "Save this when tcpdump starts; `myrr capture -r F.pcap --backfill FILE` uses it for the connections that were already open.\n\nExample:\n  tcpdump -i eth0 -w prod.pcap port 3306 & myrr snapshot --server mysql://monitor@db:3306 -o view.json"
)]
pub struct SnapshotArgs {
    /// The server to read: mysql://user[:password]@host:port (password also from
    /// MYRR_SERVER_PASSWORD); the account needs PROCESS and SELECT on performance_schema.
    #[arg(long, value_name = "URL")]
    server: String,
    /// Write the view (JSON) here.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

/// `myrr snapshot`.
pub fn run(a: SnapshotArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut m = Monitor::connect(&a.server)?;
    let s = m.snapshot()?;
    for n in &s.notes {
        eprintln!("myrr: {n}");
    }
    let json = serde_json::to_string_pretty(&s)?;
    std::fs::write(&a.output, json)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    let stmts: usize = s.connections.iter().map(|c| c.statements.len()).sum();
    eprintln!(
        "myrr: {} connections, {stmts} prepared statements of {} saved to {}",
        s.connections.len(),
        s.server,
        a.output.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}
