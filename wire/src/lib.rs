//! myrr-wire: the MySQL client/server protocol, both directions, with no I/O.
//!
//! - [`framing`]: logical packets out of a byte stream ([`framing::Framer`]: 16 MiB
//!   continuation, the compressed protocol) and into one ([`framing::frame`]).
//! - [`reader`]: bounds-checked reading of wire primitives ([`reader::Reader`]).
//! - [`values`]: binary-protocol values, read and written.
//! - [`command`]: the command codes ([`command::Code`]) and the encoding of a recorded
//!   [`Command`](myrr_recording::Command) into the bytes a client sends.
//! - [`caps`]: capability flags, defined once.
//! - [`handshake`]: a server's greeting and a client's login, encoded (fixtures).
//! - [`conn`]: the decoder of one connection ([`conn::Conn`]): handshake, commands and
//!   responses in, [`Event`](myrr_recording::Event)s out. Used by capture on captured bytes
//!   and by replay on its own connection's bytes, so a recorded and a replayed answer are
//!   decoded and digested by the same code.
//! - [`DecodeStats`] and [`Anomaly`]: what the decoder counted and what it could not decode.
//!
//! Being short of bytes is a state, never an error: the framer and the decoder keep what they
//! have and wait for more. A malformed packet is an [`Anomaly`], counted with where it was,
//! and decoding resumes at the next trustworthy packet boundary.

pub mod caps;
pub mod command;
pub mod conn;
pub mod framing;
pub mod handshake;
pub mod infer;
pub mod reader;
pub mod sql;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;

use myrr_recording::Direction;

pub use framing::FrameError;

/// Something the decoder could not make sense of. The bytes involved are skipped (and
/// counted); decoding resumes at the next packet boundary it can trust.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Anomaly {
    /// The packet stream itself is broken (a compressed frame that does not inflate...).
    Framing(FrameError),
    /// A command packet with no command byte.
    EmptyCommand,
    /// A command code the decoder does not know, or a known one that cannot be parsed.
    Command(u8),
    /// The client's login request does not parse.
    MalformedLogin,
    /// The first server packet of a connection is not a MySQL greeting.
    NotAGreeting,
    /// A column definition in a result set's header does not parse.
    MalformedColumnDefinition,
    /// A server packet that cannot be an answer to the command in flight.
    UnexpectedResponse,
    /// The session negotiated the zstd-compressed protocol, which is not decoded.
    ZstdCompressed,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::Framing(e) => write!(f, "framing: {e}"),
            Anomaly::EmptyCommand => f.write_str("empty command packet"),
            Anomaly::Command(code) => write!(f, "command 0x{code:02x}"),
            Anomaly::MalformedLogin => f.write_str("malformed login request"),
            Anomaly::NotAGreeting => f.write_str("not a MySQL greeting"),
            Anomaly::MalformedColumnDefinition => f.write_str("malformed column definition"),
            Anomaly::UnexpectedResponse => f.write_str("unexpected response packet"),
            Anomaly::ZstdCompressed => f.write_str("zstd-compressed protocol"),
        }
    }
}

/// An [`Anomaly`] and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyAt {
    pub anomaly: Anomaly,
    /// The session's id, once it has one.
    pub session: Option<u64>,
    pub direction: Direction,
    /// Byte offset in that direction's stream (bytes delivered to the decoder before the
    /// packet involved, lost bytes included).
    pub offset: u64,
}

impl fmt::Display for AnomalyAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        };
        match self.session {
            Some(s) => write!(
                f,
                "{} (session {s}, {dir} byte {})",
                self.anomaly, self.offset
            ),
            None => write!(f, "{} ({dir} byte {})", self.anomaly, self.offset),
        }
    }
}

/// Anomalies kept with their place (the first ones); beyond it only counts go on.
pub const ANOMALIES_KEPT: usize = 64;

/// What the decoder counted, over all connections of a run.
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub sessions_full: u64,
    pub sessions_mid_stream: u64,
    /// Mid-stream sessions that the server's view (`capture --server`) described.
    pub sessions_backfilled: u64,
    /// EXECUTEs naming a statement whose PREPARE this run does not know (it came before the
    /// capture and no backfill described it): a replay must skip them.
    pub executes_unprepared: u64,
    /// TLS sessions nothing could read (no key log entry, no probe): nothing of them is
    /// recorded but their start and end.
    pub sessions_encrypted: u64,
    /// TLS sessions read in plaintext (a key log, the server's TLS library probed).
    pub sessions_tls_read: u64,
    pub compression_detected: u64,
    /// Logins the server refused: an ERR instead of the greeting, after it, or after the
    /// client's login.
    pub logins_failed: u64,
    /// Connections the server greeted whose client never sent a login before the connection
    /// ended (health checks, port probes, clients that gave up); not counted at the end of
    /// the capture. They have no session.
    pub handshakes_aborted: u64,
    pub exchanges: u64,
    pub commands: BTreeMap<&'static str, u64>,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub skipped_client_bytes: u64,
    pub skipped_server_bytes: u64,
    pub unsolicited_packets: u64,
    pub responses_missing: u64,
    /// Anomalies counted by kind (their `Display`).
    pub undecodable: BTreeMap<String, u64>,
    /// The first [`ANOMALIES_KEPT`] anomalies, with where they were.
    pub anomalies: Vec<AnomalyAt>,
}

impl DecodeStats {
    /// Counts an anomaly `n` times and keeps the first ones with their place.
    pub fn anomaly(&mut self, at: AnomalyAt, n: u64) {
        *self.undecodable.entry(at.anomaly.to_string()).or_default() += n;
        if self.anomalies.len() < ANOMALIES_KEPT {
            self.anomalies.push(at);
        }
    }
}
