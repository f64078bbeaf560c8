//! Compatibility: how two answers to the same command differ.

use myrr_recording::{columns_digest, Response};
use serde::Serialize;

/// How the candidate's answer differs from the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mismatch {
    /// The baseline failed, the candidate did not.
    ErrorOnlyBaseline,
    /// The candidate failed, the baseline did not.
    ErrorOnlyCandidate,
    ErrorCode,
    /// An answer of another kind (rows vs OK, …).
    ResponseKind,
    Columns,
    RowCount,
    /// Same rows, another order, where the SQL asks for an order.
    Order,
    Values,
    AffectedRows,
    /// The AUTO_INCREMENT id a write generated (OK's last_insert_id).
    InsertId,
    Warnings,
}

impl Mismatch {
    pub const ALL: [Mismatch; 11] = [
        Mismatch::ErrorOnlyBaseline,
        Mismatch::ErrorOnlyCandidate,
        Mismatch::ErrorCode,
        Mismatch::ResponseKind,
        Mismatch::Columns,
        Mismatch::RowCount,
        Mismatch::Order,
        Mismatch::Values,
        Mismatch::AffectedRows,
        Mismatch::InsertId,
        Mismatch::Warnings,
    ];

    /// Whether the statement's time functions (`NOW()`…) can explain such a difference:
    /// another time gives other values, rows, counts — but not another AUTO_INCREMENT id.
    pub fn time_can_explain(self) -> bool {
        self != Mismatch::InsertId
    }

    /// The class named `name` in reports.
    pub fn from_name(name: &str) -> Option<Mismatch> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mismatch::ErrorOnlyBaseline => "error_only_baseline",
            Mismatch::ErrorOnlyCandidate => "error_only_candidate",
            Mismatch::ErrorCode => "error_code",
            Mismatch::ResponseKind => "response_kind",
            Mismatch::Columns => "columns",
            Mismatch::RowCount => "row_count",
            Mismatch::Order => "order",
            Mismatch::Values => "values",
            Mismatch::AffectedRows => "affected_rows",
            Mismatch::InsertId => "insert_id",
            Mismatch::Warnings => "warnings",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mismatch::ErrorOnlyBaseline => "error on the baseline only",
            Mismatch::ErrorOnlyCandidate => "error on the candidate only",
            Mismatch::ErrorCode => "different error codes",
            Mismatch::ResponseKind => "different kind of answer",
            Mismatch::Columns => "different columns or types",
            Mismatch::RowCount => "different row counts",
            Mismatch::Order => "same rows, different order (SQL has ORDER BY)",
            Mismatch::Values => "different values",
            Mismatch::AffectedRows => "different affected rows",
            Mismatch::InsertId => "different AUTO_INCREMENT id generated",
            Mismatch::Warnings => "different warning counts",
        }
    }
}

/// What comparing two answers found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Same,
    Differs(Mismatch),
    /// Same rows in another order where the SQL does not ask for one: not a difference.
    OrderUnspecified,
    /// One side has no answer to compare (skipped, missing, not sent).
    NotCompared(&'static str),
}

fn is_error(r: &Response) -> bool {
    matches!(r, Response::Err(_)) || matches!(r, Response::Rows(rs) if rs.error.is_some())
}

/// Compares two answers. `ordered`: the statement asks for an order (ORDER BY).
pub fn compare(base: &Response, cand: &Response, ordered: bool) -> Outcome {
    use Response as R;
    match (base, cand) {
        (R::Skipped(_), _) => return Outcome::NotCompared("skipped_in_baseline"),
        (_, R::Skipped(_)) => return Outcome::NotCompared("skipped_in_candidate"),
        (R::Missing(_), _) => return Outcome::NotCompared("missing_in_baseline"),
        (_, R::Missing(_)) => return Outcome::NotCompared("missing_in_candidate"),
        _ => {}
    }
    match (is_error(base), is_error(cand)) {
        (true, false) => return Outcome::Differs(Mismatch::ErrorOnlyBaseline),
        (false, true) => return Outcome::Differs(Mismatch::ErrorOnlyCandidate),
        (true, true) => {
            let code = |r: &Response| match r {
                R::Err(e) => e.code,
                R::Rows(rs) => rs.error.as_ref().map_or(0, |e| e.code),
                _ => 0,
            };
            return if code(base) == code(cand) {
                Outcome::Same
            } else {
                Outcome::Differs(Mismatch::ErrorCode)
            };
        }
        (false, false) => {}
    }
    match (base, cand) {
        (R::Rows(a), R::Rows(b)) => {
            if !a.complete || !b.complete {
                return Outcome::NotCompared("incomplete_result");
            }
            if columns_digest(&a.columns) != columns_digest(&b.columns) {
                Outcome::Differs(Mismatch::Columns)
            } else if a.rows != b.rows {
                Outcome::Differs(Mismatch::RowCount)
            } else if a.digest.unordered != b.digest.unordered {
                Outcome::Differs(Mismatch::Values)
            } else if a.digest.ordered != b.digest.ordered {
                if ordered {
                    Outcome::Differs(Mismatch::Order)
                } else {
                    Outcome::OrderUnspecified
                }
            } else if a.warnings != b.warnings {
                Outcome::Differs(Mismatch::Warnings)
            } else {
                Outcome::Same
            }
        }
        (R::Ok(a), R::Ok(b)) => {
            if a.affected_rows != b.affected_rows {
                Outcome::Differs(Mismatch::AffectedRows)
            } else if a.last_insert_id != b.last_insert_id {
                // Another id: later statements naming it touch another row (replay with
                // --pin to give writes production's ids).
                Outcome::Differs(Mismatch::InsertId)
            } else if a.warnings != b.warnings {
                Outcome::Differs(Mismatch::Warnings)
            } else {
                Outcome::Same
            }
        }
        (R::Prepared(a), R::Prepared(b)) => {
            if (a.params, a.columns) != (b.params, b.columns) {
                Outcome::Differs(Mismatch::Columns)
            } else {
                Outcome::Same
            }
        }
        (R::None, R::None) => Outcome::Same,
        (R::Text(_), R::Text(_)) => Outcome::Same,
        (R::LocalInfile { .. }, R::LocalInfile { .. }) => Outcome::Same,
        _ => Outcome::Differs(Mismatch::ResponseKind),
    }
}

