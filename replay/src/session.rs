//! One replayed session: one real connection, commands re-issued in recorded order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use myrr_recording::{
    Column, Command, EndReason, ErrInfo, Event, Exchange, Login, MissingReason, OkInfo, Prepared,
    Response, ResultSet, RowDigester, SessionEnd, SessionStart, SkipReason, Value, ValueRef,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Statement};
use tokio::sync::mpsc;

use crate::readonly::is_read_only;
use crate::Shared;

/// Why talking to the server failed.
enum Failure {
    /// The server answered with an error: the session goes on.
    Server(ErrInfo),
    /// The connection is gone.
    Lost(String),
}

fn classify(e: mysql_async::Error) -> Failure {
    match e {
        mysql_async::Error::Server(s) => Failure::Server(ErrInfo {
            code: s.code,
            state: s.state.into_bytes(),
            message: s.message.into_bytes(),
        }),
        other => Failure::Lost(other.to_string()),
    }
}

fn value_ref(v: &mysql_async::Value) -> ValueRef<'_> {
    use mysql_async::Value as V;
    match v {
        V::NULL => ValueRef::Null,
        V::Bytes(b) => ValueRef::Bytes(b),
        V::Int(i) => ValueRef::Int(*i),
        V::UInt(u) => ValueRef::UInt(*u),
        V::Float(f) => ValueRef::Float(*f),
        V::Double(d) => ValueRef::Double(*d),
        V::Date(y, mo, d, h, mi, s, us) => ValueRef::Date(*y, *mo, *d, *h, *mi, *s, *us),
        V::Time(n, d, h, m, s, us) => ValueRef::Time(*n, *d, *h, *m, *s, *us),
    }
}

fn to_driver_value(v: &Value) -> mysql_async::Value {
    use mysql_async::Value as V;
    match v {
        Value::Null => V::NULL,
        Value::Bytes(b) => V::Bytes(b.clone()),
        Value::Int(i) => V::Int(*i),
        Value::UInt(u) => V::UInt(*u),
        Value::Float(f) => V::Float(*f),
        Value::Double(d) => V::Double(*d),
        Value::Date(y, mo, d, h, mi, s, us) => V::Date(*y, *mo, *d, *h, *mi, *s, *us),
        Value::Time(n, d, h, m, s, us) => V::Time(*n, *d, *h, *m, *s, *us),
    }
}

fn column(c: &mysql_async::Column) -> Column {
    Column {
        name: c.name_ref().to_vec(),
        table: c.table_ref().to_vec(),
        column_type: c.column_type() as u8,
        flags: c.flags().bits(),
        charset: c.character_set(),
        decimals: c.decimals(),
        length: c.column_length(),
    }
}

/// Reads every result of a query or execute: rows are digested as they stream, never held.
async fn read_results<P: mysql_async::prelude::Protocol>(
    mut result: mysql_async::QueryResult<'_, 'static, P>,
) -> Result<Vec<Response>, Failure> {
    let mut out = Vec::new();
    loop {
        let columns = result.columns().unwrap_or_else(|| Arc::from(Vec::new()));
        if columns.is_empty() {
            out.push(Response::Ok(OkInfo {
                affected_rows: result.affected_rows(),
                last_insert_id: result.last_insert_id().unwrap_or(0),
                status: 0,
                warnings: result.warnings(),
                info: result.info().as_bytes().to_vec(),
            }));
            result.next().await.map_err(classify)?;
        } else {
            let mut digest = RowDigester::new();
            let mut bytes = 0u64;
            loop {
                match result.next().await {
                    Ok(Some(row)) => {
                        for i in 0..row.len() {
                            let v = row.as_ref(i).unwrap_or(&mysql_async::Value::NULL);
                            if let mysql_async::Value::Bytes(b) = v {
                                bytes += b.len() as u64;
                            }
                            digest.value(value_ref(v));
                        }
                        digest.end_row();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let f = classify(e);
                        let (error, lost) = match f {
                            Failure::Server(e) => (Some(e), None),
                            Failure::Lost(m) => (None, Some(m)),
                        };
                        out.push(Response::Rows(ResultSet {
                            columns: columns.iter().map(column).collect(),
                            rows: digest.rows(),
                            bytes,
                            digest: digest.finish(),
                            status: 0,
                            warnings: 0,
                            complete: false,
                            error,
                        }));
                        return match lost {
                            Some(m) => Err(Failure::Lost(m)),
                            None => Ok(out),
                        };
                    }
                }
            }
            out.push(Response::Rows(ResultSet {
                columns: columns.iter().map(column).collect(),
                rows: digest.rows(),
                bytes,
                digest: digest.finish(),
                status: 0,
                warnings: result.warnings(),
                complete: true,
                error: None,
            }));
        }
        if result.is_empty() {
            return Ok(out);
        }
    }
}

