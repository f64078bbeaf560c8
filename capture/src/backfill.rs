//! The server's view of connections that were open before the capture started, and how a
//! flow without a handshake finds its own in it.
//!
//! A [`ServerSnapshot`] is what the server's tables said at one moment (read by
//! `myrr capture --server` or saved beforehand by `myrr snapshot`, for a pcap decoded later):
//! per connection its client address, user, database and the prepared statements it held.
//! [`ServerView`] is what the capture asks, once per flow that starts without a handshake;
//! [`SnapshotView`] answers from a snapshot. No credentials are ever part of it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use myrr_recording::{Backfill, BackfillSource, KnownStatement};
use myrr_wire::sql::placeholder_count;
use serde::{Deserialize, Serialize};

/// What the capture asks about a flow whose start it did not see.
pub trait ServerView: Send + std::fmt::Debug {
    /// The server's view of the connection from `client` to `server`, if it has one.
    fn lookup(&mut self, client: SocketAddr, server: SocketAddr) -> Option<Backfill>;
}

/// The server's tables at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSnapshot {
    /// `host:port` the snapshot was read from (no credentials).
    pub server: String,
    /// The server's port: only flows to this port are matched.
    pub port: u16,
    pub version: String,
    /// Wall clock, µs since the Unix epoch, when the snapshot was read.
    pub taken_us: u64,
    pub connections: Vec<ServerConnection>,
    /// What could not be read, and why (missing grants, performance_schema off, truncated
    /// statement text); printed by the capture.
    pub notes: Vec<String>,
}

/// One connection as the server knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerConnection {
    /// Processlist id (the connection id the greeting announced).
    pub id: u64,
    /// The client's address as the server reports it: `ip:port` (or `name:port` when the
    /// server resolves names).
    pub client: String,
    pub user: Option<String>,
    pub db: Option<String>,
    /// Session variables, where the server exposes them (MySQL's variables_by_thread).
    #[serde(default)]
    pub variables: Vec<(String, String)>,
    #[serde(default)]
    pub statements: Vec<ServerStatement>,
}

/// A statement prepared through the protocol (COM_STMT_PREPARE).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStatement {
    /// The id the client names in its EXECUTEs.
    pub id: u32,
    pub sql: String,
}

impl ServerConnection {
    /// Client host and port as reported (`[::1]:5`, `::1:5`, `10.0.0.1:5`, `app-1:5`).
    fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.client.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host, port.parse().ok()?))
    }

    fn backfill(&self) -> Backfill {
        Backfill {
            source: BackfillSource::Server {
                connection_id: self.id,
            },
            user: self.user.as_ref().map(|u| u.as_bytes().to_vec()),
            db: self.db.as_ref().map(|d| d.as_bytes().to_vec()),
            variables: self
                .variables
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            statements: self
                .statements
                .iter()
                .map(|s| KnownStatement {
                    id: s.id,
                    sql: s.sql.as_bytes().to_vec(),
                    params: placeholder_count(s.sql.as_bytes()),
                })
                .collect(),
            ..Backfill::default()
        }
    }
}

/// Same address, allowing for IPv4 written as an IPv4-mapped IPv6 address on either side.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    v4(a) == v4(b)
}

/// Answers lookups from a snapshot. A connection is handed out once.
#[derive(Debug, Default)]
pub struct SnapshotView {
    snapshot: ServerSnapshot,
    used: HashSet<u64>,
}

impl SnapshotView {
    pub fn new(snapshot: ServerSnapshot) -> Self {
        Self {
            snapshot,
            used: HashSet::new(),
        }
    }

    pub fn snapshot(&self) -> &ServerSnapshot {
        &self.snapshot
    }

    /// Replaces the snapshot with a newer one (connections handed out stay handed out).
    pub fn refresh(&mut self, snapshot: ServerSnapshot) {
        self.snapshot = snapshot;
    }

