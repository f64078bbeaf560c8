//! Driver chatter: what a driver, a connection pool or a client library says to the server on
//! its own — pings, session variables, prepares and closes, changes of database or user —
//! as opposed to the application's statements. The verdict's mismatch rate is taken over the
//! application's statements: a workload's answers are what matters, and chatter (hundreds of
//! `SET autocommit=1` and pings per second in a pooled application) would dilute the rate.
//!
//! The decisions, where they are not obvious:
//! - An EXECUTE (and a cursor FETCH) is the application's statement; the PREPARE and CLOSE
//!   around it are the driver's. An EXECUTE of a prepared `SET …` is chatter like the query.
//! - `SET` of session variables (`SET NAMES`, `SET autocommit`, `SET SESSION TRANSACTION …`,
//!   `SET @@x`) is chatter; `SET @x = …` assigns a user variable, which the application reads
//!   back, and MariaDB's `SET STATEMENT … FOR stmt` runs `stmt`: both are the application's.
//! - `SHOW WARNINGS` and `SHOW ERRORS` are chatter: clients send them after a statement, and
//!   a difference in their answer is that statement's `warnings` mismatch already.
//! - `SHOW VARIABLES`, `SHOW COLLATION`, `SHOW CHARACTER SET`, `SELECT @@…` and the session
//!   probes `SELECT 1`, `SELECT DATABASE()`, `SELECT CONNECTION_ID()`, `SELECT VERSION()`,
//!   `SELECT USER()` are what drivers ask when they connect or validate a pooled connection.
//! - Transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`) is the application's: it chose the
//!   boundaries, and a COMMIT that fails on the candidate is its failure.
//! - Other protocol commands (ping, quit, init_db, change_user, reset_connection, statistics,
//!   field_list, set_option, send_long_data, process_info, process_kill, debug, unknown codes)
//!   are chatter.

use myrr_recording::Command;

/// Whether an exchange is driver chatter rather than an application statement.
/// `fingerprint`: the fingerprint of the SQL the command runs (a query's own, an EXECUTE's
/// PREPARE's; see [`crate::fingerprint`]), as the report's shapes have it.
pub fn is_driver_chatter(command: &Command, fingerprint: &str) -> bool {
    match command {
        Command::Query { .. } | Command::Execute { .. } => is_session_statement(fingerprint),
        Command::Fetch { .. } => false,
        _ => true,
    }
}

