//! The event model: what one run of a workload against one server looked like.
//!
//! A capture and a replay produce the same events, so every consumer (inspect, replay, analyze)
//! reads one model. Strings that come off the wire (SQL, names, messages) are kept as bytes: the
//! wire does not promise UTF-8, and a faithful replay must send back exactly what was sent.

use std::sync::Arc;

use bincode::{Decode, Encode};

/// Identifies a session within one run. Captures number sessions in the order they were seen.
pub type SessionId = u64;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Event {
    SessionStart(SessionStart),
    Exchange(Exchange),
    Gap(Gap),
    SessionEnd(SessionEnd),
    /// Format version 2: what the run learned about a session that began before it.
    /// (Appended last: version-1 files decode unchanged.)
    Backfill(Backfill),
    /// Format version 3: the first rows of an exchange's answer, right after the exchange
    /// (see [`crate::sample`]). (Appended last: older files decode unchanged.)
    Rows(crate::sample::RowSample),
    /// Format version 4: how a replay under `--sync` ran an exchange against the recorded
    /// order, written just before the exchange, for exchanges with a label only. (Appended
    /// last: older files decode unchanged.)
    Label(OrderLabel),
    /// Format version 5: a step of a replay's load ramp (`replay --ramp`), written when the
    /// step starts and again when it ends. (Appended last: older files decode unchanged.)
    Phase(Phase),
}

/// One step of a load ramp: the recording replayed at `multiple` × its recorded load, by
/// `clones` clones of every session (numbered from `first_clone` in the run, so the steps'
/// exchanges never share a key) at `speed` × the recorded pace.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Phase {
    /// The step's place in the ramp, from 0.
    pub index: u32,
    /// Load asked, as a multiple of the recorded load (`clones` × `speed`).
    pub multiple: f64,
    pub first_clone: u32,
    pub clones: u32,
    pub speed: f64,
    /// When the step started, or (with `end`) ended.
    pub at_us: u64,
    /// Set on the event that ends the step.
    pub end: Option<PhaseEnd>,
}

/// The clones of each step of a ramp at these multiples of the recorded load: floor(m), at
/// least one (the rest of m is taken by speed). A replay numbers the steps' clones on from
/// the previous step's, so the clones of step k are the next `clones[k]` after those of the
/// steps before it; analyze finds a ramp run's steps from its header by this too.
pub fn ramp_clones(multiples: &[f64]) -> Vec<u32> {
    // 2.9999999 is 3 clones, not 2 at 1.5 × the pace.
    multiples
        .iter()
        .map(|m| ((m + 1e-9).floor() as u32).max(1))
        .collect()
}

/// How a ramp step ended.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct PhaseEnd {
    /// Why the step was cut short (the candidate could not keep up: start lag or errors over
    /// the ramp's limits, or a stop request); `None` when it replayed all it had to.
    pub stopped: Option<String>,
    /// Exchanges the step replayed, those that started later than the ramp's lag limit, and
    /// those that failed where the recording had no error.
    pub exchanges: u64,
    pub late: u64,
    pub new_errors: u64,
}

/// How a replay under `--sync` ran one exchange against the recorded order: what can make its
/// answer differ from production's (or another replay's) without the server being at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct OrderLabel {
    pub session: SessionId,
    pub seq: u64,
    pub clone: u32,
    /// Its exchange's start (a run merged from several files keeps it by its exchange).
    pub at_us: u64,
    /// [`OrderLabel::AMBIGUOUS`], [`OrderLabel::OUT_OF_ORDER`], [`OrderLabel::UNPINNED`],
    /// [`OrderLabel::LOCK_CONFLICT`], [`OrderLabel::AFTER_DIVERGENCE`].
    pub labels: u8,
}

impl OrderLabel {
    /// A read whose recorded interval (or its transaction's first read's) overlapped a commit
    /// of another session: production's order between them is unknown.
    pub const AMBIGUOUS: u8 = 1;
    /// Its wait for the recorded order gave way (the session it waited for was blocked in
    /// the target, or `--sync-timeout`): it ran out of the recorded order.
    pub const OUT_OF_ORDER: u8 = 2;
    /// `--pin` was on but the target had refused a pin in this session: production's
    /// timestamp / insert id were not pinned for it.
    pub const UNPINNED: u8 = 4;
    /// A deadlock or a lock wait timeout on one side only (the recording's or this run's):
    /// the engine's choice among transactions that the replay's timing changed.
    pub const LOCK_CONFLICT: u8 = 8;
    /// It touches rows that an earlier write of this run left different from production's
    /// (a write whose outcome differed, or one that went out of the recorded order), or
    /// follows, in its transaction, a deadlock on one side only.
    pub const AFTER_DIVERGENCE: u8 = 16;

