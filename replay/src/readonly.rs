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
        "WITH" if crate::footprint::with_writes(sql) => false,
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

/// Whether `word` (upper case) is in `sql` in any case, not as part of a longer name (no
/// letter, digit, `_` or `$` right before or after it). Called many times per statement:
/// reads `sql` in place.
pub(crate) fn contains_word(sql: &[u8], word: &[u8]) -> bool {
    let name = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$';
    sql.windows(word.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(word)
            && (i == 0 || !name(&sql[i - 1]))
            && sql.get(i + word.len()).is_none_or(|c| !name(c))
    })
}

/// The one table a single-table `INSERT`, `REPLACE`, `UPDATE` or `DELETE` writes (its name
/// lower-cased, without its database). `None` for any other statement, and whenever the
/// statement may write more than one table or this cannot tell (a join, `USING`, a
/// partition clause, a version comment, ANSI quotes): callers then assume the worst.
pub fn write_target(sql: &[u8]) -> Option<String> {
    let mut t = Tokens { sql, at: 0 };
    let first = t.word()?.to_ascii_uppercase();
    let skip = |t: &mut Tokens, words: &[&str]| {
        while t
            .peek_word()
            .is_some_and(|w| words.iter().any(|k| w.eq_ignore_ascii_case(k)))
        {
            t.word();
        }
    };
    match first.as_str() {
        "INSERT" | "REPLACE" => {
            skip(
                &mut t,
                &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
            );
            t.table()
        }
        "UPDATE" => {
            skip(&mut t, &["LOW_PRIORITY", "IGNORE"]);
            let table = t.table()?;
            // An alias, then SET: anything else (a comma, a JOIN) writes more tables.
            let mut next = t.word()?;
            if next.eq_ignore_ascii_case("AS") {
                t.word()?;
                next = t.word()?;
            } else if !next.eq_ignore_ascii_case("SET") {
                next = t.word()?;
            }
            next.eq_ignore_ascii_case("SET").then_some(table)
        }
        "DELETE" => {
            skip(&mut t, &["LOW_PRIORITY", "QUICK", "IGNORE"]);
            if !t.word()?.eq_ignore_ascii_case("FROM") {
                return None;
            }
            let table = t.table()?;
            // What may follow a single table; else an alias, then that.
            let ends = |t: &Tokens| match t.peek_word() {
                None => !t.has_more(),
                Some(w) => ["WHERE", "ORDER", "LIMIT", "RETURNING"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)),
            };
            if ends(&t) {
                return Some(table);
            }
            if t.peek_word().is_some_and(|w| w.eq_ignore_ascii_case("AS")) {
                t.word();
            }
            if t.peek_word()
                .is_some_and(|w| w.eq_ignore_ascii_case("USING"))
            {
                return None;
            }
            t.word()?;
            ends(&t).then_some(table)
        }
        _ => None,
    }
}

/// Words and names of a statement, for [`write_target`].
struct Tokens<'a> {
    sql: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    /// Skips whitespace and comments; false at a version comment (`/*!`), which may carry SQL.
    fn skip_space(&mut self) -> bool {
        let s = self.sql;
        while let Some(&c) = s.get(self.at) {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => self.at += 1,
                b'/' if s.get(self.at + 1) == Some(&b'*') => {
                    if s.get(self.at + 2) == Some(&b'!') {
                        return false;
                    }
                    match s[self.at + 2..].windows(2).position(|w| w == b"*/") {
                        Some(p) => self.at += p + 4,
                        None => self.at = s.len(),
                    }
                }
                b'#' => self.skip_line(),
                b'-' if s.get(self.at + 1) == Some(&b'-') => self.skip_line(),
                _ => break,
            }
        }
        true
    }

    fn skip_line(&mut self) {
        self.at = self.sql[self.at..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.sql.len(), |p| self.at + p + 1);
    }

    /// The next name (a word, or `quoted`), unquoted; None at anything else.
    fn name(&mut self) -> Option<String> {
        if !self.skip_space() {
            return None;
        }
        let s = self.sql;
        if s.get(self.at) == Some(&b'`') {
            let mut name = Vec::new();
            let mut i = self.at + 1;
            loop {
                match s.get(i) {
                    Some(b'`') if s.get(i + 1) == Some(&b'`') => {
                        name.push(b'`');
                        i += 2;
                    }
                    Some(b'`') => break,
                    Some(&c) => {
                        name.push(c);
                        i += 1;
                    }
                    None => return None,
                }
            }
            self.at = i + 1;
            return Some(String::from_utf8_lossy(&name).into_owned());
        }
        let len = s[self.at..]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80))
            .unwrap_or(s.len() - self.at);
        if len == 0 {
            return None;
        }
        let w = String::from_utf8_lossy(&s[self.at..self.at + len]).into_owned();
        self.at += len;
        Some(w)
    }

    /// Whether anything but a final `;` follows.
    fn has_more(&self) -> bool {
        let mut c = Tokens {
            sql: self.sql,
            at: self.at,
        };
        !c.skip_space() || c.sql.get(c.at).is_some_and(|&b| b != b';')
    }

    fn word(&mut self) -> Option<String> {
        self.name()
    }

    fn peek_word(&self) -> Option<String> {
        Tokens {
            sql: self.sql,
            at: self.at,
        }
        .name()
    }

    /// A table: `name` or `db.name`; the name, lower-cased.
    fn table(&mut self) -> Option<String> {
        let mut name = self.name()?;
        if self.sql.get(self.at) == Some(&b'.') {
            self.at += 1;
            name = self.name()?;
        }
        Some(name.to_lowercase())
    }
}

