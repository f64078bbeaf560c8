//! `--sync-spare`: a session's second connection to the target, which takes an earlier view
//! for the session's order-ambiguous reads (see `Worker::snapshot_early` in `session`), and
//! what of the session's state it must be given to answer as the session's own connection
//! would ([`Carried`]).

use myrr_recording::Response;
use myrr_wire::command;
use rustc_hash::FxHashMap;

use crate::readonly::contains_word;
use crate::session::{starts_with_word, Stmt};
use crate::wire::WireConn;

/// A session that has sent more distinct `SET` statements than this keeps no spare: each new
/// spare connection would be sent all of them.
pub(crate) const MAX_SETS: usize = 64;

/// A session's second connection to the target, with its own prepared statements, kept in
/// step with the session's database and `SET`s.
pub(crate) struct Spare {
    pub(crate) conn: Option<WireConn>,
    /// Recorded statement id → statement on this connection.
    pub(crate) stmts: FxHashMap<u32, Stmt>,
    /// The database it uses.
    pub(crate) db: Option<String>,
    /// The view point (seq) whose earlier view it holds in a transaction, if any.
    pub(crate) view: Option<u64>,
    /// Statements sent on it (`START TRANSACTION WITH CONSISTENT SNAPSHOT`, `ROLLBACK`)
    /// whose answers are not read yet (read before the connection is used again).
    unanswered: u8,
    /// A transaction with an earlier view is open on it (closed once the view is settled:
    /// an open view would hold back the candidate's purge).
    pub(crate) open: bool,
}

impl Spare {
    /// A spare on `conn`, using `db`, given none of the session's `SET`s yet.
    pub(crate) fn new(conn: Option<WireConn>, db: Option<String>) -> Spare {
        Spare {
            conn,
            stmts: FxHashMap::default(),
            db,
            view: None,
            unanswered: 0,
            open: false,
        }
    }

    /// Sends the text statement `q` without reading its answer (see [`Spare::answered`]).
    pub(crate) async fn send(&mut self, q: &[u8], buf: &mut Vec<u8>) -> Result<(), String> {
        buf.clear();
        buf.push(command::Code::Query.byte());
        buf.extend_from_slice(q);
        let conn = self.conn.as_mut().ok_or("not connected")?;
        match conn.send_command(buf).await {
            Ok(()) => {
                self.unanswered += 1;
                Ok(())
            }
            Err(e) => {
                self.conn = None;
                Err(format!("connection lost: {e}"))
            }
        }
    }

    /// Reads the answers to the statements sent and not read yet; why not, when one was not
    /// an OK.
    pub(crate) async fn answered(&mut self) -> Result<(), String> {
        while self.unanswered > 0 {
            self.unanswered -= 1;
            let conn = self.conn.as_mut().ok_or("not connected")?;
            match conn.read_answer().await {
                Ok((Response::Ok(_), _)) => {}
                Ok((Response::Err(e), _)) => {
                    return Err(format!(
                        "error {}: {}",
                        e.code,
                        String::from_utf8_lossy(&e.message)
                    ))
                }
                Ok((r, _)) => return Err(format!("answered {}", r.kind_name())),
                Err(e) => {
                    self.conn = None;
                    return Err(format!("connection lost: {e}"));
                }
            }
        }
        Ok(())
    }
}

/// What a session's spare connection must be given of the session's state: its `SET`
/// statements (text, each once, in the order they last ran), and whether it keeps state no
/// second connection can share, which turns the spare off.
#[derive(Default)]
pub(crate) struct Carried {
    sets: Vec<Vec<u8>>,
    /// How many of `sets` the spare connection has run.
    given: usize,
    off: bool,
}

impl Carried {
    /// Whether the session keeps no spare.
    pub(crate) fn is_off(&self) -> bool {
        self.off
    }

    /// The session keeps no spare from now on.
    pub(crate) fn turn_off(&mut self) {
        self.off = true;
        self.sets = Vec::new();
    }

