//! The MySQL side of one TCP connection: handshake, commands and responses → events.
//!
//! Bytes arrive per direction, already in order (capture's TCP reassembly, or a replaying
//! client's socket); gaps arrive as gaps.
//! The decoder follows the connection through its phases (greeting, login, authentication,
//! commands, or TLS after an SSLRequest) and turns each command and its answer into one
//! [`Exchange`](myrr_recording::Exchange). A connection whose start is not in the capture is
//! attached at the first packet that is plausibly a command; after a gap, decoding resumes at
//! the next trustworthy packet boundary (the next command) rather than guessing inside a
//! response.
//!
//! One decoder, split by concern: this module holds the connection's state and its phase
//! machine (which direction's bytes go where, session start and end); `commands` a command's
//! arrival and its exchange's emission, `responses` the answer's state machine, `results`
//! result sets and their rows, `packets` the generic server packets, `handshake` greeting
//! and login, `attach` where a stream with no known start can be picked up.

/// The columns of the result being read (`ColumnSets::finish`); definitions that do not parse
/// are counted at the server stream's position. A macro rather than a method: its callers hold
/// the command in flight (a borrow of `inflight`) while it uses other fields of the `Conn`.
macro_rules! result_columns {
    ($conn:expr, $ctx:expr) => {
        $conn.column_sets.finish(
            $ctx.stats,
            anomaly_at(
                $conn.session,
                Direction::ServerToClient,
                $conn.received[1],
                &$conn.server,
                Anomaly::MalformedColumnDefinition,
            ),
        )
    };
}

mod attach;
mod commands;
mod handshake;
mod packets;
mod responses;
mod results;
mod sample;

use std::collections::VecDeque;
use std::sync::Arc;

use myrr_recording::{
    Backfill, Column, Direction, EndReason, Event, Gap, Login, MissingReason, SessionEnd,
    SessionId, SessionStart,
};
use rustc_hash::FxHashMap;

use crate::framing::{FrameError, Framer};
use crate::{caps, Anomaly, AnomalyAt, DecodeStats};

use attach::{looks_like_greeting, looks_like_refusal, plausible_command, Framing};
use commands::{Inflight, Stmt};
pub use packets::parse_err;
use responses::RState;
use results::{ends_rows, ColumnSets};
pub use sample::{KeptRows, ShapeSampler, ANSWERS_PER_SHAPE, DIFFERING_PER_SHAPE, SHAPES_MAX};

/// Shared output and counters for all connections of a capture.
pub struct Ctx<'a> {
    pub events: &'a mut Vec<Event>,
    pub stats: &'a mut DecodeStats,
    pub next_session: &'a mut SessionId,
    /// A capture's choice of answers whose first rows it keeps (`None`: none).
    pub samples: Option<&'a mut ShapeSampler>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No handshake seen; waiting for a plausible greeting or command.
    Unattached,
    /// SYN seen: the server greets next.
    AwaitGreeting,
    AwaitLogin,
    Auth,
    Command,
    /// TLS (after an SSLRequest) that nothing will read: the session is counted encrypted.
    Encrypted,
    /// An SSLRequest went by and the TLS session's plaintext may follow
    /// ([`Conn::expect_tls_plaintext`]): the session starts when it does, or as encrypted
    /// when it will not ([`Conn::tls_unreadable`]).
    TlsPending,
    /// Login failed or the connection is otherwise finished.
    Done,
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// Where an anomaly was found: the end of the packet being decoded, i.e. the bytes received in
/// that direction (lost ones included) less those the framer still holds.
fn anomaly_at(
    session: Option<SessionId>,
    direction: Direction,
    received: u64,
    framer: &Framer,
    anomaly: Anomaly,
) -> AnomalyAt {
    AnomalyAt {
        anomaly,
        session,
        direction,
        offset: received.saturating_sub(framer.buffered() as u64),
    }
}

