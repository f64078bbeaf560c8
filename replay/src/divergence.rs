//! `--sync`: rows a replay left different from production's, so the statements that later
//! touch them are labelled (`after-divergence`) rather than taken for the server's fault.
//!
//! A write diverges when its outcome differs from the recorded one: an error on one side
//! only, or other affected rows. A deadlock's victim chosen differently rolls back a whole
//! transaction, so all its writes diverge, and every later statement of that transaction in
//! its session follows a divergence. A write that went out of the recorded order diverges
//! only for the statements recorded before it (they ran after it here, before it there).
//! Rows are told by [`crate::footprint`]; marks are kept for the whole replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use rustc_hash::FxHashMap;

use myrr_recording::{Command, OrderLabel, Response};

use crate::dispatch::Recorded;
use crate::footprint::{rows_meet, Cond, Footprint, PrimaryKeys, Shape};
use crate::readonly::first_keyword;
use crate::sync::Class;

/// Marks kept per table before they fold into "all its rows".
const MARKS_PER_TABLE: usize = 1024;

/// MySQL's and MariaDB's "Deadlock found when trying to get lock" (the transaction is rolled
/// back) and "Lock wait timeout exceeded" (the statement is).
pub(crate) const ER_LOCK_DEADLOCK: u16 = 1213;
pub(crate) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The rows marked in one replay.
pub(crate) struct Divergence {
    /// The candidate's primary keys (empty when they could not be asked: rows are then told
    /// by table only).
    pub(crate) keys: PrimaryKeys,
    /// Anything marked yet (most replays mark nothing: then no footprint is worked out).
    any: AtomicBool,
    marks: RwLock<Marks>,
}

#[derive(Default)]
struct Marks {
    /// A write whose table is unknown diverged: every row.
    everything: bool,
    tables: FxHashMap<String, Vec<Mark>>,
}

struct Mark {
    /// `None`: all the table's rows.
    rows: Option<Vec<Vec<Cond>>>,
    /// Only statements recorded to start before this (µs) are affected; `u64::MAX`: all.
    before_us: u64,
}

impl Divergence {
    pub(crate) fn new(keys: PrimaryKeys) -> Self {
        Self {
            keys,
            any: AtomicBool::new(false),
            marks: RwLock::default(),
        }
    }

    /// Whether anything is marked.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Marks the rows of `fp` as different from production's for the statements recorded to
    /// start before `before_us` (`u64::MAX`: for all).
    pub(crate) fn mark(&self, fp: &Footprint, before_us: u64) {
        let mut m = self.marks.write().unwrap_or_else(|e| e.into_inner());
        match fp {
            Footprint::Nothing => return,
            Footprint::Everything => m.everything = true,
            Footprint::Table(t, rows) => {
                let marks = m.tables.entry(t.clone()).or_default();
                if marks
                    .iter()
                    .any(|k| k.before_us >= before_us && (k.rows.is_none() || k.rows == *rows))
                {
                    return;
                }
                if marks.len() >= MARKS_PER_TABLE {
                    let folded = marks.iter().map(|k| k.before_us).max().unwrap_or(0);
                    marks.clear();
                    marks.push(Mark {
                        rows: None,
                        before_us: folded,
                    });
                }
                marks.push(Mark {
                    rows: rows.clone(),
                    before_us,
                });
            }
        }
        self.any.store(true, Ordering::Relaxed);
    }

    /// Whether `fp`, of a statement recorded to start at `start_us`, may touch marked rows.
    pub(crate) fn touches(&self, fp: &Footprint, start_us: u64) -> bool {
        if !self.any() {
            return false;
        }
        let m = self.marks.read().unwrap_or_else(|e| e.into_inner());
        let hit = |marks: &Vec<Mark>, rows: Option<&[Vec<Cond>]>| {
            marks
                .iter()
                .any(|k| start_us < k.before_us && rows_meet(k.rows.as_deref(), rows))
        };
        match fp {
            Footprint::Nothing => false,
            _ if m.everything => true,
            Footprint::Everything => m.tables.values().any(|marks| hit(marks, None)),
            Footprint::Table(t, rows) => m.tables.get(t).is_some_and(|k| hit(k, rows.as_deref())),
        }
    }
}

/// Writes an open transaction keeps for a later deadlock; past this its table's rows stand
/// for them.
const TXN_WRITES: usize = 1024;

/// One session's part: its open transaction's writes, and whether that transaction already
/// diverged.
#[derive(Default)]
pub(crate) struct SessionDivergence {
    txn_writes: Vec<Footprint>,
    txn_diverged: bool,
    /// Recorded statement id → what its text says about its rows.
    shapes: FxHashMap<u32, Shape>,
}

