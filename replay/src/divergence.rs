//! `--sync`: rows a replay left different from production's, so the statements that later
//! touch them are labelled (`after-divergence`) rather than taken for the server's fault.
//!
//! A write diverges when its outcome differs from the recorded one: an error on one side
//! only, or other affected rows. A deadlock's victim chosen differently rolls back a whole
//! transaction, so all its writes diverge, and every later statement of that transaction in
//! its session follows a divergence — unless the session made it end as production's did
//! (`--sync-deadlocks`: rolled back here too, or sent again; see `session`): a transaction
//! rolled back here as it was there leaves nothing marked. A write that went out of the recorded order diverges
//! only for the statements recorded before it (they ran after it here, before it there);
//! one of those that writes its rows too, and does more than add to them, leaves them
//! different for good. So does a write sent ahead of a commit that was still in flight when
//! production answered it (`sync::CommitOrder::overtakes`): InnoDB lets a lock go before
//! the COMMIT's answer, and production may have run the write after that transaction's.
//! Rows are told by [`crate::footprint`]; marks are kept for the whole replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use rustc_hash::FxHashMap;

use myrr_recording::{Command, OrderLabel, Response};

use crate::dispatch::Recorded;
use crate::footprint::{rows_meet, Cond, Footprint, Key, PrimaryKeys, Reach, Rows, Shape};
use crate::readonly::first_keyword;
use crate::sync::Class;

/// Marks kept per table before they fold into "all its rows".
const MARKS_PER_TABLE: usize = 1024;

