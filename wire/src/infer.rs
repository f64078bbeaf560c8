//! An EXECUTE whose statement was prepared before the capture, in a session the server's view
//! did not describe, may still be replayable: other sessions of the same application prepare
//! the same statements, and drivers number them alike. [`Inference`] reuses such a PREPARE
//! only when the evidence allows exactly one: the statement id, the parameter count and
//! types (the EXECUTE's parameter block must read as exactly that, every byte used), and,
//! for answers with a result set, the column definitions all agree — and no other PREPARE
//! seen with that id agrees too. Anything less stays unprepared (and is skipped by replay,
//! with its reason).

use std::sync::Arc;

use myrr_recording::{
    Backfill, BackfillSource, Column, Command, Event, Exchange, KnownStatement, Response, SessionId,
};
use rustc_hash::FxHashMap;

use crate::command::parse_params_exact;

/// Distinct (id, SQL) statements remembered; beyond it new PREPAREs are not (counted).
pub const MAX_STATEMENTS: usize = 65_536;
/// Parameter type lists remembered per statement.
const MAX_TYPE_LISTS: usize = 8;

type Types = Vec<(u8, bool)>;

/// A statement a server backfill described: its SQL, its parameter count, the types its
/// session last bound in the capture.
type Known = (Vec<u8>, u16, Types);

/// A statement seen prepared, with the parameter types its EXECUTEs bound.
#[derive(Debug)]
struct Entry {
    sql: Vec<u8>,
    params: u16,
    columns: Arc<[Column]>,
    types: Vec<Types>,
    from_session: SessionId,
}

/// A session's statement: which entry of `by_id[id]`, and the types it last bound there.
#[derive(Debug)]
struct Slot {
    at: usize,
    types: Types,
}

/// What an inference decided for one session's statement.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// The fact to record before the exchange (only for the first EXECUTE of the statement in
    /// the session).
    pub backfill: Option<Backfill>,
    pub stmt_id: u32,
    pub params: u16,
    /// The types the EXECUTE bound (the decoder's starting point for later EXECUTEs).
    pub types: Types,
    pub columns: Arc<[Column]>,
}

/// What inference did, for the capture's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InferStats {
    /// Statements of a session resolved from another session's PREPARE.
    pub statements: u64,
    /// EXECUTEs decoded that way.
    pub executes: u64,
    /// EXECUTEs left unprepared because more than one PREPARE agreed.
    pub ambiguous: u64,
    /// PREPAREs not remembered (beyond [`MAX_STATEMENTS`]).
    pub forgotten: u64,
    /// EXECUTEs of a known statement (prepared, or from a backfill) whose parameter types
    /// were bound before the capture, read with the only type list EXECUTEs of the same SQL
    /// bound elsewhere that reads their block exactly.
    pub types_from_sql: u64,
}

/// The PREPAREs of a run, and what each session's statement ids name.
#[derive(Debug, Default)]
pub struct Inference {
    /// Statement id → the distinct statements prepared under it.
    by_id: FxHashMap<u32, Vec<Entry>>,
    entries: usize,
    /// Session → its statement id → what it names (prepared or inferred there).
    sessions: FxHashMap<SessionId, FxHashMap<u32, Slot>>,
    /// Session → statement id → (SQL, parameters, types last bound) of statements a server
    /// backfill described.
    backfilled: FxHashMap<SessionId, FxHashMap<u32, Known>>,
    /// SQL text → the parameter type lists its EXECUTEs bound, in any session under any id.
    types_by_sql: FxHashMap<Vec<u8>, Vec<Types>>,
    pub stats: InferStats,
}

fn same_columns(a: &[Column], b: &[Column]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.table == y.table
                && x.column_type == y.column_type
                && x.charset == y.charset
        })
}

/// Whether an answer is consistent with a statement's columns.
fn answer_agrees(response: &Response, columns: &[Column]) -> bool {
    match response {
        // No columns: the server did not send them (MariaDB's metadata cache).
        Response::Rows(rs) => rs.columns.is_empty() || same_columns(&rs.columns, columns),
        Response::Ok(_) => columns.is_empty(),
        // An error, or no answer: no evidence either way.
        _ => true,
    }
}

fn types_of(params: &[myrr_recording::Param]) -> Types {
    params.iter().map(|p| (p.column_type, p.unsigned)).collect()
}