/// Backtick-quotes an identifier for `USE`.
fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    start: SessionStart,
    clone: u32,
    opts: Opts,
    conn: Option<Conn>,
    /// Recorded statement id → statement on the target, and its SQL (to re-prepare).
    stmts: HashMap<u32, (Statement, Vec<u8>)>,
    /// Recorded statement id → SQL of statements whose PREPARE was seen but not sent
    /// (filtered) or failed on the target.
    stmt_sql: HashMap<u32, Vec<u8>>,
    current_db: Option<String>,
    last_reconnect: Option<Instant>,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, start: SessionStart, clone: u32) -> Self {
        let user = start
            .user
            .as_deref()
            .map(|u| String::from_utf8_lossy(u).into_owned());
        let db = start
            .db
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .or_else(|| shared.config.default_db.clone());
        let opts = shared
            .config
            .target
            .opts_for(user.as_deref(), db.as_deref());
        Self {
            current_db: db,
            shared,
            start,
            clone,
            opts,
            conn: None,
            stmts: HashMap::new(),
            stmt_sql: HashMap::new(),
            last_reconnect: None,
        }
    }

    async fn emit(&self, e: Event) {
        let _ = self.shared.events.send(e).await;
    }

    async fn connect(&mut self) -> Result<(), String> {
        let mut b = OptsBuilder::from_opts(self.opts.clone());
        b = b.db_name(self.current_db.clone());
        let conn = Conn::new(b).await.map_err(|e| e.to_string())?;
        self.conn = Some(conn);
        Ok(())
    }

    /// After the server went away: connect again, restore the database and re-prepare.
    async fn reconnect(&mut self) -> bool {
        let shared = self.shared.clone();
        if self
            .last_reconnect
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return false;
        }
        let deadline = Instant::now() + shared.config.reconnect_wait;
        let mut wait = Duration::from_millis(50);
        loop {
            if shared.stopping() {
                return false;
            }
            if self.connect().await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                self.last_reconnect = Some(Instant::now());
                return false;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        self.last_reconnect = Some(Instant::now());
        shared.progress.reconnects.fetch_add(1, Ordering::Relaxed);
        let old: Vec<(u32, Vec<u8>)> = self.stmts.drain().map(|(id, (_, sql))| (id, sql)).collect();
        for (id, sql) in old {
            let Some(conn) = self.conn.as_mut() else {
                return false;
            };
            match conn.prep(sql.as_slice()).await {
                Ok(s) => {
                    self.stmts.insert(id, (s, sql));
                }
                Err(_) => {
                    self.stmt_sql.insert(id, sql);
                }
            }
        }
        true
    }

    fn now_us(&self) -> u64 {
        self.shared.clock.now_us()
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Arc<Exchange>>) {
        let shared = self.shared.clone();
        let session = self.start.session;
        // Open the connection at the session's recorded offset.
        if let Some(at) = shared.schedule_at(self.start.start_us, self.clone) {
            tokio::time::sleep_until(at).await;
        }
        shared
            .progress
            .sessions_active
            .fetch_add(1, Ordering::Relaxed);
        let connected = self.connect().await;
        let mut start = self.start.clone();
        start.clone = self.clone;
        start.start_us = self.now_us();
        start.server = shared.config.target.address();
        start.client = String::new();
        start.mid_stream = false;
        start.encrypted = false;
        start.compressed = false;
        start.connection_id = self.conn.as_ref().map(|c| c.id());
        start.db = self.current_db.clone().map(String::into_bytes);
        self.emit(Event::SessionStart(start)).await;
        if let Err(e) = &connected {
            shared
                .progress
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            shared.note_error(format!("session {session}: cannot connect: {e}"));
        }
        let mut exchanges = 0u64;
        let mut reason = EndReason::EndOfRun;
        while let Some(x) = rx.recv().await {
            if shared.stopping() {
                break;
            }
            let scheduled = shared.schedule_at(x.start_us, self.clone);
            if let Some(at) = scheduled {
                tokio::time::sleep_until(at).await;
            }
            let scheduled_us = match scheduled {
                Some(at) => shared.clock.us_at(at),
                None => self.now_us(),
            };
            let sent_us = self.now_us();
            let (response, more) = self.execute(&x).await;
            let end_us = self.now_us();
            shared.record_timing(
                sent_us.saturating_sub(scheduled_us),
                end_us.saturating_sub(sent_us),
            );
            shared.progress.count(&response);
            shared
                .progress
                .recorded_us
                .fetch_max(x.start_us, Ordering::Relaxed);
            exchanges += 1;
            let quit = matches!(x.command, Command::Quit);
            let seq = x.seq;
            // Without --scale this task holds the only reference: take the command, no copy.
            let command = match Arc::try_unwrap(x) {
                Ok(x) => x.command,
                Err(shared_x) => shared_x.command.clone(),
            };
            self.emit(Event::Exchange(Exchange {
                session,
                seq,
                clone: self.clone,
                scheduled_us: Some(scheduled_us),
                start_us: sent_us,
                end_us,
                command,
                response,
                more,
            }))
            .await;
            if quit {
                reason = EndReason::Quit;
                break;
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
        if shared.stopping() && reason != EndReason::Quit {
            reason = EndReason::EndOfRun;
        }
        shared
            .progress
            .sessions_active
            .fetch_sub(1, Ordering::Relaxed);
        shared
            .progress
            .sessions_done
            .fetch_add(1, Ordering::Relaxed);
        let end_us = self.now_us();
        self.emit(Event::SessionEnd(SessionEnd {
            session,
            end_us,
            reason,
            login: if connected.is_ok() {
                Login::Ok
            } else {
                Login::Unknown
            },
            exchanges,
        }))
        .await;
    }

    /// Sends one command; never fails: what went wrong becomes the response.
    async fn execute(&mut self, x: &Exchange) -> (Response, Vec<Response>) {
        let cmd = &x.command;
        if let Some(skip) = self.filter(cmd) {
            if let (Command::Prepare { sql }, Some(id)) = (cmd, recorded_stmt_id(&x.response)) {
                self.stmt_sql.insert(id, sql.clone());
            }
            return (Response::Skipped(skip), vec![]);
        }
        if self.conn.is_none() && !matches!(cmd, Command::Quit) && !self.reconnect().await {
            return (Response::Skipped(SkipReason::NotConnected), vec![]);
        }
        match self.send(cmd, &x.response).await {
            Ok(mut rs) => {
                let first = if rs.is_empty() {
                    Response::None
                } else {
                    rs.remove(0)
                };
                (first, rs)
            }
            Err(Failure::Server(e)) => (Response::Err(e), vec![]),
            Err(Failure::Lost(msg)) => {
                self.conn = None;
                self.shared.progress.lost.fetch_add(1, Ordering::Relaxed);
                self.shared.note_error(format!(
                    "session {}: connection lost: {msg}",
                    self.start.session
                ));
                if !matches!(cmd, Command::Quit) {
                    self.reconnect().await;
                }
                (Response::Missing(MissingReason::ConnectionLost), vec![])
            }
        }
    }

    /// The SQL a command runs, for filters: its own, or its statement's.
    fn sql_of<'a>(&'a self, cmd: &'a Command) -> Option<&'a [u8]> {
        match cmd {
            Command::Query { sql, .. } | Command::Prepare { sql } => Some(sql),
            Command::Execute { stmt_id, .. } => self
                .stmts
                .get(stmt_id)
                .map(|(_, s)| s.as_slice())
                .or_else(|| self.stmt_sql.get(stmt_id).map(Vec::as_slice)),
            _ => None,
        }
    }

    fn filter(&self, cmd: &Command) -> Option<SkipReason> {
        let cfg = &self.shared.config;
        if let Command::Execute {
            prepare_seen: false,
            ..
        } = cmd
        {
            return Some(SkipReason::UnknownStatement);
        }
        let sql = self.sql_of(cmd);
        if let Some(sql) = sql {
            let text = String::from_utf8_lossy(sql);
            if cfg.include.as_ref().is_some_and(|r| !r.is_match(&text))
                || cfg.exclude.as_ref().is_some_and(|r| r.is_match(&text))
            {
                if matches!(cmd, Command::Prepare { .. }) {
                    return None; // keep the statement: its executes are filtered one by one
                }
                return Some(SkipReason::Filtered);
            }
            if cfg.read_only && !matches!(cmd, Command::Prepare { .. }) && !is_read_only(sql) {
                return Some(SkipReason::Filtered);
            }
        }
        if cfg.read_only
            && matches!(
                cmd,
                Command::SendLongData { .. } | Command::ProcessKill { .. } | Command::Other { .. }
            )
        {
            return Some(SkipReason::Filtered);
        }
        None
    }

    async fn send(&mut self, cmd: &Command, recorded: &Response) -> Result<Vec<Response>, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Lost("not connected".into()));
        };
        match cmd {
            Command::Query { sql, .. } => {
                let result = conn.query_iter(sql.as_slice()).await.map_err(classify)?;
                let out = read_results(result).await?;
                if crate::readonly::first_keyword(sql) == "USE" {
                    let name = String::from_utf8_lossy(sql)
                        .trim()
                        .trim_end_matches(';')
                        .to_string();
                    let db = name[3..].trim().trim_matches('`').to_string();
                    if !db.is_empty() {
                        self.current_db = Some(db);
                    }
                }
                Ok(out)
            }
            Command::InitDb { db } => {
                let name = String::from_utf8_lossy(db).into_owned();
                conn.query_drop(format!("USE {}", quote_ident(&name)))
                    .await
                    .map_err(classify)?;
                self.current_db = Some(name);
                Ok(vec![Response::Ok(OkInfo::default())])
            }
            Command::Prepare { sql } => {
                let recorded_id = recorded_stmt_id(recorded);
                match conn.prep(sql.as_slice()).await {
                    Ok(stmt) => {
                        // Within a run, EXECUTEs name statements by the recorded id (the
                        // commands are the recorded ones), so the answer carries that id too.
                        let p = Prepared {
                            stmt_id: recorded_id.unwrap_or(stmt.id()),
                            params: stmt.num_params(),
                            columns: stmt.num_columns(),
                            warnings: 0,
                            param_defs: stmt.params().iter().map(column).collect(),
                            column_defs: stmt.columns().iter().map(column).collect(),
                        };
                        if let Some(id) = recorded_id {
                            self.stmts.insert(id, (stmt, sql.clone()));
                        }
                        Ok(vec![Response::Prepared(p)])
                    }
                    Err(e) => {
                        if let Some(id) = recorded_id {
                            self.stmt_sql.insert(id, sql.clone());
                        }
                        Err(classify(e))
                    }
                }
            }
            Command::Execute {
                stmt_id, params, ..
            } => {
                let Some((stmt, _)) = self.stmts.get(stmt_id) else {
                    return Ok(vec![Response::Skipped(SkipReason::UnknownStatement)]);
                };
                let values: Vec<mysql_async::Value> =
                    params.iter().map(|p| to_driver_value(&p.value)).collect();
                let params = if values.is_empty() {
                    Params::Empty
                } else {
                    Params::Positional(values)
                };
                let result = conn
                    .exec_iter(stmt.clone(), params)
                    .await
                    .map_err(classify)?;
                read_results(result).await
            }
            Command::CloseStmt { stmt_id } => {
                if let Some((stmt, _)) = self.stmts.remove(stmt_id) {
                    conn.close(stmt).await.map_err(classify)?;
                }
                self.stmt_sql.remove(stmt_id);
                Ok(vec![Response::None])
            }
            Command::Ping => {
                conn.ping().await.map_err(classify)?;
                Ok(vec![Response::Ok(OkInfo::default())])
            }
            Command::ResetConnection => {
                conn.reset().await.map_err(classify)?;
                self.stmts.clear();
                Ok(vec![Response::Ok(OkInfo::default())])
            }
            Command::ChangeUser { user, db } => {
                let user = String::from_utf8_lossy(user).into_owned();
                let (u, p) = self.shared.config.target.credentials_for(Some(&user));
                let db = db
                    .as_deref()
                    .map(|d| String::from_utf8_lossy(d).into_owned());
                let opts = mysql_async::ChangeUserOpts::default()
                    .with_user(u)
                    .with_pass(p)
                    .with_db_name(db.clone());
                conn.change_user(opts).await.map_err(classify)?;
                self.current_db = db;
                self.stmts.clear();
                Ok(vec![Response::Ok(OkInfo::default())])
            }
            Command::Quit => {
                if let Some(c) = self.conn.take() {
                    let _ = c.disconnect().await;
                }
                Ok(vec![Response::None])
            }
            other => Ok(vec![Response::Skipped(SkipReason::Unsupported(
                other.name().to_string(),
            ))]),
        }
    }
}

/// A PREPARE's recorded answer names the recorded statement id that later EXECUTEs use.
fn recorded_stmt_id(recorded: &Response) -> Option<u32> {
    match recorded {
        Response::Prepared(p) => Some(p.stmt_id),
        _ => None,
    }
}
