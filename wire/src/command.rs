//! Client commands: their codes, and the bytes of each recorded [`Command`] in both directions.
//!
//! [`decode`] reads a command packet's payload with an explicit [`DecodeContext`] (what the
//! connection negotiated, and the statement an EXECUTE names); [`encode`] writes the payload a
//! client sends for a recorded command. The two are inverses for every command a replay sends
//! (property-tested below).

use myrr_recording::{Command, Param, Value};

use crate::reader::Reader;
use crate::values::{read_binary, write_binary};

/// A command's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Sleep,
    Quit,
    InitDb,
    Query,
    FieldList,
    CreateDb,
    DropDb,
    Refresh,
    Shutdown,
    Statistics,
    ProcessInfo,
    Connect,
    ProcessKill,
    Debug,
    Ping,
    Time,
    DelayedInsert,
    ChangeUser,
    BinlogDump,
    TableDump,
    ConnectOut,
    RegisterSlave,
    StmtPrepare,
    StmtExecute,
    StmtSendLongData,
    StmtClose,
    StmtReset,
    SetOption,
    StmtFetch,
    Daemon,
    BinlogDumpGtid,
    ResetConnection,
    /// A byte no MySQL or MariaDB version sends as a command (or one not listed here).
    Unknown(u8),
}

impl Code {
    const KNOWN: [Code; 32] = [
        Code::Sleep,
        Code::Quit,
        Code::InitDb,
        Code::Query,
        Code::FieldList,
        Code::CreateDb,
        Code::DropDb,
        Code::Refresh,
        Code::Shutdown,
        Code::Statistics,
        Code::ProcessInfo,
        Code::Connect,
        Code::ProcessKill,
        Code::Debug,
        Code::Ping,
        Code::Time,
        Code::DelayedInsert,
        Code::ChangeUser,
        Code::BinlogDump,
        Code::TableDump,
        Code::ConnectOut,
        Code::RegisterSlave,
        Code::StmtPrepare,
        Code::StmtExecute,
        Code::StmtSendLongData,
        Code::StmtClose,
        Code::StmtReset,
        Code::SetOption,
        Code::StmtFetch,
        Code::Daemon,
        Code::BinlogDumpGtid,
        Code::ResetConnection,
    ];

    pub fn byte(self) -> u8 {
        match self {
            Code::Unknown(b) => b,
            // The listed codes are 0x00..=0x1f in order.
            known => Code::KNOWN.iter().position(|c| *c == known).unwrap_or(0) as u8,
        }
    }

    /// Is this a command whose bytes the decoder reads into a [`Command`] (rather than
    /// [`Command::Other`])?
    pub fn is_decoded(self) -> bool {
        matches!(
            self,
            Code::Quit
                | Code::InitDb
                | Code::Query
                | Code::FieldList
                | Code::Statistics
                | Code::ProcessInfo
                | Code::ProcessKill
                | Code::Debug
                | Code::Ping
                | Code::ChangeUser
                | Code::StmtPrepare
                | Code::StmtExecute
                | Code::StmtSendLongData
                | Code::StmtClose
                | Code::StmtReset
                | Code::SetOption
                | Code::StmtFetch
                | Code::ResetConnection
        )
    }
}

impl From<u8> for Code {
    fn from(b: u8) -> Self {
        Code::KNOWN
            .get(b as usize)
            .copied()
            .unwrap_or(Code::Unknown(b))
    }
}

/// COM_STMT_EXECUTE flag: a parameter count precedes the parameters (query attributes).
pub const EXECUTE_PARAMETER_COUNT_AVAILABLE: u8 = 0x08;

/// A prepared statement as the decoder of an EXECUTE needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    /// Parameter count, from the PREPARE's answer.
    pub params: u16,
    /// (type, unsigned) of each parameter, from the last EXECUTE that bound them.
    pub types: Vec<(u8, bool)>,
}

/// What decoding a command needs to know of its connection.
#[derive(Debug, Default)]
pub struct DecodeContext<'a> {
    /// CLIENT_SECURE_CONNECTION (or not known): CHANGE_USER's auth data is length-prefixed.
    pub secure_connection: bool,
    /// CLIENT_QUERY_ATTRIBUTES: queries and EXECUTEs carry attributes.
    pub query_attributes: bool,
    /// The statement an EXECUTE names, when its PREPARE was seen; its types are updated
    /// when the EXECUTE binds new ones.
    pub statement: Option<&'a mut Statement>,
}