impl Inference {
    /// Learns from an event of the run (in order): PREPAREs and their answers, the types
    /// EXECUTEs bind, closes and session ends.
    pub fn observe(&mut self, ev: &Event) {
        match ev {
            Event::Exchange(x) => self.observe_exchange(x),
            Event::SessionEnd(e) => {
                self.sessions.remove(&e.session);
                self.backfilled.remove(&e.session);
            }
            Event::Backfill(b) if matches!(b.source, BackfillSource::Server { .. }) => {
                let known = self.backfilled.entry(b.session).or_default();
                for st in &b.statements {
                    known.insert(st.id, (st.sql.clone(), st.params, Types::new()));
                }
            }
            _ => {}
        }
    }

    /// Remembers the types an EXECUTE of `sql` bound, for EXECUTEs of the same SQL elsewhere.
    fn types_for_sql(&mut self, sql: &[u8], types: &Types) {
        if self.types_by_sql.len() >= MAX_STATEMENTS && !self.types_by_sql.contains_key(sql) {
            return;
        }
        let lists = self.types_by_sql.entry(sql.to_vec()).or_default();
        if !lists.contains(types) && lists.len() < MAX_TYPE_LISTS {
            lists.push(types.clone());
        }
    }

    fn observe_exchange(&mut self, x: &Exchange) {
        match (&x.command, &x.response) {
            (Command::Prepare { sql }, Response::Prepared(p)) => {
                let list = self.by_id.entry(p.stmt_id).or_default();
                let at = match list.iter().position(|e| &e.sql == sql) {
                    Some(i) => i,
                    None if self.entries < MAX_STATEMENTS => {
                        self.entries += 1;
                        list.push(Entry {
                            sql: sql.clone(),
                            params: p.params,
                            columns: p.column_defs.clone().into(),
                            types: Vec::new(),
                            from_session: x.session,
                        });
                        list.len() - 1
                    }
                    None => {
                        self.stats.forgotten += 1;
                        return;
                    }
                };
                self.sessions.entry(x.session).or_default().insert(
                    p.stmt_id,
                    Slot {
                        at,
                        types: Vec::new(),
                    },
                );
            }
            (
                Command::Execute {
                    stmt_id,
                    params,
                    prepare_seen: true,
                    ..
                },
                _,
            ) if !params.is_empty() => {
                let same = |t: &Types| {
                    t.len() == params.len()
                        && t.iter()
                            .zip(params)
                            .all(|(a, p)| *a == (p.column_type, p.unsigned))
                };
                let Some(slot) = self
                    .sessions
                    .get_mut(&x.session)
                    .and_then(|s| s.get_mut(stmt_id))
                else {
                    // A statement from a backfill: its types count for its SQL.
                    let Some((sql, _, last)) = self
                        .backfilled
                        .get_mut(&x.session)
                        .and_then(|s| s.get_mut(stmt_id))
                    else {
                        return;
                    };
                    if same(last) {
                        return;
                    }
                    *last = types_of(params);
                    let (sql, last) = (sql.clone(), last.clone());
                    self.types_for_sql(&sql, &last);
                    return;
                };
                if same(&slot.types) {
                    return; // the usual case: the types the session bound last time
                }
                slot.types = types_of(params);
                let types = slot.types.clone();
                let Some(e) = self.by_id.get_mut(stmt_id).and_then(|l| l.get_mut(slot.at)) else {
                    return;
                };
                if !e.types.iter().any(same) && e.types.len() < MAX_TYPE_LISTS {
                    e.types.push(types.clone());
                }
                let sql = e.sql.clone();
                self.types_for_sql(&sql, &types);
            }
            (Command::CloseStmt { stmt_id }, _) => {
                if let Some(s) = self.sessions.get_mut(&x.session) {
                    s.remove(stmt_id);
                }
            }
            _ => {}
        }
    }