    /// Keeps what a second connection of the session would need to answer as the session's
    /// own does after `sql` ran on it. `prepared`: a statement's text, not run yet. Why the
    /// spare is turned off by it, if it is: state a second connection cannot share
    /// (temporary tables, user variables, named locks, a prepared `SET`), or more than
    /// [`MAX_SETS`] distinct `SET`s.
    pub(crate) fn note(&mut self, sql: &[u8], prepared: bool) -> Option<&'static str> {
        if self.off {
            return None;
        }
        let user_variable = sql
            .windows(2)
            .enumerate()
            .any(|(i, w)| w[0] == b'@' && w[1] != b'@' && (i == 0 || sql[i - 1] != b'@'));
        let why = if user_variable {
            Some("a user variable")
        } else if contains_word(sql, b"TEMPORARY") {
            Some("a temporary table")
        } else if contains_word(sql, b"GET_LOCK") {
            Some("a named lock")
        } else if !starts_with_word(sql, b"SET") {
            None
        } else if prepared {
            Some("a prepared SET")
        } else {
            // A pool sends the same SETs at every checkout: a repeated one moves to the end
            // (each variable keeps its last value either way).
            if let Some(i) = self.sets.iter().position(|s| s == sql) {
                self.sets.remove(i);
                if i < self.given {
                    self.given -= 1;
                }
            }
            self.sets.push(sql.to_vec());
            (self.sets.len() > MAX_SETS).then_some("more than 64 distinct SET statements")
        };
        if why.is_some() {
            self.turn_off();
        }
        why
    }

    /// The `SET`s the spare connection has not run (all of them for a `fresh` connection),
    /// counted as given.
    pub(crate) fn take_ungiven(&mut self, fresh: bool) -> Vec<Vec<u8>> {
        let from = if fresh { 0 } else { self.given };
        self.given = self.sets.len();
        self.sets[from.min(self.sets.len())..].to_vec()
    }

    /// The spare connection has run every `SET` (it was the session's own connection).
    pub(crate) fn all_given(&mut self) {
        self.given = self.sets.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_set_is_given_once_more_and_kept_once() {
        let mut c = Carried::default();
        assert_eq!(c.note(b"SET NAMES utf8mb4", false), None);
        assert_eq!(c.note(b"SET autocommit = 1", false), None);
        assert_eq!(c.take_ungiven(true).len(), 2);
        assert_eq!(c.take_ungiven(false), Vec::<Vec<u8>>::new());
        for _ in 0..1_000 {
            c.note(b"SET NAMES utf8mb4", false);
            c.note(b"SET autocommit = 1", false);
        }
        assert!(!c.is_off());
        assert_eq!(c.sets.len(), 2);
        // The connection has both; both moved to the end, so both are given again, in order.
        assert_eq!(
            c.take_ungiven(false),
            vec![
                b"SET NAMES utf8mb4".to_vec(),
                b"SET autocommit = 1".to_vec()
            ]
        );
        c.note(b"SET sql_mode = ''", false);
        c.note(b"SET NAMES utf8mb4", false);
        assert_eq!(
            c.take_ungiven(false),
            vec![b"SET sql_mode = ''".to_vec(), b"SET NAMES utf8mb4".to_vec()]
        );
        assert_eq!(
            c.take_ungiven(true),
            vec![
                b"SET autocommit = 1".to_vec(),
                b"SET sql_mode = ''".to_vec(),
                b"SET NAMES utf8mb4".to_vec()
            ]
        );
    }

    #[test]
    fn the_last_value_of_each_variable_survives_keeping_sets_once() {
        // x = 1, x = 2, x = 1, x = 2, x = 1: x ends at 1.
        let mut c = Carried::default();
        for q in [
            "SET x = 1",
            "SET x = 2",
            "SET x = 1",
            "SET x = 2",
            "SET x = 1",
        ] {
            c.note(q.as_bytes(), false);
        }
        assert_eq!(
            c.take_ungiven(true),
            vec![b"SET x = 2".to_vec(), b"SET x = 1".to_vec()]
        );
    }

    #[test]
    fn too_many_distinct_sets_turn_the_spare_off() {
        let mut c = Carried::default();
        for i in 0..MAX_SETS {
            assert_eq!(c.note(format!("SET x = {i}").as_bytes(), false), None);
        }
        assert!(!c.is_off());
        let why = c.note(b"SET x = -1", false);
        assert!(why.is_some_and(|w| w.contains("64")), "{why:?}");
        assert!(c.is_off());
        assert!(c.take_ungiven(true).is_empty());
        assert_eq!(c.note(b"SET y = 0", false), None, "reported once");
    }

    #[test]
    fn state_a_second_connection_cannot_share_turns_the_spare_off() {
        let cases: [(&[u8], bool, Option<&str>); 8] = [
            (b"SELECT @x := 1", false, Some("a user variable")),
            (b"SELECT @@autocommit", false, None),
            (b"set @a = 1", false, Some("a user variable")),
            (
                b"CREATE TEMPORARY TABLE t (i INT)",
                false,
                Some("a temporary table"),
            ),
            (b"SELECT GET_LOCK('a', 1)", false, Some("a named lock")),
            (b"SET NAMES latin1", true, Some("a prepared SET")),
            (b"SETTLE", false, None),
            (b"SELECT 'set x = 1'", false, None),
        ];
        for (sql, prepared, why) in cases {
            let mut c = Carried::default();
            let q = String::from_utf8_lossy(sql);
            assert_eq!(c.note(sql, prepared), why, "{q}");
            assert_eq!(c.is_off(), why.is_some(), "{q}");
        }
    }
}
