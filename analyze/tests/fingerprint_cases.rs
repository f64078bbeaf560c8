//! Percona Toolkit's own fingerprint test cases (`t/lib/QueryRewriter.t` and
//! `t/pt-fingerprint/`), as query → expected fingerprint tables.
//!
//! TSV format: a header line, then `query<TAB>expected[<TAB>options_json]`,
//! fields escaped C-style (`\\`, `\t`, `\n`, `\r`).

use myrr_analyze::fingerprint::{fingerprint, fingerprint_with, FingerprintOptions};

const CASES: &str = include_str!("data/percona_fingerprint_cases.tsv");
const CASES_WITH_OPTIONS: &str = include_str!("data/percona_fingerprint_cases_with_options.tsv");
const HUGE_CASES: &str = include_str!("data/percona_fingerprint_cases_huge.tsv");

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => panic!("bad escape \\{other:?} in {field:?}"),
        }
    }
    out
}

/// `{"match_md5_checksums": 1, "prefixes": 1}` → options.
fn parse_options(json: &str) -> FingerprintOptions {
    let mut options = FingerprintOptions::default();
    let inner = json
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_else(|| panic!("bad options {json:?}"));
    for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once(':')
            .unwrap_or_else(|| panic!("bad options {json:?}"));
        let on = matches!(value.trim(), "1" | "true");
        match key.trim().trim_matches('"') {
            "match_md5_checksums" => options.match_md5_checksums = on,
            "match_embedded_numbers" => options.match_embedded_numbers = on,
            "prefixes" => options.prefixes = on,
            other => panic!("unknown option {other:?}"),
        }
    }
    options
}

/// Runs every row; returns (rows run, failure descriptions).
fn run_table(name: &str, table: &str) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut rows = 0;
    for (index, line) in table.lines().enumerate().skip(1) {
        if line.is_empty() {
            continue;
        }
        rows += 1;
        let line_no = index + 1;
        let fields: Vec<&str> = line.split('\t').collect();
        assert!(
            fields.len() == 2 || fields.len() == 3,
            "{name}:{line_no}: expected 2 or 3 fields, got {}",
            fields.len()
        );
        let query = unescape(fields[0]);
        let expected = unescape(fields[1]);
        let options = fields.get(2).map(|o| parse_options(o)).unwrap_or_default();
        let got = fingerprint_with(&query, &options);
        if got != expected {
            failures.push(format!(
                "{name}:{line_no}: {}\n    query:    {:?}\n    expected: {:?}\n    got:      {:?}",
                fields.get(2).copied().unwrap_or("default options"),
                shorten(&query),
                shorten(&expected),
                shorten(&got),
            ));
        }
    }
    (rows, failures)
}

fn shorten(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_owned();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

fn check(name: &str, table: &str, expected_rows: usize) {
    let (rows, failures) = run_table(name, table);
    assert_eq!(rows, expected_rows, "{name}: row count");
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn percona_default_cases() {
    check("percona_fingerprint_cases.tsv", CASES, 37);
}

#[test]
fn percona_cases_with_options() {
    check(
        "percona_fingerprint_cases_with_options.tsv",
        CASES_WITH_OPTIONS,
        15,
    );
}

#[test]
fn percona_huge_multi_row_inserts() {
    check("percona_fingerprint_cases_huge.tsv", HUGE_CASES, 3);
}

#[test]
fn default_function_matches_default_options() {
    for line in CASES.lines().skip(1) {
        let query = unescape(line.split('\t').next().unwrap());
        assert_eq!(
            fingerprint(&query),
            fingerprint_with(&query, &FingerprintOptions::default())
        );
    }
}
