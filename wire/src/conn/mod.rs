//! The MySQL side of one TCP connection: handshake, commands and responses → events.
//!
//! Bytes arrive per direction, already in order (capture's TCP reassembly, or a replaying
//! client's socket); gaps arrive as gaps.
//! The decoder follows the connection through its phases (greeting, login, authentication,
//! commands, or TLS after an SSLRequest) and turns each command and its answer into one
//! [`Exchange`]. A connection whose start is not in the capture is attached at the first
//! packet that is plausibly a command; after a gap, decoding resumes at the next trustworthy
//! packet boundary (the next command) rather than guessing inside a response.

use std::collections::VecDeque;
use std::sync::Arc;

use myrr_recording::{
    Column, Command, Direction, EndReason, ErrInfo, Event, Exchange, Gap, Login, MissingReason,
    OkInfo, Prepared, Response, ResultSet, RowDigester, SessionEnd, SessionId, SessionStart,
    ValueRef,
};
use rustc_hash::FxHashMap;
use smallvec::{smallvec, SmallVec};

use crate::command::{self, Code, DecodeContext, Statement};
use crate::framing::{FrameError, Framer};
use crate::reader::Reader;
use crate::values::{read_binary, UNSIGNED_FLAG};
use crate::{caps, Anomaly, AnomalyAt, DecodeStats};

const STATUS_MORE_RESULTS: u16 = 0x0008;
const STATUS_CURSOR_EXISTS: u16 = 0x0040;
/// Largest payload that can be a terminator rather than a row starting with 0xfe.
const MAX_TERMINATOR: usize = 0xff_fffe;

/// A packet that ends a result set's rows: its terminator (EOF, or OK under DEPRECATE_EOF) or
/// an error. Anything else in `Rows` state is a row.
fn ends_rows(p: &[u8]) -> bool {
    match p.first() {
        Some(0xff) => true,
        Some(0xfe) => p.len() <= MAX_TERMINATOR,
        _ => false,
    }
}

/// Shared output and counters for all connections of a capture.
pub struct Ctx<'a> {
    pub events: &'a mut Vec<Event>,
    pub stats: &'a mut DecodeStats,
    pub next_session: &'a mut SessionId,
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
    Encrypted,
    /// Login failed or the connection is otherwise finished.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RState {
    First,
    Cols { left: u64 },
    ColsEof,
    Rows,
    PrepFirst,
    PrepParams { left: u16 },
    PrepParamsEof,
    PrepCols { left: u16 },
    PrepColsEof,
    FieldList,
    ChangeUser,
    Simple,
    Text,
    Infile,
    Done,
}

impl RState {
    /// The response may be complete here, if no optional EOF follows (DEPRECATE_EOF unknown).
    fn may_end(self) -> bool {
        matches!(self, RState::PrepColsEof | RState::PrepParamsEof)
    }
}

#[derive(Debug)]
struct ResultBuild {
    columns: Arc<[Column]>,
    rows: u64,
    bytes: u64,
    digest: RowDigester,
    binary: bool,
    complete: bool,
}

impl ResultBuild {
    fn new(binary: bool, columns: Arc<[Column]>) -> Self {
        Self {
            columns,
            rows: 0,
            bytes: 0,
            digest: RowDigester::new(),
            binary,
            complete: true,
        }
    }

    /// Digests one row; false when the row does not parse against the columns.
    fn row(&mut self, payload: &[u8]) -> bool {
        self.rows += 1;
        self.bytes += payload.len() as u64;
        let ok = if self.binary {
            self.binary_row(payload)
        } else {
            self.text_row(payload)
        };
        if !ok {
            self.complete = false;
        }
        ok
    }

    fn text_row(&mut self, payload: &[u8]) -> bool {
        let mut r = Reader::new(payload);
        for _ in 0..self.columns.len() {
            if r.rest().first() == Some(&0xfb) {
                r.skip(1);
                self.digest.value(ValueRef::Null);
            } else {
                match r.lenenc_bytes() {
                    Some(b) => self.digest.value(ValueRef::Bytes(b)),
                    None => {
                        self.digest.end_row();
                        return false;
                    }
                }
            }
        }
        self.digest.end_row();
        r.is_empty()
    }

    fn binary_row(&mut self, payload: &[u8]) -> bool {
        let mut r = Reader::new(payload);
        let n = self.columns.len();
        let ok = (|| {
            if r.u8()? != 0 {
                return None;
            }
            let bitmap = r.take((n + 7 + 2) / 8)?;
            for (i, c) in self.columns.iter().enumerate() {
                let bit = i + 2;
                if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
                    self.digest.value(ValueRef::Null);
                } else {
                    let v = read_binary(&mut r, c.column_type, c.flags & UNSIGNED_FLAG != 0)?;
                    self.digest.value(v);
                }
            }
            Some(())
        })()
        .is_some();
        self.digest.end_row();
        ok && r.is_empty()
    }

    fn finish(self, status: u16, warnings: u16, error: Option<ErrInfo>) -> ResultSet {
        ResultSet {
            complete: self.complete && error.is_none(),
            digest: self.digest.finish(),
            columns: self.columns,
            rows: self.rows,
            bytes: self.bytes,
            status,
            warnings,
            error,
        }
    }
}