    /// The labels' names, in a fixed order.
    pub fn names(labels: u8) -> Vec<&'static str> {
        [
            (Self::AMBIGUOUS, "order-ambiguous"),
            (Self::OUT_OF_ORDER, "out-of-order"),
            (Self::UNPINNED, "unpinned"),
            (Self::LOCK_CONFLICT, "lock-conflict"),
            (Self::AFTER_DIVERGENCE, "after-divergence"),
        ]
        .into_iter()
        .filter(|(bit, _)| labels & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
}

impl Event {
    /// The exchange, when this event is one.
    pub fn as_exchange(&self) -> Option<&Exchange> {
        match self {
            Event::Exchange(x) => Some(x),
            _ => None,
        }
    }

    /// The session the event belongs to; `None` for a run-wide event (a ramp's `Phase`).
    pub fn session(&self) -> Option<SessionId> {
        Some(match self {
            Event::SessionStart(s) => s.session,
            Event::Exchange(e) => e.session,
            Event::Gap(g) => g.session,
            Event::SessionEnd(e) => e.session,
            Event::Backfill(b) => b.session,
            Event::Rows(r) => r.session,
            Event::Label(l) => l.session,
            Event::Phase(_) => return None,
        })
    }

    /// Short name used by `inspect` and the JSON output.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::SessionStart(_) => "session_start",
            Event::Exchange(_) => "exchange",
            Event::Gap(_) => "gap",
            Event::SessionEnd(_) => "session_end",
            Event::Backfill(_) => "backfill",
            Event::Rows(_) => "row_sample",
            Event::Label(_) => "order_label",
            Event::Phase(_) => "phase",
        }
    }
}

/// A client connection, as far as the run knows it.
#[derive(Debug, Clone, PartialEq, Default, Encode, Decode)]
pub struct SessionStart {
    pub session: SessionId,
    /// `ip:port` of the client and the server.
    pub client: String,
    pub server: String,
    /// Wall clock, µs since the Unix epoch, of the first packet of the session seen.
    pub start_us: u64,
    pub user: Option<Vec<u8>>,
    pub db: Option<Vec<u8>>,
    pub server_version: Option<Vec<u8>>,
    pub connection_id: Option<u32>,
    /// Capability flags in force (client ∩ server), when the handshake was seen.
    pub capabilities: Option<u32>,
    /// No handshake in the capture: attached at the first plausible command.
    pub mid_stream: bool,
    /// The client switched to TLS (SSLRequest); nothing after that can be decoded.
    pub encrypted: bool,
    /// The compressed protocol is in use.
    pub compressed: bool,
    /// Replay only: which clone of the recorded session this is (0 for captures).
    pub clone: u32,
}

/// What a run knows of a session that began before it (mid-stream: no handshake, no
/// PREPAREs): from the server's own tables (`capture --server`, `--backfill FILE`), or
/// inferred from another session's PREPARE when the evidence allows only that one.
///
/// A server backfill comes right after its session's `SessionStart` (which then carries the
/// user and database); an inferred one right before the first exchange that needed it.
/// Replay prepares `statements` on the target under their recorded ids and sets `variables`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct Backfill {
    pub session: SessionId,
    pub at_us: u64,
    pub source: BackfillSource,
    pub user: Option<Vec<u8>>,
    pub db: Option<Vec<u8>>,
    /// Session variables as the server reported them: (name, value).
    pub variables: Vec<(Vec<u8>, Vec<u8>)>,
    pub statements: Vec<KnownStatement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub enum BackfillSource {
    /// The server's performance_schema, connection `connection_id` (its processlist id).
    Server { connection_id: u64 },
    /// The PREPARE was seen on session `from_session` of this run; id, parameters and
    /// columns agreed, and no other PREPARE did.
    Inferred { from_session: SessionId },
    #[default]
    Unknown,
}

/// A prepared statement the session held: the id its EXECUTEs name, its SQL text, its
/// parameter count.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct KnownStatement {
    pub id: u32,
    pub sql: Vec<u8>,
    pub params: u16,
}

/// One command and the server's answer to it.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Exchange {
    pub session: SessionId,
    /// Position of this exchange in its session, from 0.
    pub seq: u64,
    /// Replay only: clone number (0 for captures and the first clone).
    pub clone: u32,
    /// Replay only: when the scheduler meant to send it (µs since the epoch).
    pub scheduled_us: Option<u64>,
    /// First byte of the request (µs since the epoch).
    pub start_us: u64,
    /// Last byte of the response, or `start_us` when there is none.
    pub end_us: u64,
    pub command: Command,
    pub response: Response,
    /// Further results of the same command (MORE_RESULTS_EXISTS: multi-statements, CALL).
    pub more: Vec<Response>,
}