    /// Decodes `x`, an EXECUTE of a statement the session knows (prepared, or from a server
    /// backfill) whose parameter block is undecoded because its types were bound before the
    /// capture: with the type lists EXECUTEs of the same SQL bound elsewhere, when exactly one
    /// of them reads the block (every byte used). `None` leaves it as it is.
    pub fn retype(&mut self, x: &mut Exchange) -> Option<Inferred> {
        let Command::Execute {
            stmt_id,
            flags,
            params,
            prepare_seen: true,
            raw_params,
        } = &mut x.command
        else {
            return None;
        };
        if !params.is_empty()
            || raw_params.is_empty()
            || *flags & crate::command::EXECUTE_PARAMETER_COUNT_AVAILABLE != 0
        {
            return None;
        }
        let slot = self.sessions.get(&x.session).and_then(|s| s.get(stmt_id));
        let (sql, n, columns) = match slot {
            Some(slot) => {
                let e = self.by_id.get(stmt_id)?.get(slot.at)?;
                (e.sql.as_slice(), e.params, e.columns.clone())
            }
            None => {
                let (sql, n, _) = self.backfilled.get(&x.session)?.get(stmt_id)?;
                (sql.as_slice(), *n, Arc::default())
            }
        };
        let lists = self.types_by_sql.get(sql)?;
        let mut found = None;
        let mut reading = 0;
        for t in lists.iter().filter(|t| t.len() == n as usize) {
            if let Some((types, _, decoded)) = parse_params_exact(raw_params, n as usize, Some(t)) {
                reading += 1;
                found = Some((types, decoded));
            }
        }
        if reading != 1 {
            return None;
        }
        let (types, decoded) = found?;
        *params = decoded;
        raw_params.clear();
        self.stats.types_from_sql += 1;
        Some(Inferred {
            backfill: None,
            stmt_id: *stmt_id,
            params: n,
            types,
            columns,
        })
    }

    /// Decodes `x`, an EXECUTE of a statement its session never prepared in this run, from
    /// the one PREPARE the evidence allows; `None` leaves it as it is.
    pub fn infer(&mut self, x: &mut Exchange) -> Option<Inferred> {
        let Command::Execute {
            stmt_id,
            flags,
            params,
            prepare_seen: false,
            raw_params,
        } = &mut x.command
        else {
            return None;
        };
        // Parameters with query attributes carry their own count: not read without the
        // connection's capabilities.
        if *flags & crate::command::EXECUTE_PARAMETER_COUNT_AVAILABLE != 0 {
            return None;
        }
        let list = self.by_id.get(stmt_id)?;
        let session = self.sessions.get(&x.session).and_then(|s| s.get(stmt_id));
        let (at, types, decoded) = match session {
            // Already resolved in this session: its types may be elided now.
            Some(slot) => {
                let e = list.get(slot.at)?;
                let known = (!slot.types.is_empty()).then_some(slot.types.as_slice());
                let (types, _, decoded) = parse_params_exact(raw_params, e.params as usize, known)?;
                (slot.at, types, decoded)
            }
            None => {
                let mut found = None;
                let mut agreeing = 0;
                for (i, e) in list.iter().enumerate() {
                    let Some((types, bound, decoded)) =
                        parse_params_exact(raw_params, e.params as usize, None)
                    else {
                        continue;
                    };
                    let types_agree = e.params == 0 || (bound && e.types.contains(&types));
                    if types_agree && answer_agrees(&x.response, &e.columns) {
                        agreeing += 1;
                        found = Some((i, types, decoded));
                    }
                }
                if agreeing > 1 {
                    self.stats.ambiguous += 1;
                    return None;
                }
                found?
            }
        };
        let e = &list[at];
        let first = session.is_none();
        let inferred = Inferred {
            backfill: first.then(|| Backfill {
                session: x.session,
                at_us: x.start_us,
                source: BackfillSource::Inferred {
                    from_session: e.from_session,
                },
                statements: vec![KnownStatement {
                    id: *stmt_id,
                    sql: e.sql.clone(),
                    params: e.params,
                }],
                ..Backfill::default()
            }),
            stmt_id: *stmt_id,
            params: e.params,
            types: types.clone(),
            columns: e.columns.clone(),
        };
        *params = decoded;
        raw_params.clear();
        if let Command::Execute { prepare_seen, .. } = &mut x.command {
            *prepare_seen = true;
        }
        if first {
            self.stats.statements += 1;
            self.sessions.entry(x.session).or_default().insert(
                inferred.stmt_id,
                Slot {
                    at,
                    types: Vec::new(),
                },
            );
        }
        self.stats.executes += 1;
        Some(inferred)
    }
}

#[cfg(test)]
mod tests {
    use myrr_recording::{
        EndReason, Login, OkInfo, Param, Prepared, ResultDigest, ResultSet, SessionEnd, Value,
    };

