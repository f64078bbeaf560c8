//! The answer to the command at the front of the queue, one server packet at a time. The
//! protocol does not say how long an answer is; its shape follows from the command and from
//! what the answer has said so far (column counts, EOFs, "more results" flags), so this is a
//! state machine ([`RState`]) per inflight command, learning DEPRECATE_EOF mid-stream where
//! the login was not seen.

use std::sync::Arc;

use myrr_recording::{Command, Direction, MissingReason, OkInfo, Prepared, Response};

use super::commands::{Inflight, Stmt};
use super::packets::{parse_column, parse_eof, parse_err, parse_ok};
use super::results::{ends_rows, ResultBuild};
use super::{anomaly_at, Conn, Ctx};
use crate::command::Statement;
use crate::reader::Reader;
use crate::{caps, Anomaly};

const STATUS_MORE_RESULTS: u16 = 0x0008;
const STATUS_CURSOR_EXISTS: u16 = 0x0040;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RState {
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
    pub(super) fn may_end(self) -> bool {
        matches!(self, RState::PrepColsEof | RState::PrepParamsEof)
    }
}

impl Conn {
    pub(super) fn response(&mut self, p: &[u8], now: u64, ctx: &mut Ctx<'_>) {
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
                            // MariaDB's metadata cache: a flag follows the count. Mid-stream
                            // (capabilities unknown) the flag byte itself tells.
                            let cached_metadata = ext_caps & caps::MARIADB_CACHE_METADATA != 0
                                || (self.caps.is_none() && r.rest().len() == 1);
                            let metadata_follows = if binary && cached_metadata {
                                r.u8().unwrap_or(1) != 0
                            } else {
                                true
                            };
                            let keep = Self::keep_key(self.keep_rows, &self.stmts, f, ctx);
                            if metadata_follows {
                                self.column_sets.begin();
                                f.cur =
                                    Some(ResultBuild::new(binary, Arc::default()).keeping(keep));
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
                                f.cur = Some(ResultBuild::new(binary, cols).keeping(keep));
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
                        c.columns = result_columns!(self, ctx);
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
                            c.columns = result_columns!(self, ctx);
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
                            f.end_result(c, status, warnings, None);
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
                        c.columns = result_columns!(self, ctx);
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
                if let (Command::Prepare { sql }, Some(prep)) = (&f.command, &f.prep) {
                    prepared = Some((
                        prep.stmt_id,
                        Stmt {
                            shape: Statement {
                                params: prep.params,
                                types: vec![],
                            },
                            key: crate::sql::shape_key(sql),
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
            f.end_result(cur, status, warnings, None);
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
            f.end_result(cur, 0, 0, Some(e));
            f.state = RState::Done;
        }
    }
}