#[derive(Debug)]
struct Inflight {
    seq: u64,
    start_us: u64,
    last_us: u64,
    command: Command,
    state: RState,
    cur: Option<ResultBuild>,
    /// Usually one: kept inline.
    results: SmallVec<[Response; 1]>,
    prep: Option<Prepared>,
    infile: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone)]
struct Stmt {
    /// Parameter count and the types last bound, for decoding EXECUTEs.
    shape: Statement,
    columns: Arc<[Column]>,
}

/// The most distinct column sets, and bytes of their definitions, a connection remembers.
const COLUMN_SETS: usize = 32;
const COLUMN_SET_BYTES: usize = 16 << 10;

/// A parsed set of column definitions, with how many of them did not parse.
type ColumnSet = (Arc<[Column]>, u64);

/// Column definitions, parsed once per distinct set. A statement sends the same definitions
/// with every answer; its answers share one parsed set, found by the definitions' bytes,
/// rather than parsing and allocating the set again each time. Bounded per connection.
#[derive(Debug, Default)]
struct ColumnSets {
    /// The definition packets of the result being read, each after its length.
    raw: Vec<u8>,
    /// Sets seen, by their packets.
    known: FxHashMap<Box<[u8]>, ColumnSet>,
    known_bytes: usize,
}

impl ColumnSets {
    /// A result's definitions start.
    fn begin(&mut self) {
        self.raw.clear();
    }

