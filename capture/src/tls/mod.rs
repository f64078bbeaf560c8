//! Reading MySQL's TLS sessions in a capture with a key log (`myrr capture -r F --keylog K`).
//!
//! - [`keylog`]: the NSS key log format ([`KeyLog`]), from files and from pcapng Decryption
//!   Secrets Blocks; bad lines are counted with their line numbers.
//! - [`record`]: TLS records and handshake messages cut out of a direction's stream, whatever
//!   the segments.
//! - [`cipher`]: suites, the TLS 1.0–1.2 PRF and TLS 1.3 HKDF-Expand-Label (compositions of
//!   the RustCrypto `hmac`/`hkdf` crates, no hand-written cryptography), record decryption
//!   (AES-GCM and ChaCha20-Poly1305 by `ring`, AES-CBC with HMAC by RustCrypto crates).
//! - [`session`]: one TLS session followed passively: hellos, key schedule, records in, the
//!   application data out ([`session::Session`]).
//! - [`TlsFlow`]: where a MySQL connection's TLS begins (after the client's SSLRequest, in
//!   the middle of the TCP stream), and the session's plaintext handed to the flow's
//!   [`Conn`], which decodes the login inside TLS and all that follows.
//!
//! A flow gets a [`TlsFlow`] only when the capture has a key log, and only when its SYN was
//! captured (a TLS session whose handshake is not in the capture cannot be matched to its
//! keys): without a key log, nothing here runs. Until the TLS starts, the client's bytes are
//! handed to the [`Conn`] cut at MySQL packet ends, so that the bytes after the SSLRequest,
//! even in the same segment, go to the TLS reader. Once the session logged in in the clear or
//! TLS is found unreadable, the flow is plain again.

pub mod cipher;
pub mod keylog;
pub mod record;
pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;

use myrr_recording::Direction;
use myrr_wire::conn::{Conn, Ctx};

use keylog::ClientRandom;
pub use keylog::KeyLog;
use session::{Out, Session};

/// What reading TLS sessions counted.
#[derive(Debug, Default, Clone)]
pub struct TlsStats {
    /// Sessions whose records decrypted.
    pub sessions_decrypted: u64,
    /// Sessions whose client random is not in the key log.
    pub sessions_without_keys: u64,
    /// Sessions of a version or cipher suite not supported (by name in `unsupported`).
    pub sessions_unsupported: u64,
    /// Sessions whose first records did not decrypt (wrong keys, damage), or whose hellos
    /// were not in the capture.
    pub sessions_failed: u64,
    pub unsupported: BTreeMap<String, u64>,
    /// Directions whose reading stopped, and sessions that failed, by why.
    pub failures: BTreeMap<&'static str, u64>,
    /// Sessions read, by version and suite.
    pub suites: BTreeMap<String, u64>,
    pub records_decrypted: u64,
    /// TLS 1.3 handshake records skipped for want of handshake secrets.
    pub records_skipped: u64,
    pub plaintext_bytes: u64,
    /// TLS 1.3 KeyUpdates followed.
    pub key_updates: u64,
    /// `--tls-probe`: sessions read with the secrets the server derived, and those whose
    /// secrets had not all come when their bytes stopped waiting for them (read with what had
    /// come, else counted without keys).
    pub sessions_keyed_live: u64,
    pub sessions_keys_late: u64,
    /// TCP gaps passed over in a readable direction (the next record found after it), and
    /// the records they held.
    pub gaps_passed: u64,
    pub records_lost_in_gaps: u64,
}

/// A secret of a TLS session, as the server derived it (`--tls-probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    ClientHandshake,
    ServerHandshake,
    ClientTraffic,
    ServerTraffic,
    Master,
}

/// How long a session's bytes wait for its secrets (capture time), and how many bytes.
pub const KEYS_WAIT_US: u64 = 2_000_000;
pub const KEYS_WAIT_BYTES: usize = 1 << 20;

/// Bytes of a session waiting for its secrets.
enum Held {
    Data(Direction, Vec<u8>, u64),
    Gap(Direction, u64, u64),
}

/// The secrets of one session as the probe hands them in, and its bytes waiting for them.
#[derive(Default)]
struct Live {
    tls13: keylog::Tls13Secrets,
    master: Option<[u8; 48]>,
    held: Vec<Held>,
    held_bytes: usize,
    since_us: Option<u64>,
}

impl Live {
    /// Enough to read both directions' application data.
    fn complete(&self) -> bool {
        self.master.is_some()
            || (self.tls13.client_traffic.is_some() && self.tls13.server_traffic.is_some())
    }
}

/// The client random of the ClientHello at the start of the client's `held` bytes.
fn client_random(held: &[Held]) -> Option<ClientRandom> {
    let mut first = Vec::new();
    for h in held {
        if let Held::Data(Direction::ClientToServer, b, _) = h {
            first.extend_from_slice(b);
            if first.len() >= 43 {
                break;
            }
        }
    }
    // A handshake record whose first message is a ClientHello: type, length, version,
    // then the random.
    if first.len() < 43 || first[0] != 22 || first[5] != 1 {
        return None;
    }
    first[11..43].try_into().ok()
}