/// Decodes one command packet's payload. `None`: the payload is empty, the code is not
/// decoded (see [`Code::is_decoded`]) or the body does not parse.
pub fn decode(p: &[u8], cx: DecodeContext<'_>) -> Option<Command> {
    let (&code, body) = p.split_first()?;
    let mut r = Reader::new(body);
    match Code::from(code) {
        Code::Quit => Some(Command::Quit),
        Code::InitDb => Some(Command::InitDb { db: body.to_vec() }),
        Code::Query => Some(decode_query(body, cx.query_attributes)),
        Code::FieldList => {
            let table = r.cstr_or_rest().to_vec();
            Some(Command::FieldList {
                table,
                wildcard: r.rest().to_vec(),
            })
        }
        Code::Statistics => Some(Command::Statistics),
        Code::ProcessInfo => Some(Command::ProcessInfo),
        Code::ProcessKill => r.u32().map(|id| Command::ProcessKill { id }),
        Code::Debug => Some(Command::Debug),
        Code::Ping => Some(Command::Ping),
        Code::ChangeUser => {
            let user = r.cstr_or_rest().to_vec();
            let db = (|| {
                if cx.secure_connection {
                    let n = r.u8()? as usize;
                    r.skip(n)?;
                } else {
                    r.cstr()?;
                }
                Some(r.cstr_or_rest().to_vec())
            })()
            .filter(|d| !d.is_empty());
            Some(Command::ChangeUser { user, db })
        }
        Code::StmtPrepare => Some(Command::Prepare { sql: body.to_vec() }),
        Code::StmtExecute => decode_execute(body, cx.query_attributes, cx.statement),
        Code::StmtSendLongData => Some(Command::SendLongData {
            stmt_id: r.u32()?,
            param: r.u16()?,
            data: r.rest().to_vec(),
        }),
        Code::StmtClose => r.u32().map(|stmt_id| Command::CloseStmt { stmt_id }),
        Code::StmtReset => r.u32().map(|stmt_id| Command::ResetStmt { stmt_id }),
        Code::SetOption => r.u16().map(|option| Command::SetOption { option }),
        Code::StmtFetch => Some(Command::Fetch {
            stmt_id: r.u32()?,
            rows: r.u32()?,
        }),
        Code::ResetConnection => Some(Command::ResetConnection),
        _ => None,
    }
}

/// The statement id an EXECUTE's payload names (before any mapping), if it has one.
pub fn execute_statement_id(p: &[u8]) -> Option<u32> {
    let mut r = Reader::new(p.get(1..)?);
    r.u32()
}

/// COM_QUERY's body: SQL text, after a query-attributes block when they were negotiated.
pub fn decode_query(body: &[u8], query_attributes: bool) -> Command {
    if query_attributes {
        if let Some((attrs, sql)) = query_attributes_block(body) {
            return Command::Query {
                sql: sql.to_vec(),
                attrs,
            };
        }
    }
    Command::Query {
        sql: body.to_vec(),
        attrs: vec![],
    }
}

/// Query attributes: (name, value) pairs.
pub type QueryAttributes = Vec<(Vec<u8>, Value)>;

/// A COM_QUERY body's query-attributes block and the SQL after it.
pub fn query_attributes_block(body: &[u8]) -> Option<(QueryAttributes, &[u8])> {
    let mut r = Reader::new(body);
    let count = r.lenenc()? as usize;
    let sets = r.lenenc()?;
    if sets != 1 || count > 1024 {
        return None;
    }
    let mut attrs = Vec::new();
    if count > 0 {
        let bitmap = r.take(count.div_ceil(8))?;
        if r.u8()? != 1 {
            return None;
        }
        let mut types = Vec::with_capacity(count);
        for _ in 0..count {
            let t = r.u8()?;
            let f = r.u8()?;
            let name = r.lenenc_bytes()?.to_vec();
            types.push((t, f & 0x80 != 0, name));
        }
        for (i, (t, unsigned, name)) in types.into_iter().enumerate() {
            let v = if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                Value::Null
            } else {
                read_binary(&mut r, t, unsigned)?.to_owned_value()
            };
            attrs.push((name, v));
        }
    }
    Some((attrs, r.rest()))
}

/// Parameter types (type, unsigned), whether the block bound them, and the values.
pub type ParsedParams = (Vec<(u8, bool)>, bool, Vec<Param>);

