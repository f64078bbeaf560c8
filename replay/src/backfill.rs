//! Restoring a session that began before the recording, from its
//! [`Backfill`](myrr_recording::Backfill): the SQL that sets its session variables, and what
//! an EXECUTE recorded without its parameter types needs from the target.
//!
//! The session task does the restoring (`session::Worker::restore`): before the exchange the
//! backfill came with, it prepares the statements under their recorded ids and sets the
//! variables; what the target refuses is counted, never fatal.

/// Whether `name` can stand unquoted as a system variable's name in `SET SESSION name = …`.
/// Anything else is not sent (a name with a quote or a space could only come from a damaged
/// recording, and would change the statement).
pub(crate) fn is_variable_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
}

/// Appends `SESSION name = value` (the name checked with [`is_variable_name`]).
pub(crate) fn assignment(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"SESSION ");
    out.extend_from_slice(name);
    out.extend_from_slice(b" = ");
    literal(value, out);
}

/// Appends `value` as an SQL literal, as the server reported it (`variables_by_thread` gives
/// text): a number bare, since numeric variables refuse a quoted one (error 1232); anything
/// else quoted, with quotes doubled. A value with a backslash or a control byte goes as a hex
/// literal: how a backslash reads depends on the session's `sql_mode`, which a backfill may
/// be setting in the same statement.
pub(crate) fn literal(value: &[u8], out: &mut Vec<u8>) {
    if is_number(value) {
        out.extend_from_slice(value);
    } else if value.iter().any(|&c| c == b'\\' || c < 0x20 || c == 0x7f) {
        out.extend_from_slice(b"X'");
        for c in value {
            out.extend_from_slice(format!("{c:02X}").as_bytes());
        }
        out.push(b'\'');
    } else {
        out.push(b'\'');
        for &c in value {
            if c == b'\'' {
                out.push(b'\'');
            }
            out.push(c);
        }
        out.push(b'\'');
    }
}

/// `-?digits(.digits)?`
fn is_number(v: &[u8]) -> bool {
    let v = v.strip_prefix(b"-").unwrap_or(v);
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(dot) => (&v[..dot], Some(&v[dot + 1..])),
        None => (v, None),
    };
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    digits(int) && frac.is_none_or(digits)
}

/// The new-params-bound flag of an EXECUTE's parameter block kept undecoded (`raw_params`),
/// for a statement of `params` parameters: NULL bitmap, then the flag. `None` when there is
/// no flag to read (no parameters, or a block too short).
pub(crate) fn types_bound(raw_params: &[u8], params: u16) -> Option<bool> {
    if params == 0 {
        return None;
    }
    raw_params
        .get((params as usize).div_ceil(8))
        .map(|&flag| flag != 0)
}

/// The parameter types (2 bytes each) an undecoded parameter block binds, when its flag says
/// it binds them.
pub(crate) fn bound_types(raw_params: &[u8], params: u16) -> Option<&[u8]> {
    if types_bound(raw_params, params) != Some(true) {
        return None;
    }
    let at = (params as usize).div_ceil(8) + 1;
    raw_params.get(at..at + 2 * params as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: &str) -> String {
        let mut out = Vec::new();
        literal(v.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_go_bare_and_text_quoted() {
        assert_eq!(lit("28800"), "28800");
        assert_eq!(lit("-1"), "-1");
        assert_eq!(lit("0.000000"), "0.000000");
        assert_eq!(lit("+00:00"), "'+00:00'");
        assert_eq!(lit("1e5"), "'1e5'");
        assert_eq!(lit("1."), "'1.'");
        assert_eq!(lit("-"), "'-'");
        assert_eq!(lit(""), "''");
        assert_eq!(lit("ON"), "'ON'");
        assert_eq!(
            lit("STRICT_TRANS_TABLES,NO_ZERO_DATE"),
            "'STRICT_TRANS_TABLES,NO_ZERO_DATE'"
        );
    }

    #[test]
    fn quotes_are_doubled_and_backslashes_go_as_hex() {
        assert_eq!(lit("it's"), "'it''s'");
        assert_eq!(lit("'; DROP TABLE t; --"), "'''; DROP TABLE t; --'");
        // A trailing backslash would escape the closing quote without NO_BACKSLASH_ESCAPES.
        assert_eq!(lit("a\\"), "X'615C'");
        assert_eq!(lit("\\'"), "X'5C27'");
        assert_eq!(lit("a\nb"), "X'610A62'");
    }

    #[test]
    fn only_plain_names_are_sent() {
        assert!(is_variable_name(b"sql_mode"));
        assert!(is_variable_name(b"time_zone"));
        assert!(!is_variable_name(b""));
        assert!(!is_variable_name(b"a = 1, b"));
        assert!(!is_variable_name(b"x`"));
        let mut out = Vec::new();
        assignment(b"time_zone", b"+02:00", &mut out);
        assert_eq!(out, b"SESSION time_zone = '+02:00'");
    }

    #[test]
    fn the_bound_flag_follows_the_null_bitmap() {
        // 2 parameters: a 1-byte bitmap, then the flag, then 2 × 2 bytes of types.
        let unbound = [0x00, 0x00, 0x01, 0x00, 0x00, 0x00];
        assert_eq!(types_bound(&unbound, 2), Some(false));
        assert_eq!(bound_types(&unbound, 2), None);
        let bound = [0x00, 0x01, 0x03, 0x00, 0xfd, 0x00, 0x01];
        assert_eq!(types_bound(&bound, 2), Some(true));
        assert_eq!(bound_types(&bound, 2), Some(&[0x03, 0x00, 0xfd, 0x00][..]));
        // 9 parameters: a 2-byte bitmap.
        assert_eq!(types_bound(&[0xff, 0x01, 0x00], 9), Some(false));
        assert_eq!(types_bound(&[0xff, 0x01, 0x01], 9), Some(true));
        // Nothing to read.
        assert_eq!(types_bound(&[], 0), None);
        assert_eq!(types_bound(&[0x00], 2), None);
        assert_eq!(bound_types(&[0x00, 0x01, 0x03], 2), None, "types cut short");
    }
}