impl Exchange {
    /// Rows over all result sets of this exchange.
    pub fn total_rows(&self) -> u64 {
        std::iter::once(&self.response)
            .chain(&self.more)
            .map(|r| match r {
                Response::Rows(rs) => rs.rows,
                _ => 0,
            })
            .sum()
    }
}

/// Bytes lost in one direction of a session (a segment missing from the capture).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Gap {
    pub session: SessionId,
    pub direction: Direction,
    pub at_us: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct SessionEnd {
    pub session: SessionId,
    pub end_us: u64,
    pub reason: EndReason,
    pub login: Login,
    pub exchanges: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum EndReason {
    /// The client sent COM_QUIT.
    Quit,
    /// A FIN was seen.
    Closed,
    /// A RST was seen.
    Reset,
    /// No packet for longer than the idle timeout.
    Idle,
    /// The capture (or replay) ended with the session still open.
    EndOfRun,
    /// Replay: the session could not go on (the server went away, or its task failed: see
    /// the run's errors).
    Lost,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Login {
    /// Not seen (mid-stream session).
    Unknown,
    Ok,
    Failed {
        code: u16,
        message: Vec<u8>,
    },
    /// The session switched to TLS before authenticating.
    Encrypted,
}

/// A MySQL command, with what is needed to send it again.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Command {
    Query {
        sql: Vec<u8>,
        /// Query attributes sent with the query (CLIENT_QUERY_ATTRIBUTES).
        attrs: Vec<(Vec<u8>, Value)>,
    },
    InitDb {
        db: Vec<u8>,
    },
    FieldList {
        table: Vec<u8>,
        wildcard: Vec<u8>,
    },
    Prepare {
        sql: Vec<u8>,
    },
    Execute {
        stmt_id: u32,
        flags: u8,
        /// Typed parameters, when the statement's PREPARE was seen.
        params: Vec<Param>,
        /// The PREPARE of this statement was not in the capture: `raw_params` holds the undecoded
        /// parameter block and `params` is empty.
        prepare_seen: bool,
        raw_params: Vec<u8>,
    },
    SendLongData {
        stmt_id: u32,
        param: u16,
        data: Vec<u8>,
    },
    CloseStmt {
        stmt_id: u32,
    },
    ResetStmt {
        stmt_id: u32,
    },
    Fetch {
        stmt_id: u32,
        rows: u32,
    },
    ChangeUser {
        user: Vec<u8>,
        db: Option<Vec<u8>>,
    },
    Ping,
    Quit,
    Statistics,
    ProcessInfo,
    ProcessKill {
        id: u32,
    },
    Debug,
    SetOption {
        option: u16,
    },
    ResetConnection,
    /// Any other command byte, with the payload length.
    Other {
        code: u8,
        len: u32,
    },
}

impl Command {
    /// snake_case name as used by `inspect` and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Query { .. } => "query",
            Command::InitDb { .. } => "init_db",
            Command::FieldList { .. } => "field_list",
            Command::Prepare { .. } => "prepare",
            Command::Execute { .. } => "execute",
            Command::SendLongData { .. } => "send_long_data",
            Command::CloseStmt { .. } => "close_stmt",
            Command::ResetStmt { .. } => "reset_stmt",
            Command::Fetch { .. } => "fetch",
            Command::ChangeUser { .. } => "change_user",
            Command::Ping => "ping",
            Command::Quit => "quit",
            Command::Statistics => "statistics",
            Command::ProcessInfo => "process_info",
            Command::ProcessKill { .. } => "process_kill",
            Command::Debug => "debug",
            Command::SetOption { .. } => "set_option",
            Command::ResetConnection => "reset_connection",
            Command::Other { .. } => "other",
        }
    }

    /// SQL text for query and prepare.
    pub fn sql(&self) -> Option<&[u8]> {
        match self {
            Command::Query { sql, .. } | Command::Prepare { sql } => Some(sql),
            _ => None,
        }
    }

    /// Statement id for the commands that name one.
    pub fn stmt_id(&self) -> Option<u32> {
        match self {
            Command::Execute { stmt_id, .. }
            | Command::SendLongData { stmt_id, .. }
            | Command::CloseStmt { stmt_id }
            | Command::ResetStmt { stmt_id }
            | Command::Fetch { stmt_id, .. } => Some(*stmt_id),
            _ => None,
        }
    }

    /// Whether the server answers this command at all.
    pub fn expects_response(&self) -> bool {
        !matches!(
            self,
            Command::Quit | Command::CloseStmt { .. } | Command::SendLongData { .. }
        )
    }
}

/// A bound parameter of COM_STMT_EXECUTE.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Param {
    /// MySQL column type code (MYSQL_TYPE_*).
    pub column_type: u8,
    pub unsigned: bool,
    pub value: Value,
}