impl SessionDivergence {
    /// The labels an answered exchange gets ([`OrderLabel::LOCK_CONFLICT`],
    /// [`OrderLabel::AFTER_DIVERGENCE`]), and what it marks: `sql` is its statement's text
    /// (a prepared statement's), `labels` those it has already.
    pub(crate) fn answered(
        &mut self,
        d: &Divergence,
        x: &Recorded,
        sql: Option<&[u8]>,
        class: Class,
        response: &Response,
        labels: u8,
    ) -> u8 {
        if let (Command::Prepare { .. }, Some(id)) = (&x.command, x.prepared_id) {
            self.shapes.remove(&id);
        }
        if !matches!(x.command, Command::Query { .. } | Command::Execute { .. }) {
            return 0;
        }
        let replayed_code = match response {
            Response::Err(e) => e.code,
            _ => 0,
        };
        let differs = match response {
            // Not sent: nothing happened on the target to differ.
            Response::Skipped(_) | Response::Missing(_) => false,
            Response::Err(e) => e.code != x.recorded_code,
            Response::Ok(ok) => x.recorded_err || (class.write && ok.affected_rows != x.affected),
            _ => x.recorded_err,
        };
        let lock = |c: u16| c == ER_LOCK_DEADLOCK || c == ER_LOCK_WAIT_TIMEOUT;
        let deadlock =
            differs && (replayed_code == ER_LOCK_DEADLOCK || x.recorded_code == ER_LOCK_DEADLOCK);
        let out_of_order = labels & OrderLabel::OUT_OF_ORDER != 0;
        let open_write = class.write && !class.commit;
        let mut out = 0;
        if differs && (lock(replayed_code) || lock(x.recorded_code)) {
            out |= OrderLabel::LOCK_CONFLICT;
        }
        let fp = (open_write || differs || out_of_order || self.txn_diverged || d.any())
            .then(|| self.footprint(d, x, sql));
        if self.txn_diverged || fp.as_ref().is_some_and(|f| d.touches(f, x.start_us)) {
            out |= OrderLabel::AFTER_DIVERGENCE;
        }
        if let Some(fp) = fp {
            if deadlock {
                // One side rolled the whole transaction back, the other did not.
                for w in self.txn_writes.drain(..) {
                    d.mark(&w, u64::MAX);
                }
                self.txn_diverged = true;
            }
            if class.write && (differs || self.txn_diverged) {
                d.mark(&fp, u64::MAX);
            } else if class.write && out_of_order {
                d.mark(&fp, x.start_us);
            }
            if open_write {
                if self.txn_writes.len() >= TXN_WRITES {
                    let all = self
                        .txn_writes
                        .iter()
                        .map(Footprint::tables)
                        .collect::<Vec<_>>();
                    self.txn_writes = all;
                    self.txn_writes.dedup();
                }
                self.txn_writes.push(fp);
            }
        }
        let ends = class.commit
            || sql.is_some_and(|s| matches!(first_keyword(s).as_str(), "COMMIT" | "ROLLBACK"));
        if ends {
            self.txn_writes.clear();
            self.txn_diverged = false;
        }
        out
    }

    fn footprint(&mut self, d: &Divergence, x: &Recorded, sql: Option<&[u8]>) -> Footprint {
        let rows = x.affected;
        match &x.command {
            Command::Query { sql, .. } => Shape::of(sql).footprint(&[], &d.keys, x.insert_id, rows),
            Command::Execute {
                stmt_id, params, ..
            } => {
                let Some(sql) = sql else {
                    return Footprint::Everything;
                };
                self.shapes
                    .entry(*stmt_id)
                    .or_insert_with(|| Shape::of(sql))
                    .footprint(params, &d.keys, x.insert_id, rows)
            }
            _ => Footprint::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::Key;

    fn id(t: &str, v: i128) -> Footprint {
        Footprint::Table(t.into(), Some(vec![vec![Cond::In(vec![Key::Int(v)])]]))
    }

    #[test]
    fn marked_rows_are_touched_by_later_statements_on_them() {
        let d = Divergence::new(PrimaryKeys::new());
        assert!(!d.touches(&Footprint::Everything, 0));
        d.mark(&id("a", 1), u64::MAX);
        assert!(d.touches(&id("a", 1), 5));
        assert!(!d.touches(&id("a", 2), 5));
        assert!(!d.touches(&id("b", 1), 5));
        assert!(d.touches(&Footprint::Table("a".into(), None), 5));
        assert!(d.touches(&Footprint::Everything, 5));
        assert!(!d.touches(&Footprint::Nothing, 5));
        // Out of order: only for what was recorded before the write.
        d.mark(&id("b", 1), 100);
        assert!(d.touches(&id("b", 1), 99));
        assert!(!d.touches(&id("b", 1), 100));
        // A write to an unknown table: everything.
        d.mark(&Footprint::Everything, u64::MAX);
        assert!(d.touches(&id("c", 3), 5));
    }

    #[test]
    fn many_marks_fold_into_the_whole_table() {
        let d = Divergence::new(PrimaryKeys::new());
        for i in 0..(MARKS_PER_TABLE as i128 + 10) {
            d.mark(&id("a", i), u64::MAX);
        }
        assert!(d.touches(&id("a", -5), 0));
        assert!(d.marks.read().unwrap().tables["a"].len() <= MARKS_PER_TABLE);
    }
}
