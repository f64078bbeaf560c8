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
    Tls(Box<Session>),
    /// Plaintext, or TLS that is not read.
    Off,
}

/// A flow's TLS reading (see the module doc).
pub struct TlsFlow {
    keylog: Arc<KeyLog>,
    phase: Phase,
}

impl TlsFlow {
    /// For a flow whose SYN was captured; tells `conn` to wait for TLS plaintext.
    pub fn new(keylog: Arc<KeyLog>, conn: &mut Conn) -> Self {
        conn.expect_tls_plaintext();
        Self {
            keylog,
            phase: Phase::Watching(PacketEnds::default()),
        }
    }

    /// Bytes held (partial records, buffers).
    pub fn buffered(&self) -> usize {
        match &self.phase {
            Phase::Tls(s) => s.buffered(),
            _ => 0,
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
                        let session = Box::new(Session::new(self.keylog.clone()));
                        self.phase = Phase::Tls(session);
                        if !rest.is_empty() {
                            self.data(conn, dir, rest, at_us, ctx, stats);
                        }
                        return;
                    }
                }
                self.check_plain(conn);
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
    pub fn finish(&mut self, conn: &mut Conn, at_us: u64, ctx: &mut Ctx<'_>) {
        if let Phase::Tls(s) = &mut self.phase {
            s.finish(&mut |o| tell(conn, o, at_us, ctx));
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
