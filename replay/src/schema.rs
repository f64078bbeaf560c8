//! `--pin`: which writes can read the session's time without calling a time function.
//!
//! A write whose text calls `NOW()` (or another time function) gets production's
//! `timestamp`; so must a write to a table that fills a column from the time itself — a
//! `DEFAULT CURRENT_TIMESTAMP` or `ON UPDATE CURRENT_TIMESTAMP` column, a default expression
//! calling a time function, a trigger (its body may call one), a view (its base table may
//! have such a column). Pinning every write is safe but costs a round trip per prepared
//! statement (its pin is a `SET` of its own): a quarter of the replay's time on a
//! TPC-C-like workload. So before a replay with pins the candidate is asked which tables
//! those are, and a write to one single other table goes without its `timestamp` pin. A
//! write whose table the text does not tell for sure ([`crate::write_target`]) is pinned;
//! once the replay changes the schema (`CREATE`, `ALTER`, `RENAME`), every write is.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::footprint::{PrimaryKeys, Reach};
use crate::readonly::{calls_time_function, first_keyword, write_target};

/// The schemas that are the server's own.
const SYSTEM: &str = "('mysql', 'information_schema', 'performance_schema', 'sys')";

/// How long the candidate gets to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The candidate's tables whose writes can read the session's time (names lower-cased).
pub(crate) struct TimeTables {
    names: HashSet<String>,
    /// The replay changed the schema: the names may be out of date.
    changed: AtomicBool,
}

impl TimeTables {
    pub(crate) fn new(names: HashSet<String>) -> Self {
        Self {
            names,
            changed: AtomicBool::new(false),
        }
    }

    /// Asks the candidate; the error says why it could not be asked.
    pub(crate) async fn ask(opts: mysql_async::Opts) -> Result<Self, String> {
        match tokio::time::timeout(ASK_TIMEOUT, Self::query(opts)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer in {} s", ASK_TIMEOUT.as_secs())),
        }
    }

    async fn query(opts: mysql_async::Opts) -> Result<Self, mysql_async::Error> {
        let mut conn = mysql_async::Conn::new(opts).await?;
        let columns: Vec<(String, Option<String>, String)> = conn
            .query(format!(
                "SELECT TABLE_NAME, COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA NOT IN {SYSTEM} AND (COLUMN_DEFAULT IS NOT NULL OR EXTRA <> '')"
            ))
            .await?;
        let mut names: HashSet<String> = columns
            .into_iter()
            .filter(|(_, default, extra)| {
                default
                    .as_deref()
                    .is_some_and(|d| calls_time_function(d.as_bytes()))
                    || extra.to_ascii_lowercase().contains("on update")
            })
            .map(|(t, _, _)| t.to_lowercase())
            .collect();
        let others: Vec<String> = conn
            .query(format!(
                "SELECT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS \
                 WHERE EVENT_OBJECT_SCHEMA NOT IN {SYSTEM} \
                 UNION SELECT TABLE_NAME FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA NOT IN {SYSTEM}"
            ))
            .await?;
        names.extend(others.into_iter().map(|t| t.to_lowercase()));
        let _ = conn.disconnect().await;
        Ok(Self::new(names))
    }

    /// How many tables (and views) were found.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the write `sql`, whose text calls no time function, may read the session's
    /// time all the same. A schema change makes every later write one. (Sessions keep
    /// [`TimeTables::time_read`] per prepared statement and ask [`TimeTables::may_read_time_as`].)
    #[cfg(test)]
    pub(crate) fn may_read_time(&self, sql: &[u8]) -> bool {
        self.may_read_time_as(self.time_read(sql))
    }

    /// What [`TimeTables::may_read_time`] reads in a statement's text: kept with a prepared
    /// statement, whose text every EXECUTE shares.
    pub(crate) fn time_read(&self, sql: &[u8]) -> TimeRead {
        let schema_change = matches!(
            first_keyword(sql).as_str(),
            "CREATE" | "ALTER" | "RENAME" | "DROP"
        );
        TimeRead {
            schema_change,
            time_table: schema_change || write_target(sql).is_none_or(|t| self.names.contains(&t)),
        }
    }

    /// [`TimeTables::may_read_time`] for a statement read before.
    pub(crate) fn may_read_time_as(&self, r: TimeRead) -> bool {
        if self.changed.load(Ordering::Relaxed) {
            return true;
        }
        if r.schema_change {
            self.changed.store(true, Ordering::Relaxed);
        }
        r.time_table
    }
}

