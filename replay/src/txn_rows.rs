//! `--sync-rows`: the rows each commit point and view point of the recording stands for, so
//! that an exchange waits only for the earlier points whose rows it may share.
//!
//! Without it, an exchange waits for every commit that ended before it in the recording,
//! whatever rows it wrote, and the replay runs the recorded order one commit after another:
//! on the TPC-C-like bench no single order rule's removal made the replay faster, the order
//! itself was the time. A commit point stands for its transaction's writes and locking
//! reads (what another session's statement can see or wait for); a view point for every
//! statement of its transaction from the view on (InnoDB's REPEATABLE READ reads them all
//! from that view). The commit feeder reads the recording ahead of the replay and works
//! them out ([`TxnRows`]): a view point is registered once its transaction has ended in the
//! recording (or [`HOLD_US`] after it began, as every row), and the feeder's read position
//! for view points stays behind the views it holds.
//!
//! Rows are told by the statement's text and the candidate's primary keys (see
//! [`crate::footprint`]); what the text does not tell for sure is every row of the table or
//! of every table, never fewer. A table a statement reaches through another — a view, a
//! table with triggers, either side of a foreign key — counts as every table, and so does
//! every statement after a schema change. When the candidate could not say which tables
//! those are, every point stands for every row (the order is then the recorded one).

use std::collections::HashMap;
use std::sync::Arc;

use myrr_recording::{Command, Exchange, Response};
use rustc_hash::FxHashMap;

use crate::divergence::footprint;
use crate::footprint::{Footprint, PrimaryKeys, Reach, Rows, Shape};
use crate::readonly::first_keyword;
use crate::sync::{Class, CommitKey};

/// A view point is held (not registered) at most this long after it began, in recorded
/// time; then it is registered as every row.
pub(crate) const HOLD_US: u64 = 1_000_000;

/// A view point to register.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) key: CommitKey,
    pub(crate) start_us: u64,
    pub(crate) rows: Rows,
}

#[derive(Default)]
struct Open {
    /// The transaction's writes and locking reads so far.
    writes: Rows,
    /// Its view point, held until the transaction ends.
    view: Option<View>,
}

/// The points an exchange is, as the feeder registers them.
#[derive(Debug, Default)]
pub(crate) struct Points {
    /// Its commit point's rows (`class.commit`).
    pub(crate) commit: Option<Arc<Rows>>,
    /// The view point to register now: its own when it is an autocommit read, or its
    /// session's held one when it ends the transaction.
    pub(crate) view: Option<View>,
    /// Its write point's rows (`class.locks`, for `--sync-writes`): what its own statement
    /// may write or lock.
    pub(crate) write: Option<Arc<Rows>>,
}

/// Works out the rows of each point, in the order the feeder reads the recording.
pub(crate) struct TxnRows {
    /// `None`: every point stands for every row.
    tables: Option<(Arc<PrimaryKeys>, Arc<Reach>)>,
    /// Commit and view points stand for their transaction's rows (`--sync-rows`); else for
    /// every row.
    transactions: bool,
    /// Write points stand for their statement's rows (`--sync-writes rows`); else for every
    /// row.
    statements: bool,
    shapes: HashMap<u64, FxHashMap<u32, Shape>>,
    /// (session, recorded statement id) → the prepared statement's text.
    prepared: HashMap<(u64, u32), Vec<u8>>,
    open: HashMap<u64, Open>,
}

impl TxnRows {
    /// `tables`: the candidate's primary keys and the tables reached through others (`None`:
    /// every point stands for every row); which points have rows of their own.
    pub(crate) fn new(
        tables: Option<(Arc<PrimaryKeys>, Arc<Reach>)>,
        transactions: bool,
        statements: bool,
    ) -> Self {
        Self {
            tables: tables.filter(|_| transactions || statements),
            transactions,
            statements,
            shapes: HashMap::new(),
            prepared: HashMap::new(),
            open: HashMap::new(),
        }
    }

