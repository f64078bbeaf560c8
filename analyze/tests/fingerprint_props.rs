//! Property tests for the fingerprint scanner.
//!
//! Percona's fingerprint is not idempotent in general (its output can hold
//! comments such as `/*repeat union*/`, `percona-toolkit` has a `-`, only the
//! first `LIMIT ?, ?` is normalised, `ASC ASC` loses one `ASC` per pass,
//! `X1` becomes `x?` then `?`, `bx1` becomes `b?` then `?`...),
//! so idempotence is only checked on plain statements without those
//! constructs; everything else is only checked not to panic.

use myrr_analyze::fingerprint::{
    fingerprint, fingerprint_id, fingerprint_with, Fingerprint, FingerprintOptions,
};
use proptest::prelude::*;

/// Bytes and fragments that exercise every rule of the scanner.
const FRAGMENTS: &[&str] = &[
    "'",
    "\"",
    "\\",
    "\\\\",
    "/",
    "*",
    "/*",
    "*/",
    "/*!",
    "!",
    "-",
    "--",
    "#",
    "\n",
    "\r",
    "\t",
    " ",
    "\x0b",
    "\x0c",
    "(",
    ")",
    ",",
    "?",
    ".",
    "_",
    "+",
    "x",
    "b",
    "0",
    "1",
    "9",
    "a",
    "e",
    "f",
    ":",
    "null",
    "true",
    "FALSE",
    "in",
    "IN",
    "values",
    "value",
    "select ",
    "union",
    " all ",
    "limit ",
    "offset",
    "order by ",
    "asc",
    "use ",
    "call ",
    "insert into t values",
    "replace into t values",
    " ignore",
    "administrator command: ",
    "/*a.b:1/2*/",
    "SELECT /*!40001 SQL_NO_CACHE */ * FROM `",
    "fbc5e685a5d3d45aa1d0347fdb7c4d35",
    "é",
    "🥳",
    "\u{85}",
    "\u{a0}",
    "`",
];

fn fragments() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.concat())
}

fn all_options() -> impl Strategy<Value = FingerprintOptions> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| FingerprintOptions {
        match_md5_checksums: a,
        match_embedded_numbers: b,
        prefixes: c,
    })
}

/// Plain SQL: a keyword, then keywords, identifiers, numbers, simple
/// strings and punctuation, separated by blanks.
fn plain_sql() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        proptest::sample::select(
            &[
                "select",
                "SELECT",
                "from",
                "where",
                "and",
                "or",
                "in",
                "IN",
                "values",
                "null",
                "NULL",
                "true",
                "False",
                "like",
                "between",
                "join",
                "on",
                "group by",
                "having",
                "count(*)",
                "as",
                "distinct",
                "set",
                "update",
                "delete",
                "insert into",
                "is",
                "not",
                "(",
                ")",
                ",",
                "=",
                "<",
                ">",
                "*",
                ".",
                "?",
                "-",
                "+",
                "`t1`",
                "t1.id",
                "f(1,2)",
            ][..]
        )
        .prop_map(str::to_owned),
        // No upper case, `x` or `b`: `aX0` gives `ax?`, then `a?` (the `[xb]?`
        // clean-up is case-sensitive and runs before lowercasing), and `bx0`
        // gives `b?`, then `?` (it removes one `[xb.]` before a `?`).
        "[ac-wyz_][ac-wyz0-9_]{0,8}",
        "-?[0-9]{1,6}(\\.[0-9]{1,3})?",
        "'[a-zA-Z0-9 %:.,éü]{0,10}'",
    ];
    let blank = proptest::sample::select(&[" ", "  ", "\n", "\t", " \r\n "][..]);
    // Starts with a keyword: a quote at offset 0 never opens a string, so
    // `'a' 'b'` gives `'a?b'`, which gives `'a??`.
    proptest::collection::vec((token, blank), 1..30).prop_map(|v| {
        let body: String = v.into_iter().flat_map(|(t, b)| [t, b.to_owned()]).collect();
        format!("select {body}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_strings(s in any::<String>(), options in all_options()) {
        let _ = fingerprint_with(&s, &options);
    }

    #[test]
    fn never_panics_on_sql_fragments(s in fragments(), options in all_options()) {
        let out = fingerprint_with(&s, &options);
        let _ = fingerprint_with(&out, &options);
    }

    #[test]
    fn output_is_lowercase(s in fragments()) {
        // Everything but administrator commands (returned as is) is lowercased.
        let out = fingerprint(&s);
        if !s.starts_with("administrator command: ") {
            prop_assert!(!out.bytes().any(|b| b.is_ascii_uppercase()), "{:?} -> {:?}", s, out);
        }
    }

    #[test]
    fn id_is_md5_of_text(s in fragments()) {
        let f = Fingerprint::of(&s);
        prop_assert_eq!(f.id, fingerprint_id(&f.text));
        let hex = f.id_hex();
        prop_assert_eq!(hex.len(), 16);
        prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        prop_assert_eq!(u64::from_str_radix(&hex, 16).unwrap(), f.id);
    }

    #[test]
    fn idempotent_on_plain_sql(s in plain_sql()) {
        let once = fingerprint(&s);
        let twice = fingerprint(&once);
        prop_assert_eq!(&twice, &once, "query {:?}", s);
    }

    #[test]
    fn literal_values_do_not_change_the_shape(
        a in -100_000i64..100_000, b in "[a-zA-Z0-9 ]{0,12}", n in 1usize..20,
    ) {
        let list = (0..n).map(|i| (a + i as i64).to_string()).collect::<Vec<_>>().join(", ");
        let q1 = format!("SELECT * FROM t WHERE id = {a} AND name = '{b}' AND k IN ({list})");
        let q2 = "select * from t where id = 0 and name = 'x' and k in (1)";
        prop_assert_eq!(Fingerprint::of(&q1), Fingerprint::of(q2));
    }
}
