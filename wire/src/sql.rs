//! What the protocol needs to know of SQL text: how many `?` placeholders a statement has
//! (the parameter count its EXECUTEs carry), counted as the server's lexer counts them; and a
//! cheap shape key (literals and case left out) by which a capture samples the first answers of
//! each statement shape.

/// The number of `?` parameter markers in `sql`, outside string literals, quoted
/// identifiers and comments. Executable comments (`/*! … */`, `/*M! … */`) are code, as the
/// server reads them; a `?` in them counts. Saturates at `u16::MAX` (the protocol's limit).
pub fn placeholder_count(sql: &[u8]) -> u16 {
    let mut n: u32 = 0;
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            b'?' => {
                n += 1;
                i += 1;
            }
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(sql, i + 1, q),
            b'#' => i = skip_line(sql, i + 1),
            // `--` starts a comment only when followed by white space or the end.
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(sql, i + 2)
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                let body = i + 2;
                let executable = sql.get(body) == Some(&b'!')
                    || (sql.get(body) == Some(&b'M') && sql.get(body + 1) == Some(&b'!'));
                if executable {
                    // Read on inside it; its closing `*/` is skipped below.
                    i = body + if sql[body] == b'!' { 1 } else { 2 };
                } else {
                    i = match find(sql, body, b"*/") {
                        Some(end) => end + 2,
                        None => sql.len(),
                    };
                }
            }
            b'*' if sql.get(i + 1) == Some(&b'/') => i += 2,
            _ => i += 1,
        }
    }
    n.min(u16::MAX as u32) as u16
}

/// Bytes of a statement's text its shape key reads: enough to tell statements apart.
const SHAPE_KEY_PREFIX: usize = 1024;

/// A key equal for statements that differ only by their literals (quoted strings, numbers),
/// letter case and white space: `SELECT c FROM t WHERE id=5` and `select c from t where id = 7`
/// share one. Not analyze's fingerprint (IN lists of other lengths differ here); a cheap pass
/// over the first [`SHAPE_KEY_PREFIX`] bytes, for sampling.
pub fn shape_key(sql: &[u8]) -> u64 {
    use std::hash::Hasher;
    let sql = &sql[..sql.len().min(SHAPE_KEY_PREFIX)];
    // The normalised text is never longer than the text; it is hashed at once (the hasher
    // takes 8 bytes a step: hashing it byte by byte made text-protocol captures 5 % slower).
    let mut out = [0u8; SHAPE_KEY_PREFIX];
    let mut n = 0;
    let mut i = 0;
    while i < sql.len() {
        let c = sql[i];
        let token = match c {
            b'\'' | b'"' => {
                i = skip_quoted(sql, i + 1, c);
                b'?'
            }
            b'0'..=b'9'
                if i == 0 || !(sql[i - 1].is_ascii_alphanumeric() || sql[i - 1] == b'_') =>
            {
                while i < sql.len() && (sql[i].is_ascii_alphanumeric() || sql[i] == b'.') {
                    i += 1;
                }
                b'?'
            }
            // White space is left out altogether (`a b` and `ab` collide: a sample lost, no
            // more).
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            c => {
                i += 1;
                c.to_ascii_lowercase()
            }
        };
        out[n] = token;
        n += 1;
    }
    let mut h = rustc_hash::FxHasher::default();
    h.write(&out[..n]);
    h.finish()
}

/// Past the closing quote `q` of a literal or identifier starting at `i` (backslash escapes
/// in string literals, doubled quotes in all three).
fn skip_quoted(sql: &[u8], mut i: usize, q: u8) -> usize {
    while i < sql.len() {
        let c = sql[i];
        if c == b'\\' && q != b'`' {
            i += 2;
        } else if c == q {
            if sql.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

fn skip_line(sql: &[u8], i: usize) -> usize {
    match sql[i.min(sql.len())..].iter().position(|&c| c == b'\n') {
        Some(p) => i + p + 1,
        None => sql.len(),
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape_keys_ignore_literals_case_and_space() {
        use super::shape_key;
        let a = shape_key(b"SELECT c FROM sbtest1 WHERE id=5");
        assert_eq!(a, shape_key(b"select c  from sbtest1 where id = 71"));
        assert_eq!(
            shape_key(b"UPDATE t SET s='it''s' WHERE k=1.5"),
            shape_key(b"update t set s=\"x\" where k=2")
        );
        assert_ne!(a, shape_key(b"SELECT c FROM sbtest2 WHERE id=5"));
        assert_ne!(a, shape_key(b"SELECT k FROM sbtest1 WHERE id=5"));
        // Digits inside a name are the name's.
        assert_ne!(
            shape_key(b"SELECT * FROM t1"),
            shape_key(b"SELECT * FROM t2")
        );
        // Unterminated literals and empty text do not panic.
        shape_key(b"SELECT 'abc");
        shape_key(b"");
    }

    use super::placeholder_count as count;

    #[test]
    fn counts_markers_outside_literals_identifiers_and_comments() {
        assert_eq!(count(b"SELECT 1"), 0);
        assert_eq!(count(b"SELECT ?"), 1);
        assert_eq!(count(b"INSERT INTO t (a, b) VALUES (?, ?)"), 2);
        assert_eq!(count(b"SELECT '?', \"?\", `?` FROM t WHERE a = ?"), 1);
        assert_eq!(count(b"SELECT 'it''s ?', 'a\\'?' , ?"), 1);
        assert_eq!(count(b"SELECT ? -- what ?\n, ?"), 2);
        assert_eq!(count(b"SELECT ? --? is not a comment"), 2);
        assert_eq!(count(b"SELECT ? # hash ?\n + ?"), 2);
        assert_eq!(count(b"SELECT /* ? */ ?"), 1);
        assert_eq!(count(b"SELECT /*! ? */ ?"), 2);
        assert_eq!(count(b"SELECT /*M!100000 ? */ ?"), 2);
        assert_eq!(count(b"SELECT 'unterminated ?"), 0);
        assert_eq!(count(b"SELECT /* unterminated ?"), 0);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_counts_more_than_question_marks(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let n = count(&b);
            proptest::prop_assert!(n as usize <= b.iter().filter(|&&c| c == b'?').count());
        }
    }
}