/// Whether a statement (by its fingerprint) manages the session rather than the data.
fn is_session_statement(fingerprint: &str) -> bool {
    // `/*!40101 SET NAMES utf8 */` fingerprints as `/*!? set names utf? */`: the server runs
    // what the versioned comment holds.
    let f = match fingerprint.strip_prefix("/*!") {
        Some(rest) => rest.trim_start_matches(['?', ' ']),
        None => fingerprint,
    };
    let word_end = f
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(f.len());
    let (word, rest) = (&f[..word_end], f[word_end..].trim_start());
    match word {
        // Only a comment: nothing the application asked for.
        "" => f.trim().is_empty() || f.trim() == "*/",
        "set" => {
            let user_variable = rest.starts_with('@') && !rest.starts_with("@@");
            !(user_variable || rest.starts_with("statement "))
        }
        "use" => true,
        "show" => {
            let rest = ["global ", "session ", "local "]
                .iter()
                .find_map(|scope| rest.strip_prefix(scope))
                .unwrap_or(rest);
            [
                "warnings",
                "errors",
                "count(*) warnings",
                "count(*) errors",
                "variables",
                "collation",
                "character set",
                "charset",
            ]
            .iter()
            .any(|w| rest.starts_with(w))
        }
        "select" => {
            rest.starts_with("@@")
                || [
                    "?",
                    "? from dual",
                    "database()",
                    "schema()",
                    "connection_id()",
                    "version()",
                    "user()",
                    "current_user()",
                    "current_user",
                ]
                .contains(&rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::fingerprint;

    fn query(sql: &str) -> (Command, String) {
        let command = Command::Query {
            sql: sql.as_bytes().to_vec(),
            attrs: vec![],
        };
        (command, fingerprint(sql))
    }

    fn chatter(sql: &str) -> bool {
        let (c, f) = query(sql);
        is_driver_chatter(&c, &f)
    }

    #[test]
    fn session_statements_are_chatter() {
        for sql in [
            "SET NAMES utf8mb4",
            "set names 'latin1' collate 'latin1_bin'",
            "SET autocommit=1",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET TRANSACTION READ ONLY",
            "SET @@session.sql_mode = 'STRICT_ALL_TABLES'",
            "SET character_set_results = NULL",
            "/*!40101 SET NAMES utf8 */",
            "  /* pool */ SET autocommit = 0",
            "USE shop",
            "use `my db`",
            "SHOW WARNINGS",
            "show errors limit 5",
            "SHOW COUNT(*) WARNINGS",
            "SHOW VARIABLES LIKE 'max_allowed_packet'",
            "SHOW SESSION VARIABLES WHERE Variable_name = 'language'",
            "SHOW GLOBAL VARIABLES",
            "SHOW COLLATION",
            "SHOW CHARACTER SET",
            "select @@version_comment limit 1",
            "/* mysql-connector-java-8.0.33 */SELECT  @@session.auto_increment_increment AS a, @@character_set_client AS b",
            "SELECT 1",
            "/* ping */ SELECT 1",
            "SELECT 1 FROM DUAL",
            "SELECT DATABASE()",
            "select connection_id()",
            "SELECT VERSION()",
            "SELECT CURRENT_USER()",
            "/* nothing but a comment */",
        ] {
            assert!(chatter(sql), "{sql} ({})", fingerprint(sql));
        }
    }

    #[test]
    fn application_statements_are_not() {
        for sql in [
            "SELECT c FROM sbtest1 WHERE id = 7",
            "select 1 + id from t",
            "SELECT DATABASE(), c FROM t",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1 WHERE id = 2",
            "SET @rank := (SELECT MAX(id) FROM t)",
            "SET STATEMENT max_statement_time=1 FOR SELECT * FROM t",
            "SETX",
            "settle_accounts()",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "START TRANSACTION",
            "SHOW TABLES",
            "SHOW CREATE TABLE t",
            "SHOW FULL COLUMNS FROM t",
            "CALL refresh(1)",
            "(SELECT 1)",
            "DELETE FROM users WHERE name = 'SET NAMES'",
        ] {
            assert!(!chatter(sql), "{sql} ({})", fingerprint(sql));
        }
    }

    #[test]
    fn commands_by_kind() {
        let select = "select c from t where id=?";
        let execute = Command::Execute {
            stmt_id: 1,
            flags: 0,
            params: vec![],
            prepare_seen: true,
            raw_params: vec![],
        };
        assert!(!is_driver_chatter(&execute, select));
        assert!(is_driver_chatter(&execute, "set names ?"));
        assert!(!is_driver_chatter(
            &Command::Fetch {
                stmt_id: 1,
                rows: 10
            },
            "administrator command: fetch"
        ));
        let prepare = Command::Prepare {
            sql: b"SELECT c FROM t WHERE id=?".to_vec(),
        };
        for c in [
            prepare,
            Command::CloseStmt { stmt_id: 1 },
            Command::ResetStmt { stmt_id: 1 },
            Command::SendLongData {
                stmt_id: 1,
                param: 0,
                data: vec![],
            },
            Command::Ping,
            Command::Quit,
            Command::Statistics,
            Command::ResetConnection,
            Command::InitDb {
                db: b"shop".to_vec(),
            },
            Command::ChangeUser {
                user: b"app".to_vec(),
                db: None,
            },
            Command::SetOption { option: 0 },
            Command::FieldList {
                table: b"t".to_vec(),
                wildcard: vec![],
            },
            Command::ProcessInfo,
            Command::ProcessKill { id: 3 },
            Command::Debug,
            Command::Other { code: 0x99, len: 0 },
        ] {
            // Whatever shape they carry (a PREPARE has its statement's).
            assert!(is_driver_chatter(&c, select), "{}", c.name());
        }
    }
}