/// A statement's text as [`TimeTables`] reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeRead {
    /// It changes the schema: every later write may read the time.
    schema_change: bool,
    /// It writes a table the time may reach (or this cannot tell which).
    time_table: bool,
}

/// `--sync`: the candidate's primary keys (see [`crate::footprint`]), or why they could not be
/// asked. A table name found in several databases with different keys is left out (its
/// rows are then told by table only).
pub(crate) async fn primary_keys(opts: mysql_async::Opts) -> Result<PrimaryKeys, String> {
    let ask = async {
        let mut conn = mysql_async::Conn::new(opts).await?;
        let rows: Vec<(String, String, String)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE CONSTRAINT_NAME = 'PRIMARY' AND TABLE_SCHEMA NOT IN {SYSTEM} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ))
            .await?;
        let _ = conn.disconnect().await;
        Ok::<_, mysql_async::Error>(rows)
    };
    let rows = match tokio::time::timeout(ASK_TIMEOUT, ask).await {
        Ok(r) => r.map_err(|e| e.to_string())?,
        Err(_) => return Err(format!("no answer in {} s", ASK_TIMEOUT.as_secs())),
    };
    Ok(fold_keys(rows))
}

/// `--sync-rows`: the tables whose rows a statement can reach through others (see
/// [`Reach`]), or why they could not be asked.
pub(crate) async fn reach(opts: mysql_async::Opts) -> Result<Reach, String> {
    let ask = async {
        let mut conn = mysql_async::Conn::new(opts).await?;
        let names: Vec<String> = conn
            .query(format!(
                "SELECT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS \
                 WHERE EVENT_OBJECT_SCHEMA NOT IN {SYSTEM} \
                 UNION SELECT TABLE_NAME FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA NOT IN {SYSTEM} \
                 UNION SELECT TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA NOT IN {SYSTEM} \
                 UNION SELECT REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA NOT IN {SYSTEM}"
            ))
            .await?;
        let _ = conn.disconnect().await;
        Ok::<_, mysql_async::Error>(names)
    };
    match tokio::time::timeout(ASK_TIMEOUT, ask).await {
        Ok(r) => Ok(Reach::new(
            r.map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| t.to_lowercase())
                .collect(),
        )),
        Err(_) => Err(format!("no answer in {} s", ASK_TIMEOUT.as_secs())),
    }
}

/// (database, table, column) rows, in key order, to keys by table name.
fn fold_keys(rows: Vec<(String, String, String)>) -> PrimaryKeys {
    let mut by_table: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (db, table, column) in rows {
        by_table
            .entry((db, table.to_lowercase()))
            .or_default()
            .push(column.to_lowercase());
    }
    let mut keys = PrimaryKeys::new();
    let mut clashing = HashSet::new();
    for ((_, table), columns) in by_table {
        match keys.get(&table) {
            Some(k) if *k != columns => {
                clashing.insert(table);
            }
            _ => {
                keys.insert(table, columns);
            }
        }
    }
    for t in clashing {
        keys.remove(&t);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_tables_without_time_columns_need_no_time() {
        let t = TimeTables::new(["orders".to_string()].into());
        assert!(t.may_read_time(b"INSERT INTO orders (a) VALUES (1)"));
        assert!(t.may_read_time(b"UPDATE shop.Orders SET a = 1"));
        assert!(!t.may_read_time(b"UPDATE stock SET q = q - 1 WHERE id = 1"));
        // A table the text does not name for sure: assume the worst.
        assert!(t.may_read_time(b"UPDATE stock JOIN orders USING (id) SET q = 1"));
        assert!(t.may_read_time(b"CALL p()"));
        // After a schema change every write may.
        assert!(t.may_read_time(b"ALTER TABLE stock ADD at TIMESTAMP DEFAULT NOW()"));
        assert!(t.may_read_time(b"UPDATE stock SET q = 1"));
    }

    #[test]
    fn keys_by_table_name_unless_two_databases_disagree() {
        let row = |d: &str, t: &str, c: &str| (d.to_string(), t.to_string(), c.to_string());
        let keys = fold_keys(vec![
            row("a", "Stock", "s_w_id"),
            row("a", "Stock", "s_i_id"),
            row("a", "t", "id"),
            row("b", "t", "other"),
            row("b", "u", "id"),
            row("c", "u", "ID"),
        ]);
        assert_eq!(keys["stock"], ["s_w_id", "s_i_id"]);
        assert_eq!(keys["u"], ["id"]);
        assert!(!keys.contains_key("t"));
    }
}
