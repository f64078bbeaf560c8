//! What the protocol needs to know of SQL text: how many `?` placeholders a statement has
//! (the parameter count its EXECUTEs carry), counted as the server's lexer counts them.

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