/// Where a flow's secrets come from.
enum Keys {
    Log(Arc<KeyLog>),
    Live(Box<Live>),
}

/// Cuts the client's bytes at MySQL packet ends until TLS starts.
#[derive(Debug, Default)]
struct PacketEnds {
    head: [u8; 4],
    head_len: usize,
    left: usize,
}

impl PacketEnds {
    /// Bytes of `data` up to the end of the current packet (all of it if the packet goes on),
    /// and whether a packet ends there.
    fn advance(&mut self, data: &[u8]) -> (usize, bool) {
        let mut i = 0;
        if self.head_len < 4 {
            let take = (4 - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
            self.head_len += take;
            i = take;
            if self.head_len < 4 {
                return (i, false);
            }
            self.left = usize::from(self.head[0])
                | usize::from(self.head[1]) << 8
                | usize::from(self.head[2]) << 16;
        }
        let take = self.left.min(data.len() - i);
        self.left -= take;
        i += take;
        if self.left == 0 {
            self.head_len = 0;
            (i, true)
        } else {
            (i, false)
        }
    }
}

enum Phase {
    /// Before TLS: the client's packets are watched for the SSLRequest.
    Watching(PacketEnds),
    /// `--tls-probe`: TLS began; its bytes wait for the secrets.
    Waiting,
    Tls(Box<Session>),
    /// Plaintext, or TLS that is not read.
    Off,
}

/// A flow's TLS reading (see the module doc).
pub struct TlsFlow {
    keys: Keys,
    phase: Phase,
}

impl TlsFlow {
    /// For a flow whose SYN was captured; tells `conn` to wait for TLS plaintext.
    pub fn new(keylog: Arc<KeyLog>, conn: &mut Conn) -> Self {
        conn.expect_tls_plaintext();
        Self {
            keys: Keys::Log(keylog),
            phase: Phase::Watching(PacketEnds::default()),
        }
    }

    /// For a flow whose SYN was captured, whose secrets the server will tell
    /// ([`TlsFlow::secret`], `--tls-probe`): once TLS begins, its bytes wait for them.
    pub fn live(conn: &mut Conn) -> Self {
        conn.expect_tls_plaintext();
        Self {
            keys: Keys::Live(Box::default()),
            phase: Phase::Watching(PacketEnds::default()),
        }
    }

    /// Whether this flow is read with secrets from the server (not with plaintext from it).
    pub fn takes_secrets(&self) -> bool {
        matches!(self.keys, Keys::Live(_))
    }

    /// Whether a secret from the server can still be used: its reading has not begun.
    pub fn wants_secrets(&self) -> bool {
        self.takes_secrets() && matches!(self.phase, Phase::Watching(_) | Phase::Waiting)
    }

    /// Bytes held (partial records, buffers, bytes waiting for secrets).
    pub fn buffered(&self) -> usize {
        match (&self.phase, &self.keys) {
            (Phase::Tls(s), _) => s.buffered(),
            (Phase::Waiting, Keys::Live(l)) => l.held_bytes,
            _ => 0,
        }
    }

    /// A secret the server derived for this session: once there are enough, the bytes that
    /// waited are read.
    pub fn secret(
        &mut self,
        kind: SecretKind,
        secret: &[u8],
        conn: &mut Conn,
        ctx: &mut Ctx<'_>,
        stats: &mut TlsStats,
    ) {
        let Keys::Live(live) = &mut self.keys else {
            return;
        };
        let t = &mut live.tls13;
        match kind {
            SecretKind::ClientHandshake => t.client_handshake = Some(secret.to_vec()),
            SecretKind::ServerHandshake => t.server_handshake = Some(secret.to_vec()),
            SecretKind::ClientTraffic => t.client_traffic = Some(secret.to_vec()),
            SecretKind::ServerTraffic => t.server_traffic = Some(secret.to_vec()),
            SecretKind::Master => live.master = secret.try_into().ok(),
        }
        if matches!(self.phase, Phase::Waiting) && live.complete() {
            self.read_held(conn, ctx, stats);
        }
    }

    /// Bytes that waited for their secrets since before `now_us` - [`KEYS_WAIT_US`] are read
    /// with what came.
    pub fn expire(
        &mut self,
        now_us: u64,
        conn: &mut Conn,
        ctx: &mut Ctx<'_>,
        stats: &mut TlsStats,
    ) {
        if let (Phase::Waiting, Keys::Live(l)) = (&self.phase, &self.keys) {
            if l.since_us
                .is_some_and(|t| now_us.saturating_sub(t) >= KEYS_WAIT_US)
            {
                self.read_held(conn, ctx, stats);
            }
        }
    }