    use super::*;

    const LONGLONG: u8 = 8;
    const VAR_STRING: u8 = 253;

    fn exchange(session: SessionId, command: Command, response: Response) -> Exchange {
        Exchange {
            session,
            seq: 0,
            clone: 0,
            scheduled_us: None,
            start_us: 100,
            end_us: 200,
            command,
            response,
            more: vec![],
        }
    }

    fn col(name: &str) -> Column {
        Column {
            name: name.as_bytes().to_vec(),
            table: b"t".to_vec(),
            column_type: VAR_STRING,
            flags: 0,
            charset: 45,
            decimals: 0,
            length: 80,
        }
    }

    fn prepare(session: SessionId, id: u32, sql: &str, params: u16, cols: &[&str]) -> Event {
        Event::Exchange(exchange(
            session,
            Command::Prepare {
                sql: sql.as_bytes().to_vec(),
            },
            Response::Prepared(Prepared {
                stmt_id: id,
                params,
                columns: cols.len() as u16,
                warnings: 0,
                param_defs: vec![],
                column_defs: cols.iter().map(|c| col(c)).collect(),
            }),
        ))
    }

    fn params(i: i64, s: &str) -> Vec<Param> {
        vec![
            Param {
                column_type: LONGLONG,
                unsigned: false,
                value: Value::Int(i),
            },
            Param {
                column_type: VAR_STRING,
                unsigned: false,
                value: Value::Bytes(s.as_bytes().to_vec()),
            },
        ]
    }

    /// An EXECUTE of `id` as a client sends it; `sent_types`: what it sent before.
    fn execute_bytes(id: u32, p: &[Param], sent_types: &mut Vec<u8>) -> Vec<u8> {
        let mut b = Vec::new();
        crate::command::encode(
            &Command::Execute {
                stmt_id: id,
                flags: 0,
                params: p.to_vec(),
                prepare_seen: true,
                raw_params: vec![],
            },
            None,
            sent_types,
            &mut b,
        )
        .unwrap();
        b
    }

    fn decoded_execute(session: SessionId, id: u32, p: &[Param], response: Response) -> Event {
        Event::Exchange(exchange(
            session,
            Command::Execute {
                stmt_id: id,
                flags: 0,
                params: p.to_vec(),
                prepare_seen: true,
                raw_params: vec![],
            },
            response,
        ))
    }

    /// The EXECUTE as the decoder leaves it without the statement: its block undecoded.
    fn raw_execute(session: SessionId, bytes: &[u8], response: Response) -> Exchange {
        let cmd = crate::command::decode(bytes, Default::default()).unwrap();
        assert!(matches!(
            cmd,
            Command::Execute {
                prepare_seen: false,
                ..
            }
        ));
        exchange(session, cmd, response)
    }

    fn rows(cols: &[&str]) -> Response {
        Response::Rows(ResultSet {
            columns: cols.iter().map(|c| col(c)).collect::<Vec<_>>().into(),
            rows: 1,
            bytes: 10,
            digest: ResultDigest::default(),
            complete: true,
            status: 0,
            warnings: 0,
            error: None,
        })
    }

    fn ok() -> Response {
        Response::Ok(OkInfo {
            affected_rows: 1,
            last_insert_id: 0,
            status: 2,
            warnings: 0,
            info: vec![],
        })
    }

    /// Session 1 prepared statement 1 and bound (LONGLONG, VAR_STRING).
    fn seen_elsewhere(inf: &mut Inference, sql: &str, cols: &[&str]) {
        inf.observe(&prepare(1, 1, sql, 2, cols));
        inf.observe(&decoded_execute(1, 1, &params(1, "a"), rows(cols)));
    }

