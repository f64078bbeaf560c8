//! A command's life in the decoder, from its packet to the [`Exchange`] it becomes: what it
//! expects in answer, the inflight queue that keeps answers in the session's order (a
//! pipelining client sends ahead), the prepared statements EXECUTEs are read against, and
//! how an exchange is emitted whole or, when its answer was cut off, partial.

use std::sync::Arc;

use myrr_recording::{
    Column, Command, Direction, ErrInfo, Event, Exchange, MissingReason, Prepared, Response,
    SampleReason,
};
use smallvec::{smallvec, SmallVec};

use super::attach::looks_like_sql;
use super::responses::RState;
use super::results::ResultBuild;
use super::sample::KeptRows;
use super::{anomaly_at, Conn, Ctx};
use crate::command::{self, Code, DecodeContext, Statement};
use crate::reader::Reader;
use crate::{caps, Anomaly};

#[derive(Debug)]
pub(super) struct Inflight {
    pub(super) seq: u64,
    pub(super) start_us: u64,
    pub(super) last_us: u64,
    pub(super) command: Command,
    pub(super) state: RState,
    pub(super) cur: Option<ResultBuild>,
    /// Usually one: kept inline.
    pub(super) results: SmallVec<[Response; 1]>,
    pub(super) prep: Option<Prepared>,
    pub(super) infile: Option<Vec<u8>>,
    /// The first result's first rows, when they are kept (see [`super::sample`]).
    pub(super) kept: Option<KeptRows>,
}

impl Inflight {
    /// Ends the result being read (`c`): its kept rows stay with the exchange.
    pub(super) fn end_result(
        &mut self,
        mut c: ResultBuild,
        status: u16,
        warnings: u16,
        error: Option<ErrInfo>,
    ) {
        if let Some(k) = c.take_kept() {
            self.kept.get_or_insert(k);
        }
        self.results
            .push(Response::Rows(c.finish(status, warnings, error)));
    }
}

#[derive(Debug, Default, Clone)]
pub(super) struct Stmt {
    /// Parameter count and the types last bound, for decoding EXECUTEs.
    pub(super) shape: Statement,
    /// Its sampling key (the PREPARE's [`crate::sql::shape_key`]; see [`super::sample`]).
    pub(super) key: u64,
    pub(super) columns: Arc<[Column]>,
}

impl Conn {
    pub(super) fn command(&mut self, p: &[u8], start: u64, now: u64, ctx: &mut Ctx<'_>) {
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
                self.push_inflight(command, start, now, RState::Rows);
                let f = self.inflight.back_mut().expect("just pushed");
                let keep = Self::keep_key(self.keep_rows, &self.stmts, f, ctx);
                f.cur = Some(ResultBuild::new(true, cols).keeping(keep));
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
                kept: None,
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
            kept: None,
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

    pub(super) fn finish(&mut self, mut f: Inflight, ctx: &mut Ctx<'_>) {
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
    pub(super) fn emit_partial(
        &mut self,
        mut f: Inflight,
        reason: MissingReason,
        ctx: &mut Ctx<'_>,
    ) {
        if f.state.may_end() {
            return self.finish(f, ctx);
        }
        if let Some(mut c) = f.cur.take() {
            if matches!(f.state, RState::Cols { .. } | RState::FieldList) {
                // Cut off among its column definitions: the ones that came.
                c.columns = result_columns!(self, ctx);
            }
            f.end_result(c, 0, 0, None);
            if let Some(Response::Rows(rs)) = f.results.last_mut() {
                rs.complete = false;
            }
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
        if let Command::Execute {
            prepare_seen: false,
            ..
        } = f.command
        {
            ctx.stats.executes_unprepared += 1;
        }
        let kept = f.kept;
        let (seq, start_us) = (f.seq, f.start_us);
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
        // What the exchange emitted last kept, and only that (`keep_rows` may change between
        // exchanges).
        self.kept = None;
        if self.keep_rows {
            self.kept = kept;
        } else if let (Some(k), Some(samples)) = (kept, ctx.samples.as_deref_mut()) {
            if k.total_rows > 0 && samples.has_room(k.raw.key) {
                let sample = k.sample(session, seq, start_us, SampleReason::FirstOfShape);
                // Rows that do not parse against their columns leave nothing to show.
                if !sample.rows.is_empty() && samples.take(k.raw.key) {
                    ctx.events.push(Event::Rows(sample));
                }
            }
        }
    }
}