    /// Whether bytes wait for secrets.
    pub fn waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting)
    }

    /// The session's reader starts with the secrets that came; the bytes that waited go
    /// through it.
    fn read_held(&mut self, conn: &mut Conn, ctx: &mut Ctx<'_>, stats: &mut TlsStats) {
        let Keys::Live(live) = &mut self.keys else {
            return;
        };
        let held = std::mem::take(&mut live.held);
        live.held_bytes = 0;
        let mut log = KeyLog::default();
        if let Some(random) = client_random(&held) {
            if let Some(m) = live.master {
                log.add_master(random, m);
            }
            log.add_tls13(random, live.tls13.clone());
        }
        if live.complete() {
            stats.sessions_keyed_live += 1;
        } else {
            stats.sessions_keys_late += 1;
        }
        self.phase = Phase::Tls(Box::new(Session::new(Arc::new(log))));
        for h in held {
            match h {
                Held::Data(d, b, at) => self.data(conn, d, &b, at, ctx, stats),
                Held::Gap(d, n, at) => self.gap(conn, d, n, at, ctx, stats),
            }
        }
    }

    /// `dir`'s next bytes, captured at `at_us`.
    pub fn data(
        &mut self,
        conn: &mut Conn,
        dir: Direction,
        data: &[u8],
        at_us: u64,
        ctx: &mut Ctx<'_>,
        stats: &mut TlsStats,
    ) {
        match &mut self.phase {
            Phase::Off => {
                if conn.awaits_tls() {
                    conn.tls_unreadable(ctx);
                }
                conn.data(dir, data, at_us, ctx)
            }
            Phase::Watching(_) if dir == Direction::ServerToClient => {
                conn.data(dir, data, at_us, ctx);
                self.check_plain(conn);
            }
            Phase::Watching(ends) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let (n, packet_end) = ends.advance(rest);
                    conn.data(dir, &rest[..n], at_us, ctx);
                    rest = &rest[n..];
                    if packet_end && conn.awaits_tls() {
                        self.phase = match &self.keys {
                            Keys::Log(k) => Phase::Tls(Box::new(Session::new(k.clone()))),
                            Keys::Live(_) => Phase::Waiting,
                        };
                        if !rest.is_empty() {
                            self.data(conn, dir, rest, at_us, ctx, stats);
                        }
                        return;
                    }
                }
                self.check_plain(conn);
            }
            Phase::Waiting => {
                let Keys::Live(live) = &mut self.keys else {
                    return;
                };
                live.since_us.get_or_insert(at_us);
                live.held_bytes += data.len();
                live.held.push(Held::Data(dir, data.to_vec(), at_us));
                if live.complete() || live.held_bytes > KEYS_WAIT_BYTES {
                    self.read_held(conn, ctx, stats);
                }
            }
            Phase::Tls(s) => {
                s.feed(dir, data, stats, &mut |o| tell(conn, o, at_us, ctx));
                if s.is_unreadable() {
                    self.phase = Phase::Off;
                }
            }
        }
    }

    /// `bytes` of `dir` were lost in the capture.
    pub fn gap(
        &mut self,
        conn: &mut Conn,
        dir: Direction,
        bytes: u64,
        at_us: u64,
        ctx: &mut Ctx<'_>,
        stats: &mut TlsStats,
    ) {
        match &mut self.phase {
            Phase::Waiting => {
                if let Keys::Live(live) = &mut self.keys {
                    live.held.push(Held::Gap(dir, bytes, at_us));
                }
            }
            Phase::Tls(s) => {
                s.gap(dir, bytes, stats, &mut |o| tell(conn, o, at_us, ctx));
                if s.is_unreadable() {
                    self.phase = Phase::Off;
                }
            }
            _ => {
                // Packet ends can no longer be followed: the decoder resynchronises alone.
                self.phase = Phase::Off;
                conn.gap(dir, bytes, at_us, ctx);
            }
        }
    }

    /// The flow ends: what was left in partial records is lost.
    pub fn finish(&mut self, conn: &mut Conn, at_us: u64, ctx: &mut Ctx<'_>, stats: &mut TlsStats) {
        if matches!(self.phase, Phase::Waiting) {
            self.read_held(conn, ctx, stats);
        }
        if let Phase::Tls(s) = &mut self.phase {
            s.finish(stats, &mut |o| tell(conn, o, at_us, ctx));
        }
        self.phase = Phase::Off;
    }

    /// Once the session is going in the clear (or over), there is no TLS to wait for.
    fn check_plain(&mut self, conn: &Conn) {
        if conn.session.is_some() || (conn.is_encrypted() && !conn.awaits_tls()) {
            self.phase = Phase::Off;
        }
    }
}

/// What the TLS session says, told to the MySQL decoder.
fn tell(conn: &mut Conn, o: Out<'_>, at_us: u64, ctx: &mut Ctx<'_>) {
    match o {
        Out::Readable => {
            conn.tls_plaintext();
        }
        Out::Unreadable(_) => conn.tls_unreadable(ctx),
        Out::Plaintext(d, bytes) => conn.data(d, bytes, at_us, ctx),
        Out::Lost(d, n) => conn.gap(d, n, at_us, ctx),
    }
}