/// Decoder state for one connection.
pub struct Conn {
    pub session: Option<SessionId>,
    client_addr: String,
    server_addr: String,
    first_us: u64,
    phase: Phase,
    client: Framer,
    server: Framer,
    client_resync: bool,
    server_resync: bool,
    server_caps: Option<u32>,
    server_ext_caps: u32,
    caps: Option<u32>,
    ext_caps: u32,
    server_version: Option<Vec<u8>>,
    connection_id: Option<u32>,
    deprecate_eof: Option<bool>,
    query_attrs: Option<bool>,
    compressed: bool,
    /// FxHash: looked up with every EXECUTE's answer.
    stmts: FxHashMap<u32, Stmt>,
    column_sets: ColumnSets,
    last_prepared: Option<u32>,
    inflight: VecDeque<Inflight>,
    next_seq: u64,
    login: Login,
    quit_sent: bool,
    last_us: u64,
    ended: bool,
    /// The server framer switches to compression after the packet being handled.
    compress_server: bool,
    /// Bytes delivered per direction (client, server), lost ones included: anomalies' offsets.
    received: [u64; 2],
    /// LOCAL INFILE requests seen from the server (a replaying client answers each one).
    pub infile_requests: u64,
    /// Commands are decoded only as far as reading their answers needs (no SQL or parameter
    /// copies): for a replaying client, which knows what it sent.
    pub answers_only: bool,
    /// Keep the first rows of every exchange's first result, for [`Conn::take_kept`]: a
    /// replaying client, which keeps them in its run only when they differ from the recorded.
    pub keep_rows: bool,
    /// The rows kept of the exchange emitted last (with `keep_rows`).
    kept: Option<KeptRows>,
    /// What the server said of this connection before its first command was seen; emitted
    /// after the session's start if the session turns out to be mid-stream.
    backfill: Option<Backfill>,
    /// Something can read this connection's TLS (a key log, a probe in the server):
    /// an SSLRequest waits for the plaintext instead of ending the decoding.
    tls_readable: bool,
    /// The bytes being decoded are a TLS session's plaintext.
    tls: bool,
}

impl Conn {
    /// `syn_seen`: the connection's start is in the capture, so the greeting comes first.
    pub fn new(
        client: String,
        server: String,
        first_us: u64,
        syn_seen: bool,
        limit: usize,
    ) -> Self {
        Self {
            session: None,
            client_addr: client,
            server_addr: server,
            first_us,
            phase: if syn_seen {
                Phase::AwaitGreeting
            } else {
                Phase::Unattached
            },
            client: Framer::new(limit),
            server: Framer::new(limit),
            client_resync: !syn_seen,
            server_resync: !syn_seen,
            server_caps: None,
            server_ext_caps: 0,
            caps: None,
            ext_caps: 0,
            server_version: None,
            connection_id: None,
            deprecate_eof: None,
            query_attrs: None,
            compressed: false,
            stmts: FxHashMap::default(),
            column_sets: ColumnSets::default(),
            last_prepared: None,
            inflight: VecDeque::new(),
            next_seq: 0,
            login: Login::Unknown,
            quit_sent: false,
            last_us: first_us,
            ended: false,
            compress_server: false,
            received: [0; 2],
            infile_requests: 0,
            answers_only: false,
            keep_rows: false,
            kept: None,
            backfill: None,
            tls_readable: false,
            tls: false,
        }
    }

    /// The TLS session this connection may switch to can be read: after an SSLRequest the
    /// decoder waits ([`Self::awaits_tls`]) for [`Self::tls_plaintext`] or
    /// [`Self::tls_unreadable`] instead of counting the session encrypted.
    pub fn expect_tls_plaintext(&mut self) {
        self.tls_readable = true;
    }

    /// An SSLRequest went by and the decoder waits to hear whether the TLS session's plaintext
    /// follows. The bytes it is given meanwhile (the TLS records) are ignored.
    pub fn awaits_tls(&self) -> bool {
        self.phase == Phase::TlsPending
    }

    /// The handshake is under way (greeting or login awaited): an SSLRequest may still come.
    pub fn in_handshake(&self) -> bool {
        matches!(self.phase, Phase::AwaitGreeting | Phase::AwaitLogin)
    }