    /// An exchange read: the points it is, with their rows.
    pub(crate) fn exchange(&mut self, x: &Exchange, class: Class, view_key: CommitKey) -> Points {
        if let (Command::Prepare { sql }, Response::Prepared(p), Some(_)) =
            (&x.command, &x.response, &self.tables)
        {
            self.prepared.insert((x.session, p.stmt_id), sql.clone());
            if let Some(s) = self.shapes.get_mut(&x.session) {
                s.remove(&p.stmt_id);
            }
        }
        // Worked out only for the points that use it.
        let fp = match self.transactions || (self.statements && class.locks) {
            true => self.footprint(x),
            false => None,
        };
        let write = class.locks.then(|| {
            Arc::new(match &fp {
                Some(fp) if self.statements => told(Rows::of(fp.clone())),
                _ => Rows::everything(),
            })
        });
        let (commit, view) = match fp.filter(|_| self.transactions) {
            Some(fp) => self.transaction(x, class, view_key, fp),
            None => {
                let view = class.view.then(|| View {
                    key: view_key,
                    start_us: x.start_us,
                    rows: Rows::everything(),
                });
                (class.commit.then(|| Arc::new(Rows::everything())), view)
            }
        };
        Points {
            commit,
            view,
            write,
        }
    }

    /// `--sync-rows`: the rows of the commit point `x` is (`class.commit`), and the view
    /// point to register now, if any.
    fn transaction(
        &mut self,
        x: &Exchange,
        class: Class,
        view_key: CommitKey,
        fp: Footprint,
    ) -> (Option<Arc<Rows>>, Option<View>) {
        let open = self.open.entry(x.session).or_default();
        if let Some(v) = &mut open.view {
            v.rows.add(fp.clone());
        }
        if class.write || class.locks {
            open.writes.add(fp.clone());
        }
        let commit = class
            .commit
            .then(|| Arc::new(told(std::mem::take(&mut open.writes))));
        let mut done = None;
        if class.view {
            let view = View {
                key: view_key,
                start_us: x.start_us,
                rows: Rows::of(fp),
            };
            match class.ended {
                true => done = Some(view),
                false => open.view = Some(view),
            }
        } else if class.ended {
            done = open.view.take();
        }
        if class.ended {
            open.writes = Rows::default();
        }
        if open.view.is_none() && open.writes.is_empty() {
            self.open.remove(&x.session);
        }
        (commit, done)
    }

    /// What `x`'s statement may touch; `None` when every point stands for every row.
    fn footprint(&mut self, x: &Exchange) -> Option<Footprint> {
        let (keys, reach) = self.tables.as_ref()?;
        let sql = match &x.command {
            Command::Query { sql, .. } => {
                if matches!(
                    first_keyword(sql).as_str(),
                    "CREATE" | "ALTER" | "RENAME" | "DROP"
                ) {
                    reach.schema_changed();
                }
                None
            }
            Command::Execute { stmt_id, .. } => match self.prepared.get(&(x.session, *stmt_id)) {
                Some(sql) => Some(sql.as_slice()),
                // Prepared before the capture began: its text is not known here.
                None => return Some(Footprint::Everything),
            },
            _ => None,
        };
        let ok = match &x.response {
            Response::Ok(ok) => (ok.last_insert_id, ok.affected_rows),
            _ => (0, 0),
        };
        let shapes = self.shapes.entry(x.session).or_default();
        Some(reach.widen(footprint(shapes, keys, &x.command, ok, sql)))
    }

    /// The session ended: its held view point, to register.
    pub(crate) fn session_ended(&mut self, session: u64) -> Option<View> {
        self.shapes.remove(&session);
        self.prepared.retain(|(s, _), _| *s != session);
        self.open.remove(&session).and_then(|o| o.view)
    }

    /// The held view points that began more than [`HOLD_US`] before `at_us`, as every row.
    pub(crate) fn overdue(&mut self, at_us: u64) -> Vec<View> {
        let mut out = Vec::new();
        for open in self.open.values_mut() {
            if open
                .view
                .as_ref()
                .is_some_and(|v| v.start_us.saturating_add(HOLD_US) < at_us)
            {
                if let Some(mut v) = open.view.take() {
                    v.rows = Rows::everything();
                    out.push(v);
                }
            }
        }
        out
    }

    /// The earliest start among the view points held.
    pub(crate) fn holding_since(&self) -> Option<u64> {
        self.open
            .values()
            .filter_map(|o| o.view.as_ref().map(|v| v.start_us))
            .min()
    }
}