/// A MySQL value; the same model as `mysql_common::value::Value`, so capture and replay agree.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Value {
    Null,
    Bytes(Vec<u8>),
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// year, month, day, hour, minute, second, µs
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// negative, days, hours, minutes, seconds, µs
    Time(bool, u32, u8, u8, u8, u32),
}

/// The server's answer to one command (one result of it, for multi-result commands).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Response {
    Ok(OkInfo),
    Err(ErrInfo),
    Rows(ResultSet),
    Prepared(Prepared),
    /// A plain string answer (COM_STATISTICS).
    Text(Vec<u8>),
    /// LOAD DATA LOCAL INFILE: the server asked for a file; `then` is what followed the upload.
    LocalInfile {
        filename: Vec<u8>,
        then: Option<Box<Response>>,
    },
    /// The command has no answer (quit, close, send_long_data).
    None,
    /// An answer was due but is not in the run (lost, session ended, capture ended).
    Missing(MissingReason),
    /// Replay only: the command was not sent.
    Skipped(SkipReason),
}

impl Response {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Response::Ok(_) => "ok",
            Response::Err(_) => "err",
            Response::Rows(_) => "rows",
            Response::Prepared(_) => "prepared",
            Response::Text(_) => "text",
            Response::LocalInfile { .. } => "local_infile",
            Response::None => "none",
            Response::Missing(_) => "missing",
            Response::Skipped(_) => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct OkInfo {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ErrInfo {
    pub code: u16,
    pub state: Vec<u8>,
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum MissingReason {
    /// Bytes of the response were lost (a gap).
    Gap,
    /// The connection closed before the answer came.
    Closed,
    /// The capture ended before the answer came.
    EndOfCapture,
    /// The response could not be decoded.
    Undecodable,
    /// Replay: the server went away while the command was in flight.
    ConnectionLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SkipReason {
    /// EXECUTE (or close/reset) of a statement whose PREPARE was never seen.
    UnknownStatement,
    /// Filtered out by --read-only, --include or --exclude.
    Filtered,
    /// A command myrr cannot send again (with its name).
    Unsupported(String),
    /// The session's connection could not be opened.
    NotConnected,
    /// EXECUTE of a statement known from a backfill whose parameter types the client bound
    /// before the capture (it sends them once): the values cannot be sent again.
    TypesNotSent,
}

impl SkipReason {
    /// A stable snake_case name, for counts by reason in summaries and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::UnknownStatement => "unknown_statement",
            SkipReason::Filtered => "filtered",
            SkipReason::Unsupported(_) => "unsupported",
            SkipReason::NotConnected => "not_connected",
            SkipReason::TypesNotSent => "types_not_sent",
        }
    }

    /// What a user reads: the reason and what to do about it.
    pub fn explain(&self) -> &'static str {
        match self {
            SkipReason::UnknownStatement => {
                "EXECUTE of a statement prepared before the capture started: capture with \
                 --server (backfill from performance_schema), or longer so that pools reconnect"
            }
            SkipReason::Filtered => "left out by --read-only, --include or --exclude",
            SkipReason::Unsupported(_) => "a command myrr cannot send again",
            SkipReason::NotConnected => {
                "the session's connection to the target could not be opened"
            }
            SkipReason::TypesNotSent => {
                "EXECUTE whose parameter types were bound before the capture (the client sends \
                 them once per statement)"
            }
        }
    }
}

/// A result set, summarised: its shape, its size and a digest of its rows.
///
/// Decoded by hand (see [`crate::shared_columns`]): the same columns come with every answer of
/// a statement, and a reader borrowing from its block shares one set between them.
#[derive(Debug, Clone, PartialEq, Encode)]
pub struct ResultSet {
    /// Shared between the answers of one statement (decoders parse a set of column
    /// definitions once); encoded like a `Vec`.
    pub columns: Arc<[Column]>,
    pub rows: u64,
    /// Bytes of row data on the wire.
    pub bytes: u64,
    pub digest: crate::digest::ResultDigest,
    /// Status flags of the terminating EOF/OK packet.
    pub status: u16,
    pub warnings: u16,
    /// False when rows were lost or the result ended early (a gap, an error mid-result).
    pub complete: bool,
    /// An error that ended the result set early.
    pub error: Option<ErrInfo>,
}

/// A column definition (ColumnDefinition41), without the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct Column {
    pub name: Vec<u8>,
    pub table: Vec<u8>,
    pub column_type: u8,
    pub flags: u16,
    pub charset: u16,
    pub decimals: u8,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Prepared {
    pub stmt_id: u32,
    pub params: u16,
    pub columns: u16,
    pub warnings: u16,
    pub param_defs: Vec<Column>,
    pub column_defs: Vec<Column>,
}