/// Functions and statements whose answer cannot be stable between two runs.
const NONDETERMINISTIC: &[&str] = &[
    "now(",
    "sysdate(",
    "current_timestamp",
    "current_date",
    "current_time",
    "curdate(",
    "curtime(",
    "localtime",
    "unix_timestamp(",
    "utc_date",
    "utc_time",
    "rand(",
    "uuid(",
    "uuid_short(",
    "connection_id(",
    "last_insert_id(",
    "found_rows(",
    "row_count(",
    "version(",
    "@@",
    "show status",
    "show global status",
    "show session status",
    "show processlist",
    "show full processlist",
    "show engine",
    "show variables",
    "show global variables",
    "show master status",
    "show slave status",
    "show replica status",
    "processlist",
    "performance_schema",
    "information_schema",
    "benchmark(",
];

/// Whether a fingerprint's answers may legitimately differ between runs.
pub fn is_nondeterministic(fingerprint: &str) -> bool {
    NONDETERMINISTIC.iter().any(|f| fingerprint.contains(f))
}

/// Whether a fingerprint asks for an order.
pub fn is_ordered(fingerprint: &str) -> bool {
    fingerprint.contains("order by")
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::*;

    fn rows(rows: &[&[i64]], cols: &[&str]) -> Response {
        let mut d = RowDigester::new();
        for r in rows {
            d.row(r.iter().map(|v| ValueRef::Int(*v)));
        }
        Response::Rows(ResultSet {
            columns: cols
                .iter()
                .map(|n| Column {
                    name: n.as_bytes().to_vec(),
                    column_type: 8,
                    ..Default::default()
                })
                .collect(),
            rows: rows.len() as u64,
            bytes: 0,
            digest: d.finish(),
            status: 0,
            warnings: 0,
            complete: true,
            error: None,
        })
    }

    fn err(code: u16) -> Response {
        Response::Err(ErrInfo {
            code,
            state: b"HY000".to_vec(),
            message: vec![],
        })
    }

    fn ok(affected: u64) -> Response {
        Response::Ok(OkInfo {
            affected_rows: affected,
            ..Default::default()
        })
    }

    #[test]
    fn a_different_insert_id_is_a_difference() {
        let id = |n| {
            Response::Ok(OkInfo {
                affected_rows: 1,
                last_insert_id: n,
                ..Default::default()
            })
        };
        assert_eq!(compare(&id(7), &id(7), false), Outcome::Same);
        assert_eq!(
            compare(&id(7), &id(8), false),
            Outcome::Differs(Mismatch::InsertId)
        );
    }

    #[test]
    fn classifies_every_difference() {
        let a = rows(&[&[1], &[2]], &["x"]);
        assert_eq!(compare(&a, &a, false), Outcome::Same);
        assert_eq!(
            compare(&a, &rows(&[&[2], &[1]], &["x"]), true),
            Outcome::Differs(Mismatch::Order)
        );
        assert_eq!(
            compare(&a, &rows(&[&[2], &[1]], &["x"]), false),
            Outcome::OrderUnspecified
        );
        assert_eq!(
            compare(&a, &rows(&[&[1], &[3]], &["x"]), false),
            Outcome::Differs(Mismatch::Values)
        );
        assert_eq!(
            compare(&a, &rows(&[&[1]], &["x"]), false),
            Outcome::Differs(Mismatch::RowCount)
        );
        assert_eq!(
            compare(&a, &rows(&[&[1], &[2]], &["y"]), false),
            Outcome::Differs(Mismatch::Columns)
        );
        assert_eq!(compare(&err(1146), &err(1146), false), Outcome::Same);
        assert_eq!(
            compare(&err(1146), &err(1064), false),
            Outcome::Differs(Mismatch::ErrorCode)
        );
        assert_eq!(
            compare(&a, &err(1146), false),
            Outcome::Differs(Mismatch::ErrorOnlyCandidate)
        );
        assert_eq!(
            compare(&err(1146), &a, false),
            Outcome::Differs(Mismatch::ErrorOnlyBaseline)
        );
        assert_eq!(
            compare(&ok(1), &ok(2), false),
            Outcome::Differs(Mismatch::AffectedRows)
        );
        assert_eq!(
            compare(&ok(1), &a, false),
            Outcome::Differs(Mismatch::ResponseKind)
        );
        assert!(matches!(
            compare(&a, &Response::Skipped(SkipReason::Filtered), false),
            Outcome::NotCompared(_)
        ));
    }

    #[test]
    fn labels() {
        assert!(is_nondeterministic("select now()"));
        assert!(is_nondeterministic("select @@version"));
        assert!(!is_nondeterministic("select c from sbtest? where id=?"));
        assert!(is_ordered("select c from t order by c"));
    }
}