/// True when the statement calls `RAND()` (its values come from the session's seeds).
pub fn calls_rand(sql: &[u8]) -> bool {
    contains_word(sql, b"RAND")
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
        assert!(calls_rand(b"select a from t order by Rand"));
        assert!(!calls_rand(b"SELECT brand, rand_id FROM t"));
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
            "WITH x AS (SELECT id FROM t) UPDATE t JOIN x USING (id) SET a = 1",
            "WITH x AS (SELECT id FROM t) DELETE t FROM t JOIN x USING (id)",
            "",
            "/* unterminated",
        ] {
            assert!(!is_read_only(rw.as_bytes()), "{rw}");
        }
    }

    #[test]
    fn finds_the_one_table_a_write_writes() {
        for (sql, want) in [
            ("INSERT INTO t VALUES (1)", Some("t")),
            ("insert ignore into `My``T` (a) values (1)", Some("my`t")),
            ("INSERT shop.orders SET a = 1", Some("orders")),
            (
                "REPLACE LOW_PRIORITY INTO `s`.`t` SELECT * FROM u",
                Some("t"),
            ),
            (
                "/* c */ UPDATE stock SET q = q - 1 WHERE id = ?",
                Some("stock"),
            ),
            ("UPDATE IGNORE t AS a SET a.x = 1", Some("t")),
            ("UPDATE t a SET a.x = 1", Some("t")),
            ("DELETE FROM new_order WHERE no_o_pk = ?", Some("new_order")),
            ("DELETE QUICK FROM t", Some("t")),
            ("DELETE FROM t;", Some("t")),
            ("DELETE FROM t x WHERE x.a = 1", Some("t")),
            ("DELETE FROM t ORDER BY id LIMIT 1", Some("t")),
            // More than one table, or not sure: None.
            ("UPDATE t, u SET t.a = u.a", None),
            ("UPDATE t JOIN u ON t.id = u.id SET t.a = 1", None),
            ("UPDATE t PARTITION (p0) SET a = 1", None),
            ("DELETE t FROM t JOIN u ON t.id = u.id", None),
            ("DELETE FROM t, u USING t JOIN u", None),
            ("DELETE FROM t USING t JOIN u", None),
            ("/*!50000 UPDATE t SET a = 1 */", None),
            ("INSERT INTO \"t\" VALUES (1)", None),
            ("SELECT 1", None),
            ("CALL p()", None),
            ("", None),
        ] {
            assert_eq!(write_target(sql.as_bytes()).as_deref(), want, "{sql}");
        }
    }

    /// Recorded SQL is whatever a client sent: cut anywhere, bytes changed, the parser answers
    /// without panicking.
    #[test]
    fn write_target_takes_any_bytes() {
        let whole = [
            "INSERT IGNORE INTO `s`.`t``x` (a) VALUES (1)",
            "UPDATE t AS a SET a.x = 1 /* c */ -- d\n",
            "DELETE QUICK FROM t x WHERE x.a = 1 # e\n",
            "REPLACE /*!50000 LOW_PRIORITY */ INTO t VALUES (1)",
            "UPDATE `unterminated SET a = 1",
            "DELETE FROM t, u USING t JOIN u",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for sql in whole {
            let bytes = sql.as_bytes();
            for cut in 0..=bytes.len() {
                let _ = write_target(&bytes[..cut]);
                let mut changed = bytes.to_vec();
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let i = (seed as usize) % changed.len();
                    changed[i] = (seed >> 32) as u8;
                }
                let _ = write_target(&changed[..cut.min(changed.len())]);
            }
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