/// An EXECUTE's undecoded parameter block (`raw_params`) read as `n` parameters: the types
/// it binds (or `known`, when it binds none) and the values. `None` unless the block is
/// exactly that: every byte used, no byte missing. `Some((types, bound, params))`, `bound`
/// when the block itself carried the types.
pub fn parse_params_exact(
    raw: &[u8],
    n: usize,
    known: Option<&[(u8, bool)]>,
) -> Option<ParsedParams> {
    if n == 0 {
        return raw.is_empty().then(|| (vec![], false, vec![]));
    }
    let mut r = Reader::new(raw);
    let bitmap = r.take(n.div_ceil(8))?;
    let bound = r.u8()? == 1;
    let types = if bound {
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let ty = r.u8()?;
            let f = r.u8()?;
            t.push((ty, f & 0x80 != 0));
        }
        t
    } else {
        known.filter(|k| k.len() == n)?.to_vec()
    };
    let mut params = Vec::with_capacity(n);
    for (i, &(t, unsigned)) in types.iter().enumerate() {
        let value = if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            Value::Null
        } else {
            read_binary(&mut r, t, unsigned)?.to_owned_value()
        };
        params.push(Param {
            column_type: t,
            unsigned,
            value,
        });
    }
    r.rest().is_empty().then_some((types, bound, params))
}

/// COM_STMT_EXECUTE's body. Without the statement (its PREPARE was not seen), or when its
/// parameters do not parse, the parameter block is kept undecoded in `raw_params`.
fn decode_execute(body: &[u8], qa: bool, statement: Option<&mut Statement>) -> Option<Command> {
    let mut r = Reader::new(body);
    let stmt_id = r.u32()?;
    let flags = r.u8()?;
    r.u32()?;
    let raw = r.rest();
    let undecoded = |prepare_seen| Command::Execute {
        stmt_id,
        flags,
        params: vec![],
        prepare_seen,
        raw_params: raw.to_vec(),
    };
    let Some(stmt) = statement else {
        return Some(undecoded(false));
    };
    let count_sent = qa && flags & EXECUTE_PARAMETER_COUNT_AVAILABLE != 0;
    let params = (|| {
        let mut n = stmt.params as usize;
        if count_sent {
            n = r.lenenc()? as usize;
        }
        if n == 0 {
            return Some(vec![]);
        }
        let bitmap = r.take(n.div_ceil(8))?;
        if r.u8()? == 1 {
            let mut types = Vec::with_capacity(n);
            for _ in 0..n {
                let t = r.u8()?;
                let f = r.u8()?;
                types.push((t, f & 0x80 != 0));
                if qa {
                    r.lenenc_bytes()?;
                }
            }
            stmt.types = types;
        }
        if stmt.types.len() != n {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for (i, &(t, unsigned)) in stmt.types.iter().enumerate() {
            let value = if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                Value::Null
            } else {
                read_binary(&mut r, t, unsigned)?.to_owned_value()
            };
            out.push(Param {
                column_type: t,
                unsigned,
                value,
            });
        }
        // With query attributes, the count covers the statement's parameters and then the
        // attributes (named): the command keeps the parameters; attributes are not re-sent.
        out.truncate(stmt.params as usize);
        Some(out)
    })();
    Some(match params {
        Some(params) => Command::Execute {
            stmt_id,
            flags,
            params,
            prepare_seen: true,
            raw_params: vec![],
        },
        None => undecoded(true),
    })
}

/// Why a recorded command cannot be sent as bytes of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unencodable {
    /// CHANGE_USER carries authentication data, which only a live login can compute.
    #[error("CHANGE_USER needs a login exchange")]
    NeedsLogin,
    /// The command was recorded without its bytes.
    #[error("command 0x{0:02x} was recorded without its bytes")]
    NotRecorded(u8),
}