/// MySQL's and MariaDB's "Deadlock found when trying to get lock" (the transaction is rolled
/// back) and "Lock wait timeout exceeded" (the statement is).
pub(crate) const ER_LOCK_DEADLOCK: u16 = 1213;
pub(crate) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The rows marked in one replay (in one of its clones: clones are independent copies of the
/// workload, as in `sync`).
pub(crate) struct Divergence {
    /// The candidate's primary keys (empty when they could not be asked: rows are then told
    /// by table only).
    pub(crate) keys: std::sync::Arc<PrimaryKeys>,
    /// The tables a statement reaches through others (`None`: not known; `--sync-rows`
    /// then orders every statement against every other).
    pub(crate) reach: Option<std::sync::Arc<Reach>>,
    /// Anything marked yet (most replays mark nothing: then no footprint is worked out).
    any: AtomicBool,
    marks: RwLock<Marks>,
}

#[derive(Default)]
struct Marks {
    /// A write whose table is unknown diverged: every row.
    everything: bool,
    tables: FxHashMap<String, TableMarks>,
}

/// One table's marks: rows marked by one integer key column (the common case: an `id`),
/// kept by key; the others as they came.
#[derive(Default)]
struct TableMarks {
    /// Key → the latest `before_us` it was marked with.
    points: std::collections::BTreeMap<i128, u64>,
    others: Vec<Mark>,
}

impl TableMarks {
    /// The strongest touch of the marks on `rows` (`None`: all rows) by a statement recorded
    /// to start at `start_us`.
    fn touch(&self, rows: Option<&[Vec<Cond>]>, start_us: u64) -> Touch {
        let kind = |before_us: u64| match before_us {
            _ if start_us >= before_us => Touch::No,
            u64::MAX => Touch::Diverged,
            _ => Touch::Overtaken,
        };
        let strongest = |it: &mut dyn Iterator<Item = u64>| it.map(kind).max().unwrap_or(Touch::No);
        let all_points = || strongest(&mut self.points.values().copied());
        let points = match rows {
            None => all_points(),
            Some(boxes) => boxes
                .iter()
                .map(|b| match b.as_slice() {
                    [Cond::In(keys)] => keys
                        .iter()
                        .map(|k| match k {
                            Key::Int(i) => self.points.get(i).map_or(Touch::No, |b| kind(*b)),
                            // A string may equal a number.
                            Key::Text(_) => all_points(),
                        })
                        .max()
                        .unwrap_or(Touch::No),
                    [Cond::Range(lo, hi)] => {
                        strongest(&mut self.points.range(*lo..=*hi).map(|(_, b)| *b))
                    }
                    _ => all_points(),
                })
                .max()
                .unwrap_or(Touch::No),
        };
        let others = self
            .others
            .iter()
            .filter(|k| rows_meet(k.rows.as_deref(), rows))
            .map(|k| kind(k.before_us))
            .max()
            .unwrap_or(Touch::No);
        points.max(others)
    }
}

/// The integer keys of rows told by one column, if that is all they are.
fn int_points(rows: &Option<Vec<Vec<Cond>>>) -> Option<Vec<i128>> {
    let mut out = Vec::new();
    for b in rows.as_ref()? {
        let [Cond::In(keys)] = b.as_slice() else {
            return None;
        };
        for k in keys {
            let Key::Int(i) = k else {
                return None;
            };
            out.push(*i);
        }
    }
    Some(out)
}

struct Mark {
    /// `None`: all the table's rows.
    rows: Option<Vec<Vec<Cond>>>,
    /// Only statements recorded to start before this (µs) are affected; `u64::MAX`: all.
    before_us: u64,
}

impl Divergence {
    pub(crate) fn new(
        keys: std::sync::Arc<PrimaryKeys>,
        reach: Option<std::sync::Arc<Reach>>,
    ) -> Self {
        Self {
            keys,
            reach,
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
                let table = m.tables.entry(t.clone()).or_default();
                if let Some(keys) = int_points(rows) {
                    for k in keys {
                        let b = table.points.entry(k).or_insert(before_us);
                        *b = (*b).max(before_us);
                    }
                    self.any.store(true, Ordering::Relaxed);
                    return;
                }
                let marks = &mut table.others;
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
    #[cfg(test)]
    fn touches(&self, fp: &Footprint, start_us: u64) -> bool {
        self.touch(fp, start_us) != Touch::No
    }

    /// How `fp`, of a statement recorded to start at `start_us`, may touch marked rows.
    pub(crate) fn touch(&self, fp: &Footprint, start_us: u64) -> Touch {
        if !self.any() {
            return Touch::No;
        }
        let m = self.marks.read().unwrap_or_else(|e| e.into_inner());
        match fp {
            Footprint::Nothing => Touch::No,
            _ if m.everything => Touch::Diverged,
            Footprint::Everything => m
                .tables
                .values()
                .map(|t| t.touch(None, start_us))
                .max()
                .unwrap_or(Touch::No),
            Footprint::Table(t, rows) => m
                .tables
                .get(t)
                .map_or(Touch::No, |k| k.touch(rows.as_deref(), start_us)),
        }
    }
}

/// How a statement touches marked rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Touch {
    No,
    /// Only rows a write that went out of order changed before it (it was recorded first):
    /// if it writes them too, the two wrote in the other order.
    Overtaken,
    /// Rows left different from production's.
    Diverged,
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
    /// (a prepared statement's), `labels` those it has already; `overtakes`: it was sent
    /// while a commit that was in flight as production answered it had not been answered
    /// here (`sync::CommitOrder::overtakes`), and is marked as an out-of-order write is.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn answered(
        &mut self,
        d: &Divergence,
        x: &Recorded,
        sql: Option<&[u8]>,
        class: Class,
        response: &Response,
        labels: u8,
        overtakes: bool,
        undone: bool,
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
        let deadlock = differs
            && !undone
            && (replayed_code == ER_LOCK_DEADLOCK || x.recorded_code == ER_LOCK_DEADLOCK);
        let out_of_order = labels & OrderLabel::OUT_OF_ORDER != 0 || overtakes;
        let open_write = class.write && !class.commit;
        let mut out = 0;
        if differs && (lock(replayed_code) || lock(x.recorded_code)) {
            out |= OrderLabel::LOCK_CONFLICT;
        }
        let fp = (open_write || differs || out_of_order || self.txn_diverged || d.any())
            .then(|| self.footprint(d, x, sql));
        let touch = fp.as_ref().map_or(Touch::No, |f| d.touch(f, x.start_us));
        if self.txn_diverged || touch != Touch::No {
            out |= OrderLabel::AFTER_DIVERGENCE;
        }
        // It wrote rows after an out-of-order write that production ran after it: unless both
        // only add to them, the rows end up different.
        let swapped = touch == Touch::Overtaken
            && class.write
            && !sql.is_some_and(crate::footprint::commutative_update);
        if let Some(fp) = fp {
            if deadlock {
                // One side rolled the whole transaction back, the other did not.
                for w in self.txn_writes.drain(..) {
                    d.mark(&w, u64::MAX);
                }
                self.txn_diverged = true;
            }
            if class.write && (differs && !undone || self.txn_diverged || swapped) {
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
        let open = !self.txn_writes.is_empty() || self.txn_diverged;
        let ends = undone
            || open
                && (class.commit
                    || sql.is_some_and(|s| {
                        matches!(first_keyword(s).as_str(), "COMMIT" | "ROLLBACK")
                    }));
        if ends {
            self.txn_writes.clear();
            self.txn_diverged = false;
        }
        out
    }

    fn footprint(&mut self, d: &Divergence, x: &Recorded, sql: Option<&[u8]>) -> Footprint {
        let fp = footprint(
            &mut self.shapes,
            &d.keys,
            &x.command,
            (x.insert_id, x.affected),
            sql,
        );
        match &d.reach {
            Some(reach) => reach.widen(fp),
            None => fp,
        }
    }

    /// `--sync-rows`: the rows a write waits for the earlier commits of (every row when the
    /// tables a statement reaches through others are not known).
    pub(crate) fn rows(&mut self, d: &Divergence, x: &Recorded, sql: Option<&[u8]>) -> Rows {
        match &d.reach {
            Some(_) => Rows::of(self.footprint(d, x, sql)),
            None => Rows::everything(),
        }
    }
}

/// The rows an exchange's statement may touch, as its text tells: `sql` is a prepared
/// statement's text (its shape is kept in `shapes` by statement id); `(insert_id, rows)` what
/// its recorded OK said.
pub(crate) fn footprint(
    shapes: &mut FxHashMap<u32, Shape>,
    keys: &PrimaryKeys,
    command: &Command,
    (insert_id, rows): (u64, u64),
    sql: Option<&[u8]>,
) -> Footprint {
    match command {
        Command::Query { sql, .. } => Shape::of(sql).footprint(&[], keys, insert_id, rows),
        Command::Execute {
            stmt_id, params, ..
        } => {
            let Some(sql) = sql else {
                return Footprint::Everything;
            };
            shapes
                .entry(*stmt_id)
                .or_insert_with(|| Shape::of(sql))
                .footprint(params, keys, insert_id, rows)
        }
        _ => Footprint::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: &str, v: i128) -> Footprint {
        Footprint::Table(t.into(), Some(vec![vec![Cond::In(vec![Key::Int(v)])]]))
    }

    #[test]
    fn marked_rows_are_touched_by_later_statements_on_them() {
        let d = Divergence::new(Default::default(), None);
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
        assert_eq!(d.touch(&id("b", 1), 99), Touch::Overtaken);
        assert_eq!(d.touch(&id("b", 1), 100), Touch::No);
        assert_eq!(d.touch(&id("a", 1), 99), Touch::Diverged);
        // A write to an unknown table: everything.
        d.mark(&Footprint::Everything, u64::MAX);
        assert!(d.touches(&id("c", 3), 5));
    }

    #[test]
    fn many_marks_fold_into_the_whole_table() {
        let d = Divergence::new(Default::default(), None);
        for i in 0..(MARKS_PER_TABLE as i128 + 10) {
            d.mark(&id("a", i), u64::MAX);
        }
        // Keys are kept by key: none folds.
        assert!(d.touches(&id("a", 5), 0));
        assert!(!d.touches(&id("a", -5), 0));
        let ids = |a, b| Footprint::Table("a".into(), Some(vec![vec![Cond::Range(a, b)]]));
        assert!(d.touches(&ids(-9, 0), 0));
        assert!(!d.touches(&ids(-9, -1), 0));
        let range = |a, b| Footprint::Table("c".into(), Some(vec![vec![Cond::Range(a, b)]]));
        for i in 0..(MARKS_PER_TABLE as i128 + 10) {
            d.mark(&range(2 * i, 2 * i), u64::MAX);
        }
        assert!(d.touches(&range(-5, -4), 0));
        assert!(d.marks.read().unwrap().tables["c"].others.len() <= MARKS_PER_TABLE);
    }
}