    #[test]
    fn a_prepare_on_another_session_decodes_an_execute_when_everything_agrees() {
        let mut inf = Inference::default();
        let cols = ["a", "b"];
        seen_elsewhere(&mut inf, "SELECT a, b FROM t WHERE id = ? AND c = ?", &cols);
        let mut sent = Vec::new();
        let first = execute_bytes(1, &params(7, "x"), &mut sent);
        let mut x = raw_execute(2, &first, rows(&cols));
        let got = inf.infer(&mut x).expect("inferred");
        let b = got.backfill.expect("first: a backfill");
        assert_eq!(b.source, BackfillSource::Inferred { from_session: 1 });
        assert_eq!(
            (b.session, b.statements[0].id, b.statements[0].params),
            (2, 1, 2)
        );
        assert!(
            matches!(&x.command, Command::Execute { prepare_seen: true, params: p, raw_params, .. }
            if *p == params(7, "x") && raw_params.is_empty())
        );
        inf.observe(&Event::Exchange(x));
        // The next one sends no types: the session's own are used, no second backfill.
        let second = execute_bytes(1, &params(8, "y"), &mut sent);
        let mut x = raw_execute(2, &second, rows(&cols));
        let got = inf.infer(&mut x).expect("inferred again");
        assert!(got.backfill.is_none());
        assert!(matches!(&x.command, Command::Execute { params: p, .. } if *p == params(8, "y")));
        assert_eq!(inf.stats.statements, 1);
        assert_eq!(inf.stats.executes, 2);
    }

    #[test]
    fn two_statements_with_the_same_id_and_parameter_types_are_ambiguous() {
        let mut inf = Inference::default();
        let cols = ["a", "b"];
        seen_elsewhere(&mut inf, "SELECT a, b FROM t WHERE id = ? AND c = ?", &cols);
        // Session 3 numbered another statement 1, same parameters, same columns.
        inf.observe(&prepare(
            3,
            1,
            "SELECT a, b FROM t WHERE id > ? AND c < ?",
            2,
            &cols,
        ));
        inf.observe(&decoded_execute(3, 1, &params(1, "a"), rows(&cols)));
        let bytes = execute_bytes(1, &params(7, "x"), &mut Vec::new());
        let mut x = raw_execute(2, &bytes, rows(&cols));
        assert!(inf.infer(&mut x).is_none());
        assert!(matches!(
            x.command,
            Command::Execute {
                prepare_seen: false,
                ..
            }
        ));
        assert_eq!(inf.stats.ambiguous, 1);
    }

    #[test]
    fn any_disagreement_leaves_the_execute_unprepared() {
        let cols = ["a", "b"];
        let sql = "SELECT a, b FROM t WHERE id = ? AND c = ?";
        let fresh = || {
            let mut inf = Inference::default();
            seen_elsewhere(&mut inf, sql, &cols);
            inf
        };
        let bytes = execute_bytes(1, &params(7, "x"), &mut Vec::new());
        // Other columns in the answer.
        let mut x = raw_execute(2, &bytes, rows(&["a", "z"]));
        assert!(fresh().infer(&mut x).is_none());
        // An OK where the statement has a result set.
        let mut x = raw_execute(2, &bytes, ok());
        assert!(fresh().infer(&mut x).is_none());
        // Another statement id.
        let other = execute_bytes(2, &params(7, "x"), &mut Vec::new());
        let mut x = raw_execute(2, &other, rows(&cols));
        assert!(fresh().infer(&mut x).is_none());
        // Other parameter types (an unsigned first parameter).
        let mut p = params(7, "x");
        p[0].unsigned = true;
        let bytes_u = execute_bytes(1, &p, &mut Vec::new());
        let mut x = raw_execute(2, &bytes_u, rows(&cols));
        assert!(fresh().infer(&mut x).is_none());
        // Types elided on the first EXECUTE seen: nothing to check them against.
        let mut sent = Vec::new();
        let _ = execute_bytes(1, &params(7, "x"), &mut sent);
        let elided = execute_bytes(1, &params(8, "y"), &mut sent);
        let mut x = raw_execute(2, &elided, rows(&cols));
        assert!(fresh().infer(&mut x).is_none());
        // A byte too many.
        let mut long = bytes.clone();
        long.push(0);
        let mut x = raw_execute(2, &long, rows(&cols));
        assert!(fresh().infer(&mut x).is_none());
        // The statement was closed, and its session ended: still a known statement text,
        // but the types seen stay evidence (the same application).
        let mut inf = fresh();
        inf.observe(&Event::SessionEnd(SessionEnd {
            session: 1,
            end_us: 300,
            reason: EndReason::Quit,
            login: Login::Ok,
            exchanges: 2,
        }));
        let mut x = raw_execute(2, &bytes, rows(&cols));
        assert!(inf.infer(&mut x).is_some());
    }