    fn push(&mut self, packet: &[u8]) {
        self.raw
            .extend_from_slice(&(packet.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(packet);
    }

    /// The columns pushed since `begin`.
    /// The columns pushed since `begin`; definitions that do not parse are counted as
    /// anomalies at `at` (the server stream's position).
    fn finish(&mut self, stats: &mut DecodeStats, at: AnomalyAt) -> Arc<[Column]> {
        let (cols, malformed) = match self.known.get(&self.raw[..]) {
            Some((cols, malformed)) => (cols.clone(), *malformed),
            None => {
                let mut malformed = 0;
                let mut cols = Vec::new();
                let mut r = Reader::new(&self.raw);
                while let Some(p) = r.u32().and_then(|n| r.take(n as usize)) {
                    cols.push(parse_column(p).unwrap_or_else(|| {
                        malformed += 1;
                        Column::default()
                    }));
                }
                let cols: Arc<[Column]> = cols.into();
                if self.known.len() >= COLUMN_SETS
                    || self.known_bytes + self.raw.len() > COLUMN_SET_BYTES
                {
                    self.known.clear();
                    self.known_bytes = 0;
                }
                if self.raw.len() <= COLUMN_SET_BYTES {
                    self.known_bytes += self.raw.len();
                    self.known
                        .insert(self.raw.as_slice().into(), (cols.clone(), malformed));
                }
                (cols, malformed)
            }
        };
        if malformed > 0 {
            stats.anomaly(at, malformed);
        }
        cols
    }
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
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.phase == Phase::Encrypted
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
            Phase::Encrypted | Phase::Done => return,
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
        let encrypted = self.phase == Phase::Encrypted;
        if mid_stream {
            ctx.stats.sessions_mid_stream += 1;
        } else {
            ctx.stats.sessions_full += 1;
        }
        if encrypted {
            ctx.stats.sessions_encrypted += 1;
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
            encrypted,
            compressed: self.compressed,
            clone: 0,
        }));
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
        self.client_resync || matches!(self.phase, Phase::Encrypted | Phase::Done)
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
            Phase::AwaitGreeting | Phase::Auth | Phase::Encrypted | Phase::Done => {}
        }
    }

    fn login_request(&mut self, p: &[u8], ctx: &mut Ctx<'_>) {
        let mut r = Reader::new(p);
        let parsed = (|| {
            let low = r.u16()? as u32;
            if low & caps::PROTOCOL_41 == 0 {
                // HandshakeResponse320.
                r.u24()?;
                let user = r.cstr_or_rest().to_vec();
                return Some((low, 0u32, Some(user), None, p.len() <= 5));
            }
            let c = low | ((r.u16()? as u32) << 16);
            r.u32()?;
            r.u8()?;
            let filler = r.take(23)?;
            let ext = u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]]);
            if p.len() == 32 && c & caps::SSL != 0 {
                return Some((c, ext, None, None, true));
            }
            let user = r.cstr()?.to_vec();
            if c & caps::PLUGIN_AUTH_LENENC != 0 {
                r.lenenc_bytes()?;
            } else if c & caps::SECURE_CONNECTION != 0 {
                let n = r.u8()? as usize;
                r.skip(n)?;
            } else {
                r.cstr()?;
            }
            let db = if c & caps::CONNECT_WITH_DB != 0 {
                Some(r.cstr_or_rest().to_vec()).filter(|d| !d.is_empty())
            } else {
                None
            };
            Some((c, ext, Some(user), db, false))
        })();
        let Some((client_caps, ext, user, db, ssl)) = parsed else {
            self.anomaly(Direction::ClientToServer, Anomaly::MalformedLogin, ctx);
            self.phase = Phase::Unattached;
            self.client_resync = true;
            self.server_resync = true;
            return;
        };
        let effective = client_caps & self.server_caps.unwrap_or(u32::MAX);
        self.caps = Some(effective);
        // MariaDB puts extended capabilities where MySQL has filler, when CLIENT_MYSQL is off.
        if effective & caps::LONG_PASSWORD == 0 {
            self.ext_caps = ext & self.server_ext_caps;
        }
        self.deprecate_eof = Some(effective & caps::DEPRECATE_EOF != 0);
        // The session starts compressed once authentication succeeds.
        self.compressed = effective & caps::COMPRESS != 0;
        self.query_attrs = Some(effective & caps::QUERY_ATTRIBUTES != 0);
        if ssl && client_caps & caps::SSL != 0 {
            self.phase = Phase::Encrypted;
            self.login = Login::Encrypted;
            self.attach(None, None, false, ctx);
            return;
        }
        self.phase = Phase::Auth;
        self.attach(user, db, false, ctx);
    }

    fn command(&mut self, p: &[u8], start: u64, now: u64, ctx: &mut Ctx<'_>) {
        if self.server_resync {
            // The answers to earlier commands were damaged; this command is the boundary.
            while let Some(f) = self.inflight.pop_front() {
                self.emit_partial(f, MissingReason::Gap, ctx);
            }
            self.server.reset();
            self.server_resync = false;
        }
        // Responses that could have ended without an optional EOF have ended.
        while self.inflight.front().is_some_and(|f| f.state.may_end()) {
            if let Some(f) = self.inflight.pop_front() {
                self.finish(f, ctx);
            }
        }
        let command = self.parse_command(p, ctx);
        *ctx.stats.commands.entry(command.name()).or_default() += 1;
        if matches!(command, Command::Quit) {
            self.quit_sent = true;
        }
        let state = match &command {
            Command::Query { .. } | Command::Execute { .. } | Command::ProcessInfo => RState::First,
            Command::Other { .. } => RState::First,
            Command::Fetch { stmt_id, .. } => {
                let cols = self
                    .stmts
                    .get(stmt_id)
                    .map(|s| s.columns.clone())
                    .unwrap_or_default();
                let f = self.push_inflight(command, start, now, RState::Rows);
                f.cur = Some(ResultBuild::new(true, cols));
                return;
            }
            Command::Prepare { .. } => RState::PrepFirst,
            Command::FieldList { .. } => RState::FieldList,
            Command::ChangeUser { .. } => RState::ChangeUser,
            Command::Statistics => RState::Text,
            Command::Quit | Command::CloseStmt { .. } | Command::SendLongData { .. } => {
                RState::Done
            }
            _ => RState::Simple,
        };
        if let Command::CloseStmt { stmt_id } = &command {
            self.stmts.remove(stmt_id);
        }
        if state == RState::Done && !self.inflight.is_empty() {
            // Earlier commands still wait for answers: keep the session's order.
            let f = self.push_inflight(command, start, now, RState::Done);
            f.results.push(Response::None);
            f.last_us = start;
            return;
        }
        if state == RState::Done {
            let seq = self.next_seq;
            self.next_seq += 1;
            let f = Inflight {
                seq,
                start_us: start,
                last_us: start,
                command,
                state,
                cur: None,
                results: smallvec![Response::None],
                prep: None,
                infile: None,
            };
            self.emit(f, ctx);
            return;
        }
        self.push_inflight(command, start, now, state);
    }

    fn push_inflight(
        &mut self,
        command: Command,
        start: u64,
        now: u64,
        state: RState,
    ) -> &mut Inflight {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.push_back(Inflight {
            seq,
            start_us: start,
            last_us: now,
            command,
            state,
            cur: None,
            results: SmallVec::new(),
            prep: None,
            infile: None,
        });
        self.inflight.back_mut().expect("just pushed")
    }

    fn parse_command(&mut self, p: &[u8], ctx: &mut Ctx<'_>) -> Command {
        let Some((&code, body)) = p.split_first() else {
            return Command::Other { code: 0, len: 0 };
        };
        let mut r = Reader::new(body);
        if self.answers_only {
            match Code::from(code) {
                Code::Query => {
                    return Command::Query {
                        sql: Vec::new(),
                        attrs: vec![],
                    }
                }
                Code::StmtPrepare => return Command::Prepare { sql: Vec::new() },
                Code::StmtExecute => {
                    if let (Some(stmt_id), Some(flags)) = (r.u32(), r.u8()) {
                        return Command::Execute {
                            stmt_id,
                            flags,
                            params: vec![],
                            prepare_seen: true,
                            raw_params: vec![],
                        };
                    }
                }
                _ => {}
            }
        }
        let secure_connection = self.caps.is_none_or(|c| c & caps::SECURE_CONNECTION != 0);
        let parsed = match Code::from(code) {
            Code::Query => Some(self.parse_query(body)),
            Code::StmtExecute => {
                let mut id = command::execute_statement_id(p);
                if id == Some(u32::MAX) {
                    // MariaDB: "the statement prepared last".
                    id = self.last_prepared.or(id);
                }
                let statement = id
                    .and_then(|id| self.stmts.get_mut(&id))
                    .map(|s| &mut s.shape);
                let cx = DecodeContext {
                    secure_connection,
                    query_attributes: self.query_attrs.unwrap_or(false),
                    statement,
                };
                command::decode(p, cx).map(|mut c| {
                    if let (Command::Execute { stmt_id, .. }, Some(id)) = (&mut c, id) {
                        *stmt_id = id;
                    }
                    c
                })
            }
            _ => command::decode(
                p,
                DecodeContext {
                    secure_connection,
                    ..Default::default()
                },
            ),
        };
        parsed.unwrap_or_else(|| {
            let code = Code::from(code);
            if code.is_decoded() || matches!(code, Code::Sleep | Code::Unknown(_)) {
                self.anomaly(
                    Direction::ClientToServer,
                    Anomaly::Command(code.byte()),
                    ctx,
                );
            }
            Command::Other {
                code: code.byte(),
                len: p.len() as u32,
            }
        })
    }

    fn parse_query(&mut self, body: &[u8]) -> Command {
        let use_attrs = match self.query_attrs {
            Some(known) => known,
            // Mid-stream: the prefix is there when its bytes parse as one and the rest reads
            // as SQL text.
            None => {
                let guess = command::query_attributes_block(body)
                    .is_some_and(|(_, sql)| looks_like_sql(sql) && !looks_like_sql(body));
                if guess {
                    self.query_attrs = Some(true);
                } else if looks_like_sql(body) {
                    self.query_attrs = Some(false);
                }
                guess
            }
        };
        command::decode_query(body, use_attrs)
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
                if matches!(self.phase, Phase::Encrypted | Phase::Done) {
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
            if self.server_resync || matches!(self.phase, Phase::Encrypted | Phase::Done) {
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
                Some(0xff) => {
                    let e = parse_err(p);
                    ctx.stats.logins_failed += 1;
                    self.login = Login::Failed {
                        code: e.code,
                        message: e.message,
                    };
                    self.phase = Phase::Done;
                }
                _ => {}
            },
            Phase::Command => self.response(p, now, ctx),
            _ => {}
        }
    }

    fn greeting(&mut self, p: &[u8], ctx: &mut Ctx<'_>) {
        match p.first() {
            Some(0xff) => {
                let e = parse_err(p);
                ctx.stats.logins_failed += 1;
                self.login = Login::Failed {
                    code: e.code,
                    message: e.message,
                };
                self.phase = Phase::Done;
                self.attach(None, None, false, ctx);
            }
            Some(0x0a) => {
                let mut r = Reader::new(&p[1..]);
                self.server_version = Some(r.cstr_or_rest().to_vec());
                self.connection_id = r.u32();
                let rest = (|| {
                    r.skip(9)?;
                    let low = r.u16()? as u32;
                    let mut c = low;
                    let mut ext = 0;
                    if !r.is_empty() {
                        r.u8()?;
                        r.u16()?;
                        c |= (r.u16()? as u32) << 16;
                        r.u8()?;
                        let reserved = r.take(10)?;
                        ext = u32::from_le_bytes([
                            reserved[6],
                            reserved[7],
                            reserved[8],
                            reserved[9],
                        ]);
                    }
                    Some((c, ext))
                })();
                let (c, ext) = rest.unwrap_or((0, 0));
                self.server_caps = Some(c);
                self.server_ext_caps = if c & caps::LONG_PASSWORD == 0 { ext } else { 0 };
                self.phase = Phase::AwaitLogin;
            }
            Some(0x09) => {
                let mut r = Reader::new(&p[1..]);
                self.server_version = Some(r.cstr_or_rest().to_vec());
                self.connection_id = r.u32();
                self.server_caps = Some(0);
                self.phase = Phase::AwaitLogin;
            }
            _ => {
                self.anomaly(Direction::ServerToClient, Anomaly::NotAGreeting, ctx);
                self.phase = Phase::Unattached;
                self.client_resync = true;
                self.server_resync = true;
            }
        }
    }

    fn response(&mut self, p: &[u8], now: u64, ctx: &mut Ctx<'_>) {
        // Responses that may have ended without an EOF: this packet decides.
        while self.inflight.len() > 1 && self.inflight.front().is_some_and(|f| f.state.may_end()) {
            let ends = !(p.first() == Some(&0xfe) && p.len() <= 5);
            if ends {
                if let Some(f) = self.inflight.pop_front() {
                    self.finish(f, ctx);
                }
            } else {
                break;
            }
        }
        let sess_track = self.caps.unwrap_or(0) & caps::SESSION_TRACK != 0;
        let ext_caps = self.ext_caps;
        let Some(f) = self.inflight.front_mut() else {
            ctx.stats.unsolicited_packets += 1;
            return;
        };
        f.last_us = now;
        let first = p.first().copied();
        let is_eof = first == Some(0xfe) && p.len() <= 5;
        let is_err = first == Some(0xff);
        let mut learned_eof: Option<bool> = None;
        let mut prepared: Option<(u32, Stmt)> = None;
        match f.state {
            RState::First => match first {
                Some(0xff) => {
                    let e = parse_err(p);
                    if e.code == 0xffff {
                        return; // MariaDB progress report
                    }
                    f.results.push(Response::Err(e));
                    f.state = RState::Done;
                }
                Some(0x00) if !p.is_empty() => {
                    let ok = parse_ok(p, sess_track);
                    let more = ok.status & STATUS_MORE_RESULTS != 0;
                    f.results.push(Response::Ok(ok));
                    f.state = if more { RState::First } else { RState::Done };
                }
                Some(0xfb) => {
                    self.infile_requests += 1;
                    f.infile = Some(p[1..].to_vec());
                    f.state = RState::Infile;
                }
                _ => {
                    let mut r = Reader::new(p);
                    match r.lenenc() {
                        Some(n) if n > 0 && n <= 4096 => {
                            let binary = matches!(f.command, Command::Execute { .. });
                            let metadata_follows =
                                if binary && ext_caps & caps::MARIADB_CACHE_METADATA != 0 {
                                    r.u8().unwrap_or(1) != 0
                                } else {
                                    true
                                };
                            if metadata_follows {
                                self.column_sets.begin();
                                f.cur = Some(ResultBuild::new(binary, Arc::default()));
                                f.state = RState::Cols { left: n };
                            } else {
                                let cols = match &f.command {
                                    Command::Execute { stmt_id, .. } => self
                                        .stmts
                                        .get(stmt_id)
                                        .map(|s| s.columns.clone())
                                        .unwrap_or_default(),
                                    _ => Arc::default(),
                                };
                                f.cur = Some(ResultBuild::new(binary, cols));
                                f.state = RState::ColsEof;
                            }
                        }
                        _ => {
                            let at = anomaly_at(
                                self.session,
                                Direction::ServerToClient,
                                self.received[1],
                                &self.server,
                                Anomaly::UnexpectedResponse,
                            );
                            ctx.stats.anomaly(at, 1);
                            f.state = RState::Done;
                            f.results
                                .push(Response::Missing(MissingReason::Undecodable));
                        }
                    }
                }
            },
            RState::Cols { left } => {
                if is_err {
                    let e = parse_err(p);
                    let cur = f.cur.take().map(|mut c| {
                        c.columns = self.column_sets.finish(
                            ctx.stats,
                            anomaly_at(
                                self.session,
                                Direction::ServerToClient,
                                self.received[1],
                                &self.server,
                                Anomaly::MalformedColumnDefinition,
                            ),
                        );
                        c.finish(0, 0, Some(e.clone()))
                    });
                    f.results
                        .push(cur.map(Response::Rows).unwrap_or(Response::Err(e)));
                    f.state = RState::Done;
                } else {
                    self.column_sets.push(p);
                    f.state = if left <= 1 {
                        // The rows that follow are read against the columns.
                        if let Some(c) = f.cur.as_mut() {
                            c.columns = self.column_sets.finish(
                                ctx.stats,
                                anomaly_at(
                                    self.session,
                                    Direction::ServerToClient,
                                    self.received[1],
                                    &self.server,
                                    Anomaly::MalformedColumnDefinition,
                                ),
                            );
                        }
                        RState::ColsEof
                    } else {
                        RState::Cols { left: left - 1 }
                    };
                }
            }
            RState::ColsEof => {
                if is_eof {
                    learned_eof = Some(false);
                    let (warnings, status) = parse_eof(p);
                    if status & STATUS_CURSOR_EXISTS != 0 {
                        // Rows come later, through COM_STMT_FETCH.
                        if let Some(c) = f.cur.take() {
                            if let Command::Execute { stmt_id, .. } = f.command {
                                prepared = Some((
                                    stmt_id,
                                    Stmt {
                                        columns: c.columns.clone(),
                                        ..Default::default()
                                    },
                                ));
                            }
                            f.results
                                .push(Response::Rows(c.finish(status, warnings, None)));
                        }
                        f.state = RState::Done;
                    } else {
                        f.state = RState::Rows;
                    }
                } else {
                    learned_eof = Some(true);
                    f.state = RState::Rows;
                    Self::rows_packet(f, p, sess_track);
                }
            }
            RState::Rows => Self::rows_packet(f, p, sess_track),
            RState::PrepFirst => {
                if is_err {
                    f.results.push(Response::Err(parse_err(p)));
                    f.state = RState::Done;
                } else {
                    let mut r = Reader::new(p);
                    let parsed = (|| {
                        r.u8()?;
                        let id = r.u32()?;
                        let cols = r.u16()?;
                        let params = r.u16()?;
                        r.u8();
                        let warnings = r.u16().unwrap_or(0);
                        Some(Prepared {
                            stmt_id: id,
                            params,
                            columns: cols,
                            warnings,
                            param_defs: vec![],
                            column_defs: vec![],
                        })
                    })();
                    match parsed {
                        Some(prep) => {
                            f.state = if prep.params > 0 {
                                RState::PrepParams { left: prep.params }
                            } else if prep.columns > 0 {
                                RState::PrepCols { left: prep.columns }
                            } else {
                                RState::Done
                            };
                            f.prep = Some(prep);
                        }
                        None => {
                            f.results
                                .push(Response::Missing(MissingReason::Undecodable));
                            f.state = RState::Done;
                        }
                    }
                }
            }
            RState::PrepParams { left } => {
                let col = parse_column(p).unwrap_or_default();
                if let Some(prep) = f.prep.as_mut() {
                    prep.param_defs.push(col);
                }
                f.state = if left > 1 {
                    RState::PrepParams { left: left - 1 }
                } else {
                    match self.deprecate_eof {
                        Some(true) => Self::after_params(f),
                        Some(false) => RState::PrepParamsEof,
                        None => RState::PrepParamsEof,
                    }
                };
            }
            RState::PrepParamsEof => {
                if is_eof {
                    learned_eof = Some(false);
                    f.state = Self::after_params(f);
                } else {
                    learned_eof = Some(true);
                    f.state = Self::after_params(f);
                    if let RState::PrepCols { left } = f.state {
                        if let Some(prep) = f.prep.as_mut() {
                            prep.column_defs.push(parse_column(p).unwrap_or_default());
                        }
                        f.state = if left > 1 {
                            RState::PrepCols { left: left - 1 }
                        } else {
                            RState::PrepColsEof
                        };
                    }
                }
            }
            RState::PrepCols { left } => {
                if let Some(prep) = f.prep.as_mut() {
                    prep.column_defs.push(parse_column(p).unwrap_or_default());
                }
                f.state = if left > 1 {
                    RState::PrepCols { left: left - 1 }
                } else if self.deprecate_eof == Some(true) {
                    RState::Done
                } else {
                    RState::PrepColsEof
                };
            }
            RState::PrepColsEof => {
                if is_eof {
                    learned_eof = Some(false);
                }
                f.state = RState::Done;
            }
            RState::FieldList => {
                if f.cur.is_none() {
                    self.column_sets.begin();
                    f.cur = Some(ResultBuild::new(false, Arc::default()));
                }
                if is_err {
                    let e = parse_err(p);
                    f.cur = None;
                    f.results.push(Response::Err(e));
                    f.state = RState::Done;
                } else if first == Some(0xfe) {
                    let (warnings, status) = parse_eof(p);
                    if let Some(mut c) = f.cur.take() {
                        c.columns = self.column_sets.finish(
                            ctx.stats,
                            anomaly_at(
                                self.session,
                                Direction::ServerToClient,
                                self.received[1],
                                &self.server,
                                Anomaly::MalformedColumnDefinition,
                            ),
                        );
                        f.results
                            .push(Response::Rows(c.finish(status, warnings, None)));
                    }
                    f.state = RState::Done;
                } else {
                    self.column_sets.push(p);
                }
            }
            RState::ChangeUser => match first {
                Some(0x00) => {
                    f.results.push(Response::Ok(parse_ok(p, sess_track)));
                    f.state = RState::Done;
                }
                Some(0xff) => {
                    f.results.push(Response::Err(parse_err(p)));
                    f.state = RState::Done;
                }
                _ => {} // auth switch / more data
            },
            RState::Simple => {
                match first {
                    Some(0xff) => f.results.push(Response::Err(parse_err(p))),
                    Some(0xfe) if p.len() <= 5 => {
                        let (warnings, status) = parse_eof(p);
                        f.results.push(Response::Ok(OkInfo {
                            status,
                            warnings,
                            ..Default::default()
                        }));
                    }
                    _ => f.results.push(Response::Ok(parse_ok(p, sess_track))),
                }
                f.state = RState::Done;
            }
            RState::Text => {
                f.results.push(if is_err {
                    Response::Err(parse_err(p))
                } else {
                    Response::Text(p.to_vec())
                });
                f.state = RState::Done;
            }
            RState::Infile => {
                let then = if is_err {
                    Response::Err(parse_err(p))
                } else {
                    Response::Ok(parse_ok(p, sess_track))
                };
                let more =
                    matches!(&then, Response::Ok(ok) if ok.status & STATUS_MORE_RESULTS != 0);
                f.results.push(Response::LocalInfile {
                    filename: f.infile.take().unwrap_or_default(),
                    then: Some(Box::new(then)),
                });
                f.state = if more { RState::First } else { RState::Done };
            }
            RState::Done => {
                ctx.stats.unsolicited_packets += 1;
            }
        }
        if let Some(l) = learned_eof {
            if self.caps.is_none() {
                self.deprecate_eof = Some(l);
            }
        }
        let done = self
            .inflight
            .front()
            .is_some_and(|f| f.state == RState::Done);
        if done {
            if let Some(f) = self.inflight.pop_front() {
                if let (Command::Prepare { .. }, Some(prep)) = (&f.command, &f.prep) {
                    prepared = Some((
                        prep.stmt_id,
                        Stmt {
                            shape: Statement {
                                params: prep.params,
                                types: vec![],
                            },
                            columns: prep.column_defs.as_slice().into(),
                        },
                    ));
                    self.last_prepared = Some(prep.stmt_id);
                }
                if let Some((id, stmt)) = prepared.take() {
                    match self.stmts.get_mut(&id) {
                        // A cursor's columns, for the FETCHes that follow.
                        Some(s) if matches!(f.command, Command::Execute { .. }) => {
                            s.columns = stmt.columns
                        }
                        _ => {
                            self.stmts.insert(id, stmt);
                        }
                    }
                }
                self.finish(f, ctx);
            }
            // Commands without an answer queued behind it are complete too.
            while self
                .inflight
                .front()
                .is_some_and(|f| f.state == RState::Done)
            {
                if let Some(f) = self.inflight.pop_front() {
                    self.finish(f, ctx);
                }
            }
        }
    }

    fn after_params(f: &Inflight) -> RState {
        match f.prep.as_ref() {
            Some(p) if p.columns > 0 => RState::PrepCols { left: p.columns },
            _ => RState::Done,
        }
    }

    /// A row of the result being read (none: the result's start was not seen).
    fn row(f: &mut Inflight, p: &[u8]) {
        if let Some(c) = f.cur.as_mut() {
            c.row(p);
        }
    }

    fn rows_packet(f: &mut Inflight, p: &[u8], sess_track: bool) {
        if !ends_rows(p) {
            return Self::row(f, p);
        }
        if p.first() == Some(&0xfe) {
            let (warnings, status) = if p.len() <= 5 {
                parse_eof(p)
            } else {
                let ok = parse_ok(p, sess_track);
                (ok.warnings, ok.status)
            };
            let cur = f
                .cur
                .take()
                .unwrap_or_else(|| ResultBuild::new(false, Arc::default()));
            f.results
                .push(Response::Rows(cur.finish(status, warnings, None)));
            f.state = if status & STATUS_MORE_RESULTS != 0
                && !matches!(f.command, Command::Fetch { .. })
            {
                RState::First
            } else {
                RState::Done
            };
        } else {
            let e = parse_err(p);
            let cur = f
                .cur
                .take()
                .unwrap_or_else(|| ResultBuild::new(false, Arc::default()));
            f.results.push(Response::Rows(cur.finish(0, 0, Some(e))));
            f.state = RState::Done;
        }
    }

    fn finish(&mut self, mut f: Inflight, ctx: &mut Ctx<'_>) {
        if let Some(prep) = f.prep.take() {
            if f.results.is_empty() {
                f.results.push(Response::Prepared(prep));
            }
        }
        if f.results.is_empty() {
            f.results
                .push(Response::Missing(MissingReason::Undecodable));
        }
        self.emit(f, ctx);
    }

    /// Emits an exchange whose answer is incomplete.
    fn emit_partial(&mut self, mut f: Inflight, reason: MissingReason, ctx: &mut Ctx<'_>) {
        if f.state.may_end() {
            return self.finish(f, ctx);
        }
        if let Some(mut c) = f.cur.take() {
            if matches!(f.state, RState::Cols { .. } | RState::FieldList) {
                // Cut off among its column definitions: the ones that came.
                c.columns = self.column_sets.finish(
                    ctx.stats,
                    anomaly_at(
                        self.session,
                        Direction::ServerToClient,
                        self.received[1],
                        &self.server,
                        Anomaly::MalformedColumnDefinition,
                    ),
                );
            }
            let mut rs = c.finish(0, 0, None);
            rs.complete = false;
            f.results.push(Response::Rows(rs));
        } else if let Some(mut prep) = f.prep.take() {
            if prep.param_defs.len() < prep.params as usize
                || prep.column_defs.len() < prep.columns as usize
            {
                prep.column_defs.clear();
            }
            f.results.push(Response::Prepared(prep));
        }
        if f.results.is_empty() {
            ctx.stats.responses_missing += 1;
            f.results.push(Response::Missing(reason));
        }
        self.emit(f, ctx);
    }

    fn emit(&mut self, f: Inflight, ctx: &mut Ctx<'_>) {
        let Some(session) = self.session else { return };
        ctx.stats.exchanges += 1;
        let mut results = f.results.into_iter();
        let response = results
            .next()
            .unwrap_or(Response::Missing(MissingReason::Undecodable));
        let end_us = if matches!(response, Response::None) {
            f.start_us
        } else {
            f.last_us.max(f.start_us)
        };
        ctx.events.push(Event::Exchange(Exchange {
            session,
            seq: f.seq,
            clone: 0,
            scheduled_us: None,
            start_us: f.start_us,
            end_us,
            command: f.command,
            response,
            more: results.collect(),
        }));
    }
}