    /// No session yet and no handshake: waiting for a plausible command to attach at.
    pub fn unattached(&self) -> bool {
        self.phase == Phase::Unattached
    }

    /// Whether the bytes decoded are a TLS session's plaintext.
    pub fn reads_tls(&self) -> bool {
        self.tls
    }

    /// From now on the bytes given to [`Self::data`] are this connection's TLS plaintext, in
    /// both directions: after an SSLRequest, the client's login comes next; for a connection
    /// whose start is not in the capture, the stream is picked up at the next command, as a
    /// plaintext one is. Returns false (and changes nothing) when the session was already
    /// counted encrypted or decoded in the clear: plaintext cannot continue it.
    pub fn tls_plaintext(&mut self) -> bool {
        if self.tls {
            return true;
        }
        match self.phase {
            Phase::TlsPending => {
                self.phase = Phase::AwaitLogin;
                self.login = Login::Unknown;
                self.client.reset();
                self.server.reset();
            }
            Phase::Unattached if self.session.is_none() => {
                self.client_resync = true;
                self.server_resync = true;
                self.client.reset();
                self.server.reset();
            }
            _ => return false,
        }
        self.tls = true;
        true
    }

    /// The TLS session that began with the SSLRequest cannot be read (no keys for it): the
    /// session starts now, counted encrypted, as it would without [`Self::expect_tls_plaintext`].
    pub fn tls_unreadable(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase == Phase::TlsPending {
            self.phase = Phase::Encrypted;
            self.login = Login::Encrypted;
            self.attach(None, None, false, ctx);
        }
    }

    /// What the server knows of this connection, for a flow whose start is not in the capture:
    /// its user, database and prepared statements (whose EXECUTEs then decode). Ignored once
    /// the session has started, and dropped if its handshake turns up after all.
    pub fn backfill(&mut self, b: Backfill) {
        if self.session.is_some() {
            return;
        }
        for s in &b.statements {
            self.know_statement(s.id, s.params, Vec::new(), Arc::default());
            if let Some(st) = self.stmts.get_mut(&s.id) {
                st.key = crate::sql::shape_key(&s.sql);
            }
        }
        self.backfill = Some(b);
    }

    /// A prepared statement whose PREPARE is not in this session's capture (known from the
    /// server, or inferred from another session): its EXECUTEs decode from now on.
    /// `types`: as last bound, when known; empty otherwise (the next EXECUTE that binds
    /// types supplies them).
    pub fn know_statement(
        &mut self,
        id: u32,
        params: u16,
        types: Vec<(u8, bool)>,
        columns: Arc<[Column]>,
    ) {
        self.stmts.insert(
            id,
            Stmt {
                shape: crate::command::Statement { params, types },
                // No text: sampled by its columns.
                key: myrr_recording::columns_digest(&columns),
                columns,
            },
        );
    }

    /// With `keep_rows`: the first rows of the exchange emitted last, if it had a result.
    pub fn take_kept(&mut self) -> Option<KeptRows> {
        self.kept.take()
    }