    /// A backfill of session `session`: statement `id` is `sql` with two parameters.
    fn backfilled(session: SessionId, id: u32, sql: &str) -> Event {
        Event::Backfill(Backfill {
            session,
            source: BackfillSource::Server { connection_id: 1 },
            statements: vec![KnownStatement {
                id,
                sql: sql.as_bytes().to_vec(),
                params: 2,
            }],
            ..Backfill::default()
        })
    }

    /// An EXECUTE of a backfilled statement whose types the client bound before the capture.
    fn typeless(session: SessionId, id: u32, p: &[Param]) -> Exchange {
        let mut sent = Vec::new();
        let _ = execute_bytes(id, p, &mut sent); // the EXECUTE before the capture
        let bytes = execute_bytes(id, p, &mut sent);
        let mut x = raw_execute(session, &bytes, ok());
        if let Command::Execute { prepare_seen, .. } = &mut x.command {
            *prepare_seen = true; // the session knows the statement, from its backfill
        }
        x
    }

    #[test]
    fn types_bound_before_the_capture_are_read_with_the_same_sql_s_types_elsewhere() {
        let sql = "INSERT INTO t VALUES (?, ?)";
        let mut inf = Inference::default();
        inf.observe(&backfilled(2, 40, sql));
        // Nothing known of its types yet.
        let mut x = typeless(2, 40, &params(5, "e"));
        assert!(inf.retype(&mut x).is_none());
        // Session 1 prepared the same SQL (another id) and bound its types.
        inf.observe(&prepare(1, 3, sql, 2, &[]));
        inf.observe(&decoded_execute(1, 3, &params(1, "a"), ok()));
        let got = inf.retype(&mut x).expect("read with session 1's types");
        assert_eq!(got.types, vec![(LONGLONG, false), (VAR_STRING, false)]);
        assert!(
            matches!(&x.command, Command::Execute { params: p, raw_params, .. }
            if *p == params(5, "e") && raw_params.is_empty())
        );
        assert_eq!(inf.stats.types_from_sql, 1);
    }

    #[test]
    fn types_are_not_guessed_when_two_lists_read_the_block() {
        let sql = "INSERT INTO t VALUES (?, ?)";
        let mut inf = Inference::default();
        inf.observe(&backfilled(2, 40, sql));
        inf.observe(&prepare(1, 3, sql, 2, &[]));
        inf.observe(&decoded_execute(1, 3, &params(1, "a"), ok()));
        // Another session bound a DOUBLE where session 1 bound a LONGLONG: 8 bytes either way.
        let mut p = params(1, "a");
        p[0].column_type = 5;
        p[0].value = Value::Double(1.5);
        inf.observe(&prepare(3, 8, sql, 2, &[]));
        inf.observe(&decoded_execute(3, 8, &p, ok()));
        let mut x = typeless(2, 40, &params(5, "e"));
        assert!(inf.retype(&mut x).is_none());
        assert!(matches!(&x.command, Command::Execute { params, .. } if params.is_empty()));
    }

    proptest::proptest! {
        /// Arbitrary bytes, counts and known types: no panic, and what parses used every byte.
        #[test]
        fn parsing_a_parameter_block_never_panics(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            n in 0usize..12,
            known in proptest::collection::vec((proptest::prelude::any::<u8>(), proptest::prelude::any::<bool>()), 0..12),
        ) {
            let _ = parse_params_exact(&raw, n, Some(&known));
            let _ = parse_params_exact(&raw, n, None);
        }

        /// A block a client sends with its types reads back as the parameters it carried.
        #[test]
        fn a_block_with_types_reads_back(ints in proptest::collection::vec(proptest::prelude::any::<i64>(), 1..6), s in "[a-z]{0,20}") {
            let mut p: Vec<Param> = ints.iter().map(|&i| Param { column_type: LONGLONG, unsigned: false, value: Value::Int(i) }).collect();
            p.push(Param { column_type: VAR_STRING, unsigned: false, value: Value::Bytes(s.into_bytes()) });
            let bytes = execute_bytes(1, &p, &mut Vec::new());
            let Command::Execute { raw_params, .. } = crate::command::decode(&bytes, Default::default()).unwrap() else {
                unreachable!()
            };
            let (types, bound, got) = parse_params_exact(&raw_params, p.len(), None).unwrap();
            proptest::prop_assert!(bound);
            proptest::prop_assert_eq!(types.len(), p.len());
            proptest::prop_assert_eq!(got, p);
        }
    }
}