enum Framing {
    Plain,
    Compressed,
}

/// Whether `data` starts with a command packet a client could have sent, and in which framing.
fn plausible_command(data: &[u8], compressed_known: bool) -> Option<Framing> {
    if data.len() < 5 {
        return None;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
    let seq = data[3];
    let cmd = data[4];
    if !compressed_known && seq == 0 && len >= 1 && plausible_payload(cmd, len, &data[4..]) {
        return Some(Framing::Plain);
    }
    // Compressed: clen(3) seq(1) ulen(3), then either raw packets or zlib.
    if data.len() >= 8 {
        let ulen = u32::from_le_bytes([data[4], data[5], data[6], 0]) as usize;
        if ulen == 0 {
            let inner = &data[7..];
            if inner.len() >= 5 {
                let ilen = u32::from_le_bytes([inner[0], inner[1], inner[2], 0]) as usize;
                if inner[3] == 0
                    && ilen + 4 <= len
                    && plausible_payload(inner[4], ilen, &inner[4..])
                {
                    return Some(Framing::Compressed);
                }
            }
        } else if data[7] == 0x78 && ulen >= len.saturating_sub(16) && seq == 0 {
            return Some(Framing::Compressed);
        }
    }
    None
}

fn plausible_payload(cmd: u8, len: usize, payload: &[u8]) -> bool {
    match Code::from(cmd) {
        Code::Quit
        | Code::Statistics
        | Code::ProcessInfo
        | Code::Debug
        | Code::Ping
        | Code::ResetConnection => len == 1,
        Code::InitDb | Code::Query | Code::StmtPrepare => {
            let text = payload.get(1..payload.len().min(len)).unwrap_or_default();
            len > 1
                && (looks_like_sql(text)
                    || command::query_attributes_block(text)
                        .is_some_and(|(_, s)| looks_like_sql(s)))
        }
        Code::FieldList | Code::ChangeUser => len > 1,
        Code::ProcessKill | Code::StmtClose | Code::StmtReset => len == 5,
        Code::StmtExecute => len >= 10,
        Code::StmtSendLongData => len >= 7,
        Code::SetOption => len == 3,
        Code::StmtFetch => len == 9,
        _ => false,
    }
}

/// Text that could be the start of an SQL statement (allowing for a cut-off end).
fn looks_like_sql(b: &[u8]) -> bool {
    let head = &b[..b.len().min(64)];
    !head.is_empty()
        && head
            .iter()
            .all(|&c| c >= 0x20 || c == b'\n' || c == b'\r' || c == b'\t')
        && head.iter().any(|c| {
            c.is_ascii_alphabetic() || *c == b'(' || *c == b'/' || *c == b'-' || *c == b'#'
        })
}

fn looks_like_greeting(data: &[u8]) -> bool {
    if data.len() < 10 {
        return false;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
    let proto = data[4];
    data[3] == 0
        && (proto == 0x0a || proto == 0x09)
        && len + 4 <= data.len() + 64
        && data[5].is_ascii_digit()
        && data[5..].iter().take(64).position(|&b| b == 0).is_some()
}

/// An ERR a server sends instead of its greeting ("Host is blocked", "Too many connections"):
/// packet 0, alone in the segment, with an error code and no SQL state, since nothing has been
/// negotiated yet (every ERR after a 4.1 login has one).
fn looks_like_refusal(data: &[u8]) -> bool {
    match crate::framing::whole_packet(data) {
        Some((0, p, rest)) => {
            rest.is_empty()
                && p.len() > 3
                && p[0] == 0xff
                && u16::from_le_bytes([p[1], p[2]]) >= 1000
                && p[3] != b'#'
        }
        _ => false,
    }
}

/// An ERR packet's code, SQL state and message.
pub fn parse_err(p: &[u8]) -> ErrInfo {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    let code = r.u16().unwrap_or(0);
    let state = if r.rest().first() == Some(&b'#') {
        r.skip(1);
        r.take(5).unwrap_or_default().to_vec()
    } else {
        Vec::new()
    };
    ErrInfo {
        code,
        state,
        message: r.rest().to_vec(),
    }
}

fn parse_ok(p: &[u8], session_track: bool) -> OkInfo {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    let mut ok = OkInfo {
        affected_rows: r.lenenc().unwrap_or(0),
        last_insert_id: r.lenenc().unwrap_or(0),
        status: r.u16().unwrap_or(0),
        warnings: r.u16().unwrap_or(0),
        info: Vec::new(),
    };
    ok.info = if session_track {
        r.lenenc_bytes().unwrap_or_default().to_vec()
    } else {
        r.rest().to_vec()
    };
    ok
}

/// (warnings, status) of an EOF packet.
fn parse_eof(p: &[u8]) -> (u16, u16) {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    (r.u16().unwrap_or(0), r.u16().unwrap_or(0))
}

/// ColumnDefinition41 (with MariaDB's optional extended metadata).
fn parse_column(p: &[u8]) -> Option<Column> {
    let mut r = Reader::new(p);
    r.lenenc_bytes()?; // catalog
    r.lenenc_bytes()?; // schema
    let table = r.lenenc_bytes()?.to_vec();
    r.lenenc_bytes()?; // org_table
    let name = r.lenenc_bytes()?.to_vec();
    r.lenenc_bytes()?; // org_name
    let mut fixed = r.lenenc()?;
    if fixed != 0x0c || r.remaining() < 12 {
        // MariaDB extended metadata precedes the fixed-length fields.
        r.skip(fixed as usize)?;
        fixed = r.lenenc()?;
    }
    if fixed < 12 {
        return None;
    }
    let charset = r.u16()?;
    let length = r.u32()?;
    let column_type = r.u8()?;
    let flags = r.u16()?;
    let decimals = r.u8()?;
    Some(Column {
        name,
        table,
        column_type,
        flags,
        charset,
        decimals,
        length,
    })
}

#[cfg(test)]
mod tests;
