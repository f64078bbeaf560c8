//! Which statements cannot write: what `--read-only` lets through.

/// The first keyword of `sql`, upper-cased, skipping whitespace and comments.
pub fn first_keyword(sql: &[u8]) -> String {
    let (start, end) = first_keyword_span(sql);
    String::from_utf8_lossy(&sql[start..end]).to_ascii_uppercase()
}

/// The database a `USE db` statement switches to (backticks and a trailing `;` removed).
pub fn use_target(sql: &[u8]) -> Option<String> {
    let (start, end) = first_keyword_span(sql);
    if !sql[start..end].eq_ignore_ascii_case(b"USE") {
        return None;
    }
    let rest = String::from_utf8_lossy(&sql[end..]);
    let db = rest.trim().trim_end_matches(';').trim().trim_matches('`');
    (!db.is_empty()).then(|| db.to_string())
}

/// Byte range of the first keyword, after whitespace and comments (empty when none).
fn first_keyword_span(sql: &[u8]) -> (usize, usize) {
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b'(' => i += 1,
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                // `/*!` version comments carry SQL: read inside them.
                if sql.get(i + 2) == Some(&b'!') {
                    i += 3;
                    while i < sql.len() && sql[i].is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                match sql[i + 2..].windows(2).position(|w| w == b"*/") {
                    Some(p) => i += p + 4,
                    None => return (sql.len(), sql.len()),
                }
            }
            b'#' => match sql[i..].iter().position(|&c| c == b'\n') {
                Some(p) => i += p + 1,
                None => return (sql.len(), sql.len()),
            },
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                match sql[i..].iter().position(|&c| c == b'\n') {
                    Some(p) => i += p + 1,
                    None => return (sql.len(), sql.len()),
                }
            }
            _ => break,
        }
    }
    let end = sql[i..]
        .iter()
        .position(|c| !c.is_ascii_alphabetic() && *c != b'_')
        .map_or(sql.len(), |p| i + p);
    (i, end)
}

/// True when the statement cannot change data or schema. Unknown statements count as writes.
pub fn is_read_only(sql: &[u8]) -> bool {
    let kw = first_keyword(sql);
    match kw.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => !contains_word(sql, b"INTO") || !into_writes(sql),
        "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "HELP" | "USE" => true,
        "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => true,
        "START" => upper(sql).contains("TRANSACTION"),
        "SET" => {
            let u = upper(sql);
            !(u.contains("GLOBAL") || u.contains("PASSWORD") || u.contains("@@PERSIST"))
        }
        "DO" | "PING" => true,
        _ => false,
    }
}

/// True when a read takes row locks (`SELECT … FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR
/// SHARE`): under `--sync-writes` it is ordered as a write.
pub fn takes_locks(sql: &[u8]) -> bool {
    let u = upper(sql);
    let u = u.split_whitespace().collect::<Vec<_>>().join(" ");
    u.contains("FOR UPDATE") || u.contains("LOCK IN SHARE MODE") || u.contains("FOR SHARE")
}

/// Functions whose result depends on the session's `timestamp` (SYSDATE does not: it reads
/// the clock whatever the session pins).
const TIME_FUNCTIONS: &[&[u8]] = &[
    b"NOW",
    b"CURRENT_TIMESTAMP",
    b"CURRENT_DATE",
    b"CURRENT_TIME",
    b"CURDATE",
    b"CURTIME",
    b"LOCALTIME",
    b"LOCALTIMESTAMP",
    b"UNIX_TIMESTAMP",
    b"UTC_TIMESTAMP",
    b"UTC_DATE",
    b"UTC_TIME",
];

/// True when the statement calls a function that reads the session's time.
pub fn calls_time_function(sql: &[u8]) -> bool {
    TIME_FUNCTIONS.iter().any(|f| contains_word(sql, f))
}

fn upper(sql: &[u8]) -> String {
    String::from_utf8_lossy(sql).to_ascii_uppercase()
}

fn contains_word(sql: &[u8], word: &[u8]) -> bool {
    let u = upper(sql);
    let u = u.as_bytes();
    u.windows(word.len()).enumerate().any(|(i, w)| {
        w == word
            && (i == 0 || !u[i - 1].is_ascii_alphanumeric())
            && u.get(i + word.len())
                .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// `SELECT ... INTO OUTFILE/DUMPFILE` writes files; `INTO @var` does not.
fn into_writes(sql: &[u8]) -> bool {
    let u = upper(sql);
    u.contains("INTO OUTFILE") || u.contains("INTO DUMPFILE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_time_functions_as_words() {
        assert!(calls_time_function(b"SELECT NOW()"));
        assert!(calls_time_function(
            b"insert into t values (current_timestamp(6))"
        ));
        assert!(calls_time_function(
            b"UPDATE t SET d = CURDATE() WHERE id = ?"
        ));
        assert!(!calls_time_function(b"SELECT nowhere FROM t"));
        assert!(!calls_time_function(b"SELECT SYSDATE()"));
        assert!(!calls_time_function(b"SELECT 1"));
    }

    #[test]
    fn classifies() {
        for ro in [
            "SELECT 1",
            "  /* hint */ select c from t where id=1",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SHOW TABLES",
            "BEGIN",
            "COMMIT",
            "START TRANSACTION READ ONLY",
            "SET NAMES utf8mb4",
            "SET autocommit=0",
            "-- c\nSELECT 2",
            "SELECT a INTO @x FROM t",
            "/*!40101 SET character_set_client = utf8 */",
        ] {
            assert!(is_read_only(ro.as_bytes()), "{ro}");
        }
        for rw in [
            "INSERT INTO t VALUES (1)",
            "update t set a=1",
            "DELETE FROM t",
            "REPLACE INTO t VALUES (1)",
            "CREATE TABLE t (a int)",
            "DROP TABLE t",
            "SET GLOBAL max_connections=10",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "CALL p()",
            "LOAD DATA INFILE 'x' INTO TABLE t",
            "",
            "/* unterminated",
        ] {
            assert!(!is_read_only(rw.as_bytes()), "{rw}");
        }
    }

    #[test]
    fn use_target_after_comments() {
        assert_eq!(use_target(b"USE shop").as_deref(), Some("shop"));
        assert_eq!(use_target(b"  use `my db`;\n").as_deref(), Some("my db"));
        // A comment before the keyword, with a multi-byte character where a fixed offset
        // into the text would have cut it.
        assert_eq!(use_target("/*é*/ USE x".as_bytes()).as_deref(), Some("x"));
        assert_eq!(use_target(b"USE"), None);
        assert_eq!(use_target(b"SELECT 1"), None);
    }
}