/// Rows a statement's text told: none at all (no table named) is every row.
fn told(rows: Rows) -> Rows {
    match rows.is_empty() {
        true => Rows::everything(),
        false => rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::tests::{ids, ok, rows};
    use crate::sync::{view_key, Classifier};

    const IN_TRANS: u16 = 0x0003;
    const AUTO: u16 = 0x0002;

    fn tracker() -> TxnRows {
        let keys: PrimaryKeys = [("t".to_string(), vec!["id".to_string()])]
            .into_iter()
            .collect();
        let reach = Reach::new(["v".to_string()].into_iter().collect());
        TxnRows::new(Some((Arc::new(keys), Arc::new(reach))), true, true)
    }

    /// Reads `xs` as the feeder does: the commit points' rows and the view points
    /// registered, each with the position after which it was.
    fn feed(t: &mut TxnRows, xs: &[Exchange]) -> (Vec<Rows>, Vec<(usize, View)>) {
        let (mut c, mut commits, mut views) = (Classifier::default(), vec![], vec![]);
        for (i, x) in xs.iter().enumerate() {
            let class = c.classify(x);
            let points = t.exchange(x, class, view_key(x, class));
            commits.extend(points.commit.map(|r| (*r).clone()));
            views.extend(points.view.map(|v| (i, v)));
        }
        (commits, views)
    }

    #[test]
    fn a_commit_stands_for_its_writes_and_a_view_for_its_transaction_from_the_view_on() {
        let mut t = tracker();
        let xs = [
            ok(1, 0, "BEGIN", IN_TRANS, (0, 1)),
            rows(1, 1, "SELECT v FROM t WHERE id = 1", IN_TRANS, (2, 3)),
            rows(1, 2, "SELECT v FROM t WHERE id = 2", IN_TRANS, (4, 5)),
            ok(1, 3, "UPDATE t SET v = 1 WHERE id = 3", IN_TRANS, (6, 7)),
            ok(1, 4, "COMMIT", AUTO, (8, 9)),
            rows(2, 0, "SELECT v FROM t WHERE id = 7", AUTO, (10, 11)),
            ok(2, 1, "UPDATE t SET v = 2 WHERE id = 8", AUTO, (12, 13)),
        ];
        let (commits, views) = feed(&mut t, &xs);
        assert_eq!(commits, vec![ids("t", &[3]), ids("t", &[8])]);
        // The transaction's view point is registered as it ends (after exchange 4), with
        // every row its statements read or wrote; the autocommit read at once.
        let mut txn = ids("t", &[1]);
        txn.add(Footprint::Table("t".into(), ids_boxes(2)));
        txn.add(Footprint::Table("t".into(), ids_boxes(3)));
        assert_eq!(views.len(), 2);
        assert_eq!((views[0].0, views[0].1.key.1, views[0].1.key.2), (4, 1, 1));
        assert_eq!(views[0].1.rows, txn);
        assert_eq!((views[1].0, &views[1].1.rows), (5, &ids("t", &[7])));
        assert_eq!(t.holding_since(), None);
    }

    fn ids_boxes(i: i128) -> Option<Vec<Vec<crate::footprint::Cond>>> {
        Some(vec![vec![crate::footprint::Cond::In(vec![
            crate::footprint::Key::Int(i),
        ])]])
    }

    #[test]
    fn a_held_view_keeps_the_read_position_back_until_its_transaction_ends() {
        let mut t = tracker();
        let (_, views) = feed(
            &mut t,
            &[
                ok(1, 0, "BEGIN", IN_TRANS, (0, 1)),
                rows(1, 1, "SELECT v FROM t WHERE id = 1", IN_TRANS, (500, 600)),
            ],
        );
        assert!(views.is_empty());
        assert_eq!(t.holding_since(), Some(500));
        // Open for longer than HOLD_US: registered as every row.
        assert!(t.overdue(500 + HOLD_US).is_empty());
        let late = t.overdue(501 + HOLD_US);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].rows, Rows::everything());
        assert_eq!(t.holding_since(), None);
        // A session that ends with its transaction open: its view as it stands.
        feed(
            &mut t,
            &[
                ok(2, 0, "BEGIN", IN_TRANS, (0, 1)),
                rows(2, 1, "SELECT v FROM t WHERE id = 4", IN_TRANS, (700, 800)),
            ],
        );
        assert_eq!(t.session_ended(2).map(|v| v.rows), Some(ids("t", &[4])));
    }

    #[test]
    fn what_rows_cannot_tell_is_every_row() {
        let mut t = tracker();
        let (commits, views) = feed(
            &mut t,
            &[
                // A view, a table with triggers or a foreign key.
                ok(1, 0, "UPDATE v SET a = 1 WHERE id = 1", AUTO, (0, 1)),
                // No table named.
                ok(1, 1, "CALL p()", AUTO, (2, 3)),
                rows(1, 2, "SELECT v FROM t WHERE id = 1", AUTO, (4, 5)),
            ],
        );
        assert_eq!(commits, vec![Rows::everything(), Rows::everything()]);
        assert_eq!(views[0].1.rows, ids("t", &[1]));
        // An EXECUTE of a statement prepared before the capture began, read from a view.
        let mut exec = ok(1, 4, "", IN_TRANS, (8, 9));
        exec.command = Command::Execute {
            stmt_id: 9,
            flags: 0,
            params: vec![],
            prepare_seen: false,
            raw_params: vec![],
        };
        let (_, views) = feed(
            &mut t,
            &[
                ok(1, 3, "BEGIN", IN_TRANS, (6, 7)),
                rows(1, 4, "SELECT v FROM t WHERE id = 1", IN_TRANS, (8, 9)),
                exec,
                ok(1, 6, "COMMIT", AUTO, (12, 13)),
            ],
        );
        assert_eq!(views[0].1.rows, Rows::everything());
        // After a schema change, every row.
        let (commits, _) = feed(
            &mut t,
            &[
                ok(1, 7, "ALTER TABLE t ADD COLUMN b INT", AUTO, (14, 15)),
                ok(1, 8, "UPDATE t SET v = 1 WHERE id = 1", AUTO, (16, 17)),
            ],
        );
        assert_eq!(commits, vec![Rows::everything(), Rows::everything()]);
        // Without the candidate's tables: every point stands for every row.
        let mut blind = TxnRows::new(None, true, true);
        let (commits, views) = feed(
            &mut blind,
            &[
                ok(1, 0, "UPDATE t SET v = 1 WHERE id = 1", AUTO, (0, 1)),
                rows(1, 1, "SELECT v FROM t WHERE id = 1", AUTO, (2, 3)),
            ],
        );
        assert_eq!(commits, vec![Rows::everything()]);
        assert_eq!(views[0].1.rows, Rows::everything());
    }

    #[test]
    fn a_write_point_stands_for_its_own_statements_rows() {
        let keys: PrimaryKeys = [("t".to_string(), vec!["id".to_string()])]
            .into_iter()
            .collect();
        let tables = Some((Arc::new(keys), Arc::new(Reach::new(Default::default()))));
        let xs = [
            ok(1, 0, "BEGIN", IN_TRANS, (0, 1)),
            ok(1, 1, "UPDATE t SET v = 1 WHERE id = 3", IN_TRANS, (2, 3)),
            rows(
                1,
                2,
                "SELECT v FROM t WHERE id = 4 FOR UPDATE",
                IN_TRANS,
                (4, 5),
            ),
            ok(1, 3, "UPDATE t SET v = 2 WHERE v > 9", IN_TRANS, (6, 7)),
            ok(1, 4, "COMMIT", AUTO, (8, 9)),
        ];
        let writes = |t: &mut TxnRows| {
            let mut c = Classifier::default();
            let mut out = vec![];
            for x in &xs {
                let class = c.classify(x);
                let p = t.exchange(x, class, view_key(x, class));
                out.push((
                    p.write.map(|r| (*r).clone()),
                    p.commit.map(|r| (*r).clone()),
                ));
            }
            out
        };
        // Statements' rows only: the commit stands for every row, each write for its own.
        let got = writes(&mut TxnRows::new(tables.clone(), false, true));
        let mut all_t = Rows::default();
        all_t.add(Footprint::Table("t".into(), None));
        assert_eq!(
            got,
            vec![
                (None, None),
                (Some(ids("t", &[3])), None),
                (Some(ids("t", &[4])), None),
                (Some(all_t), None),
                (None, Some(Rows::everything())),
            ]
        );
        // Neither: every write point is every row.
        let got = writes(&mut TxnRows::new(tables, false, false));
        assert_eq!(got[1].0, Some(Rows::everything()));
        assert_eq!(got[2].0, Some(Rows::everything()));
    }
}