    /// The connection from `client`: the same port, and the same address — or, when the
    /// server reports a host name, the only connection from that port.
    fn find(&self, client: SocketAddr, server: SocketAddr) -> Option<&ServerConnection> {
        if self.snapshot.port != 0 && server.port() != self.snapshot.port {
            return None;
        }
        let candidates: Vec<&ServerConnection> = self
            .snapshot
            .connections
            .iter()
            .filter(|c| {
                !self.used.contains(&c.id) && c.host_port().is_some_and(|(_, p)| p == client.port())
            })
            .collect();
        let exact = candidates.iter().copied().find(|c| {
            c.host_port()
                .and_then(|(h, _)| h.parse::<IpAddr>().ok())
                .is_some_and(|ip| same_ip(ip, client.ip()))
        });
        exact.or_else(|| {
            let named: Vec<&ServerConnection> = candidates
                .into_iter()
                .filter(|c| {
                    c.host_port()
                        .is_some_and(|(h, _)| h.parse::<IpAddr>().is_err())
                })
                .collect();
            (named.len() == 1).then(|| named[0])
        })
    }
}

impl ServerView for SnapshotView {
    fn lookup(&mut self, client: SocketAddr, server: SocketAddr) -> Option<Backfill> {
        let c = self.find(client, server)?;
        let id = c.id;
        let b = c.backfill();
        self.used.insert(id);
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64, client: &str, stmts: &[(u32, &str)]) -> ServerConnection {
        ServerConnection {
            id,
            client: client.into(),
            user: Some("app".into()),
            db: Some("shop".into()),
            variables: vec![],
            statements: stmts
                .iter()
                .map(|(id, sql)| ServerStatement {
                    id: *id,
                    sql: (*sql).into(),
                })
                .collect(),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flows_find_their_connection_by_client_address_and_port() {
        let mut v = SnapshotView::new(ServerSnapshot {
            port: 3306,
            connections: vec![
                conn(1, "10.0.0.1:5000", &[(1, "SELECT ? FROM t WHERE a = ?")]),
                conn(2, "10.0.0.2:5000", &[]),
                conn(3, "::1:6000", &[]),
                conn(4, "app-host:7000", &[]),
            ],
            ..ServerSnapshot::default()
        });
        let server = addr("10.0.0.9:3306");
        // Another server port: not this server's connection.
        assert!(v
            .lookup(addr("10.0.0.1:5000"), addr("10.0.0.9:3307"))
            .is_none());
        let b = v.lookup(addr("10.0.0.1:5000"), server).unwrap();
        assert_eq!(b.source, BackfillSource::Server { connection_id: 1 });
        assert_eq!((b.statements[0].id, b.statements[0].params), (1, 2));
        assert_eq!(b.user.as_deref(), Some(&b"app"[..]));
        // Handed out once.
        assert!(v.lookup(addr("10.0.0.1:5000"), server).is_none());
        let b = v.lookup(addr("[::1]:6000"), addr("[::1]:3306")).unwrap();
        assert_eq!(b.source, BackfillSource::Server { connection_id: 3 });
        // A host name matches by port when only one connection has it.
        let b = v.lookup(addr("10.0.0.7:7000"), server).unwrap();
        assert_eq!(b.source, BackfillSource::Server { connection_id: 4 });
        // Same port, other address, no name: no match.
        assert!(v.lookup(addr("10.0.0.3:5000"), server).is_none());
        let b = v.lookup(addr("[::ffff:10.0.0.2]:5000"), server).unwrap();
        assert_eq!(b.source, BackfillSource::Server { connection_id: 2 });
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let s = ServerSnapshot {
            server: "127.0.0.1:3306".into(),
            port: 3306,
            version: "10.11".into(),
            taken_us: 5,
            connections: vec![conn(1, "127.0.0.1:5000", &[(3, "SELECT ?")])],
            notes: vec!["session variables: not available".into()],
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ServerSnapshot>(&j).unwrap(), s);
    }
}