    /// TLS that is not read: the session is counted encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.phase, Phase::Encrypted | Phase::TlsPending)
    }

    /// Counts an anomaly at the current position of `dir`'s stream.
    fn anomaly(&self, dir: Direction, anomaly: Anomaly, ctx: &mut Ctx<'_>) {
        let (received, framer) = match dir {
            Direction::ClientToServer => (self.received[0], &self.client),
            Direction::ServerToClient => (self.received[1], &self.server),
        };
        ctx.stats
            .anomaly(anomaly_at(self.session, dir, received, framer, anomaly), 1);
    }

    /// Bytes held in framing buffers.
    pub fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }

    pub fn data(&mut self, dir: Direction, data: &[u8], now: u64, ctx: &mut Ctx<'_>) {
        self.last_us = now;
        self.received[dir_index(dir)] += data.len() as u64;
        if self.ended || data.is_empty() {
            return;
        }
        match self.phase {
            Phase::Encrypted | Phase::TlsPending | Phase::Done => return,
            _ => {}
        }
        match dir {
            Direction::ClientToServer => self.client_data(data, now, ctx),
            Direction::ServerToClient => self.server_data(data, now, ctx),
        }
    }

    pub fn gap(&mut self, dir: Direction, bytes: u64, now: u64, ctx: &mut Ctx<'_>) {
        self.received[dir_index(dir)] += bytes;
        ctx.stats.gaps += 1;
        ctx.stats.gap_bytes += bytes;
        if let Some(session) = self.session {
            ctx.events.push(Event::Gap(Gap {
                session,
                direction: dir,
                at_us: now,
                bytes,
            }));
        }
        match dir {
            Direction::ClientToServer => {
                self.client.reset();
                self.client_resync = true;
            }
            Direction::ServerToClient => {
                self.server.reset();
                self.server_resync = true;
                for f in self.inflight.iter_mut() {
                    if let Some(c) = f.cur.as_mut() {
                        c.complete = false;
                    }
                }
            }
        }
        if self.phase == Phase::AwaitGreeting || self.phase == Phase::AwaitLogin {
            // The handshake is damaged; treat the connection as mid-stream from here.
            self.phase = Phase::Unattached;
            self.client_resync = true;
            self.server_resync = true;
        }
    }

    /// The connection is over (FIN, RST, idle, or end of capture).
    pub fn end(&mut self, reason: EndReason, now: u64, ctx: &mut Ctx<'_>) {
        if self.ended {
            return;
        }
        self.tls_unreadable(ctx);
        self.ended = true;
        if self.phase == Phase::AwaitLogin && !matches!(reason, EndReason::EndOfRun) {
            // The server greeted and the client never answered: no session, but counted.
            ctx.stats.handshakes_aborted += 1;
        }
        let missing = match reason {
            EndReason::EndOfRun => MissingReason::EndOfCapture,
            _ => MissingReason::Closed,
        };
        while let Some(f) = self.inflight.pop_front() {
            self.emit_partial(f, missing.clone(), ctx);
        }
        if let Some(session) = self.session {
            let reason = if self.quit_sent {
                EndReason::Quit
            } else {
                reason
            };
            ctx.events.push(Event::SessionEnd(SessionEnd {
                session,
                end_us: now.max(self.last_us),
                reason,
                login: self.login.clone(),
                exchanges: self.next_seq,
            }));
        }
    }

    fn attach(
        &mut self,
        user: Option<Vec<u8>>,
        db: Option<Vec<u8>>,
        mid_stream: bool,
        ctx: &mut Ctx<'_>,
    ) {
        if self.session.is_some() {
            return;
        }
        let id = *ctx.next_session;
        *ctx.next_session += 1;
        self.session = Some(id);
        let unreadable = self.phase == Phase::Encrypted;
        let backfill = self.backfill.take();
        if mid_stream {
            ctx.stats.sessions_mid_stream += 1;
        } else {
            ctx.stats.sessions_full += 1;
            if let Some(b) = &backfill {
                // The handshake was in the capture after all: the server's view is stale.
                for s in &b.statements {
                    self.stmts.remove(&s.id);
                }
            }
        }
        let backfill = backfill.filter(|_| mid_stream).map(|mut b| {
            b.session = id;
            b.at_us = self.first_us;
            b
        });
        let (user, db) = match &backfill {
            Some(b) => (user.or_else(|| b.user.clone()), db.or_else(|| b.db.clone())),
            None => (user, db),
        };
        if unreadable {
            ctx.stats.sessions_encrypted += 1;
        } else if self.tls {
            ctx.stats.sessions_tls_read += 1;
        }
        ctx.events.push(Event::SessionStart(SessionStart {
            session: id,
            client: self.client_addr.clone(),
            server: self.server_addr.clone(),
            start_us: self.first_us,
            user,
            db,
            server_version: self.server_version.clone(),
            connection_id: self.connection_id,
            capabilities: self.caps,
            mid_stream,
            encrypted: unreadable || self.tls,
            compressed: self.compressed,
            clone: 0,
        }));
        if let Some(b) = backfill {
            ctx.stats.sessions_backfilled += 1;
            ctx.events.push(Event::Backfill(b));
        }
    }

    // ---- client side -------------------------------------------------------------------

    fn client_data(&mut self, data: &[u8], now: u64, ctx: &mut Ctx<'_>) {
        if self.client_resync {
            // Only a segment that starts with a plausible command is a trustworthy boundary.
            match plausible_command(data, self.compressed) {
                Some(Framing::Plain) => {}
                Some(Framing::Compressed) if !self.client.is_compressed() => {
                    self.compressed = true;
                    let _ = self.client.set_compressed();
                    let _ = self.server.set_compressed();
                    ctx.stats.compression_detected += 1;
                }
                Some(Framing::Compressed) => {}
                None => {
                    ctx.stats.skipped_client_bytes += data.len() as u64;
                    return;
                }
            }
            self.client.reset();
            self.client_resync = false;
        }
        // Whole packets at the front are handled where they are (no copy into the framer);
        // a replay's own commands always arrive whole.
        let mut data = data;
        if self.client.is_idle() {
            while let Some((seq, payload, rest)) = crate::framing::whole_packet(data) {
                data = rest;
                self.client_packet(seq, payload, now, now, ctx);
                if self.client_stopped() {
                    break;
                }
            }
            if data.is_empty() {
                return;
            }
        }
        if let Err(e) = self.client.push(data, now) {
            self.frame_error(Direction::ClientToServer, e, now, ctx);
            return;
        }
        if self.client_stopped() {
            // What follows stays buffered, as when the framer hands packets out.
            return;
        }
        // The framer is taken out while its packets are handled, so they are borrowed, not
        // copied; handling a client packet never touches the client framer.
        let mut framer = std::mem::replace(&mut self.client, Framer::new(0));
        let mut failed = None;
        loop {
            let start = framer.first_byte_us.min(now);
            match framer.next_packet() {
                Ok(Some(pkt)) => self.client_packet(pkt.seq, pkt.payload, start, now, ctx),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if self.client_stopped() {
                break;
            }
        }
        self.client = framer;
        if let Some(e) = failed {
            self.frame_error(Direction::ClientToServer, e, now, ctx);
        }
    }

    /// Client packets are not handled further for now: the stream must resynchronise, turned
    /// to TLS, or the connection is finished.
    fn client_stopped(&self) -> bool {
        self.client_resync
            || matches!(
                self.phase,
                Phase::Encrypted | Phase::TlsPending | Phase::Done
            )
    }

    fn frame_error(&mut self, dir: Direction, e: FrameError, now: u64, ctx: &mut Ctx<'_>) {
        self.anomaly(dir, Anomaly::Framing(e), ctx);
        self.gap(dir, 0, now, ctx);
    }

    fn client_packet(&mut self, seq: u8, p: &[u8], start: u64, now: u64, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::AwaitLogin => self.login_request(p, ctx),
            Phase::Unattached => {
                if seq == 0 && !p.is_empty() {
                    self.phase = Phase::Command;
                    self.attach(None, None, true, ctx);
                    self.command(p, start, now, ctx);
                }
            }
            Phase::Command => {
                if seq == 0 && p.is_empty() {
                    self.anomaly(Direction::ClientToServer, Anomaly::EmptyCommand, ctx);
                } else if seq == 0 {
                    self.command(p, start, now, ctx);
                } else if let Some(f) = self.inflight.front_mut() {
                    // LOCAL INFILE upload or change_user authentication: not recorded.
                    f.last_us = now;
                }
            }
            Phase::AwaitGreeting
            | Phase::Auth
            | Phase::Encrypted
            | Phase::TlsPending
            | Phase::Done => {}
        }
    }

    // ---- server side -------------------------------------------------------------------

    fn server_data(&mut self, data: &[u8], now: u64, ctx: &mut Ctx<'_>) {
        if self.server_resync {
            if self.phase == Phase::Unattached
                && (looks_like_greeting(data) || looks_like_refusal(data))
            {
                // The SYN is missing but the handshake is here.
                self.phase = Phase::AwaitGreeting;
                self.server_resync = false;
                self.client_resync = false;
                self.server.reset();
                self.client.reset();
            } else {
                ctx.stats.skipped_server_bytes += data.len() as u64;
                return;
            }
        }
        // Whole packets at the front are handled where they are (no copy into the framer);
        // a replay's answers usually arrive whole.
        let mut data = data;
        if self.server.is_idle() {
            while let Some((seq, payload, rest)) = crate::framing::whole_packet(data) {
                data = rest;
                self.server_packet(seq, payload, now, ctx);
                if self.server_resync {
                    ctx.stats.skipped_server_bytes += data.len() as u64;
                    return;
                }
                if matches!(
                    self.phase,
                    Phase::Encrypted | Phase::TlsPending | Phase::Done
                ) {
                    return;
                }
                if std::mem::take(&mut self.compress_server) {
                    // The rest is compressed frames: the framer unframes them below.
                    if let Err(e) = self.server.set_compressed() {
                        self.frame_error(Direction::ServerToClient, e, now, ctx);
                        return;
                    }
                    break;
                }
            }
            if data.is_empty() {
                return;
            }
        }
        if let Err(e) = self.server.push(data, now) {
            self.frame_error(Direction::ServerToClient, e, now, ctx);
            return;
        }
        // As on the client side: packets are borrowed from the framer, taken out meanwhile.
        // The one change a server packet makes to its own framer (compression switched on by
        // the login's OK) is applied here, before the next packet is framed.
        let mut framer = std::mem::replace(&mut self.server, Framer::new(0));
        let mut failed = None;
        loop {
            match framer.next_packet() {
                Ok(Some(pkt)) => self.server_packet(pkt.seq, pkt.payload, now, ctx),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if std::mem::take(&mut self.compress_server) {
                if let Err(e) = framer.set_compressed() {
                    failed = Some(e);
                    break;
                }
            }
            if self.server_resync
                || matches!(
                    self.phase,
                    Phase::Encrypted | Phase::TlsPending | Phase::Done
                )
            {
                break;
            }
        }
        self.server = framer;
        if let Some(e) = failed {
            self.frame_error(Direction::ServerToClient, e, now, ctx);
        }
    }

    /// One server packet. A row of a result set (most packets of a large answer) takes a short
    /// path straight to its result; everything else goes through [`Self::server_packet_slow`].
    #[inline]
    fn server_packet(&mut self, seq: u8, p: &[u8], now: u64, ctx: &mut Ctx<'_>) {
        if self.phase == Phase::Command {
            if let Some(f) = self.inflight.front_mut() {
                // What `response` would do with it: a row in `Rows` state neither ends the
                // response nor lets an earlier one end (`Rows` is not `may_end`).
                if f.state == RState::Rows && !ends_rows(p) {
                    f.last_us = now;
                    Self::row(f, p);
                    return;
                }
            }
        }
        self.server_packet_slow(seq, p, now, ctx)
    }

    #[inline(never)]
    fn server_packet_slow(&mut self, _seq: u8, p: &[u8], now: u64, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::AwaitGreeting => self.greeting(p, ctx),
            // The server gave up on the client's login (a timeout, a bad handshake).
            Phase::AwaitLogin if p.first() == Some(&0xff) => self.greeting(p, ctx),
            Phase::Auth => match p.first() {
                Some(0x00) => {
                    self.login = Login::Ok;
                    self.phase = Phase::Command;
                    if self.caps.unwrap_or(0) & caps::COMPRESS != 0 {
                        self.compressed = true;
                        self.compress_server = true;
                        let _ = self.client.set_compressed();
                    }
                    if self.caps.unwrap_or(0) & caps::ZSTD != 0 {
                        self.anomaly(Direction::ServerToClient, Anomaly::ZstdCompressed, ctx);
                        self.phase = Phase::Done;
                    }
                }
                Some(0xff) => self.login_refused(p, ctx),
                _ => {}
            },
            Phase::Command => self.response(p, now, ctx),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