/// Appends the payload a client sends for `cmd`, on a connection without
/// CLIENT_QUERY_ATTRIBUTES (query attributes are not sent).
///
/// `stmt_id`: the id to name for commands on a prepared statement (a replay maps recorded ids
/// to its server's); `None` keeps the recorded one. `sent_types`: the parameter types last sent
/// for this statement; an EXECUTE sends its types only when they differ, as client libraries
/// do (the server keeps a statement's types), and then remembers them there.
pub fn encode(
    cmd: &Command,
    stmt_id: Option<u32>,
    sent_types: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), Unencodable> {
    let id = |recorded: &u32| stmt_id.unwrap_or(*recorded).to_le_bytes();
    match cmd {
        Command::Query { sql, .. } => {
            out.push(Code::Query.byte());
            out.extend_from_slice(sql);
        }
        Command::InitDb { db } => {
            out.push(Code::InitDb.byte());
            out.extend_from_slice(db);
        }
        Command::FieldList { table, wildcard } => {
            out.push(Code::FieldList.byte());
            out.extend_from_slice(table);
            out.push(0);
            out.extend_from_slice(wildcard);
        }
        Command::Prepare { sql } => {
            out.push(Code::StmtPrepare.byte());
            out.extend_from_slice(sql);
        }
        Command::Execute {
            stmt_id: recorded,
            flags,
            params,
            raw_params,
            ..
        } => {
            out.push(Code::StmtExecute.byte());
            out.extend_from_slice(&id(recorded));
            out.push(flags & !EXECUTE_PARAMETER_COUNT_AVAILABLE);
            out.extend_from_slice(&1u32.to_le_bytes());
            if params.is_empty() {
                out.extend_from_slice(raw_params);
            } else {
                encode_params(out, params, sent_types);
            }
        }
        Command::SendLongData {
            stmt_id: recorded,
            param,
            data,
        } => {
            out.push(Code::StmtSendLongData.byte());
            out.extend_from_slice(&id(recorded));
            out.extend_from_slice(&param.to_le_bytes());
            out.extend_from_slice(data);
        }
        Command::CloseStmt { stmt_id: recorded } => {
            out.push(Code::StmtClose.byte());
            out.extend_from_slice(&id(recorded));
        }
        Command::ResetStmt { stmt_id: recorded } => {
            out.push(Code::StmtReset.byte());
            out.extend_from_slice(&id(recorded));
        }
        Command::Fetch {
            stmt_id: recorded,
            rows,
        } => {
            out.push(Code::StmtFetch.byte());
            out.extend_from_slice(&id(recorded));
            out.extend_from_slice(&rows.to_le_bytes());
        }
        Command::SetOption { option } => {
            out.push(Code::SetOption.byte());
            out.extend_from_slice(&option.to_le_bytes());
        }
        Command::ProcessKill { id } => {
            out.push(Code::ProcessKill.byte());
            out.extend_from_slice(&id.to_le_bytes());
        }
        Command::Statistics => out.push(Code::Statistics.byte()),
        Command::ProcessInfo => out.push(Code::ProcessInfo.byte()),
        Command::Debug => out.push(Code::Debug.byte()),
        Command::Ping => out.push(Code::Ping.byte()),
        Command::Quit => out.push(Code::Quit.byte()),
        Command::ResetConnection => out.push(Code::ResetConnection.byte()),
        Command::ChangeUser { .. } => return Err(Unencodable::NeedsLogin),
        Command::Other { code, .. } => return Err(Unencodable::NotRecorded(*code)),
    }
    Ok(())
}

/// Appends COM_CHANGE_USER for a CLIENT_SECURE_CONNECTION and CLIENT_PLUGIN_AUTH connection:
/// `auth` is the response to the server's current challenge under `plugin` (at most 255 bytes,
/// as every plugin's first response is), `charset` the collation id to switch to.
pub fn encode_change_user(
    user: &[u8],
    auth: &[u8],
    db: &[u8],
    charset: u16,
    plugin: &[u8],
    out: &mut Vec<u8>,
) {
    out.push(Code::ChangeUser.byte());
    out.extend_from_slice(user);
    out.push(0);
    let auth = &auth[..auth.len().min(255)];
    out.push(auth.len() as u8);
    out.extend_from_slice(auth);
    out.extend_from_slice(db);
    out.push(0);
    out.extend_from_slice(&charset.to_le_bytes());
    out.extend_from_slice(plugin);
    out.push(0);
}

/// COM_STMT_EXECUTE's parameter block: NULL bitmap, new_params_bound, types, values. The
/// types go only when they differ from `sent`, those of the statement's previous EXECUTE
/// (then `sent` becomes them).
fn encode_params(b: &mut Vec<u8>, params: &[Param], sent: &mut Vec<u8>) {
    let n = params.len();
    let bitmap = b.len();
    b.resize(bitmap + n.div_ceil(8), 0);
    let bound = b.len();
    b.push(1);
    let types = b.len();
    b.resize(types + 2 * n, 0);
    for (i, p) in params.iter().enumerate() {
        if matches!(p.value, Value::Null) {
            b[bitmap + i / 8] |= 1 << (i % 8);
        }
        let t = write_binary(b, p.column_type, &p.value);
        b[types + 2 * i] = t;
        b[types + 2 * i + 1] = if p.unsigned { 0x80 } else { 0 };
    }
    let these = types..types + 2 * n;
    if b[these.clone()] == sent[..] {
        b[bound] = 0;
        b.drain(these);
    } else {
        sent.clear();
        sent.extend_from_slice(&b[these]);
    }
}

#[cfg(test)]
mod tests;
