//! Terminal summary; colour only when asked (a terminal, and no NO_COLOR).

use std::io::{self, Write};

use super::{
    example_shapes, example_statement, fmt_ratio, fmt_share, fmt_signed_us, fmt_us,
    reproduction_summary, rows_lines, rows_note, timeline_lines, top_shapes, unreplayed_runs,
    unreplayed_summary, Exporter, EXAMPLE_SHAPES,
};
use crate::report::Report;

pub struct Text {
    pub color: bool,
    /// Shapes listed.
    pub top: usize,
}

impl Text {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

impl Exporter for Text {
    fn write(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let verdict = if r.verdict.pass {
            self.paint("1;32", "PASS")
        } else {
            self.paint("1;31", "FAIL")
        };
        writeln!(
            out,
            "myrr analyze: {verdict}  ({})",
            r.comparison.kind.replace('_', " ")
        )?;
        // What was not replayed comes before any finding: what follows may be its consequence.
        for (side, run) in unreplayed_runs(r) {
            writeln!(
                out,
                "{} {}",
                self.paint("1;33", &format!("not replayed in the {side}:")),
                unreplayed_summary(run, r.verdict.thresholds.max_unreplayed)
            )?;
            for x in &run.reasons {
                writeln!(
                    out,
                    "    {:<18} {:>8} {:>9}  {}{}",
                    x.reason,
                    x.count,
                    fmt_share(x.share),
                    x.explanation,
                    if x.counted { "" } else { " (not counted)" }
                )?;
            }
        }
        for reason in &r.verdict.reasons {
            writeln!(out, "  - {reason}")?;
        }
        for (label, side) in [
            ("baseline: ", &r.comparison.baseline),
            ("candidate:", &r.comparison.candidate),
        ] {
            writeln!(
                out,
                "{label} {} ({} exchanges, {} sessions) {}",
                side.files.join(", "),
                side.exchanges,
                side.sessions,
                side.server_version.as_deref().unwrap_or("")
            )?;
        }
        writeln!(out, "note: {}", r.comparison.note)?;
        writeln!(out, "reproduction: {}", reproduction_summary(r))?;
        if let Some(ramp) = &r.ramp {
            writeln!(out)?;
            writeln!(out, "load ramp: {}", super::ramp_summary(ramp))?;
            let (header, rows) = super::ramp_table(ramp);
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .chain(rows)
            {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "  {}", cells.join("  ").trim_end())?;
            }
        }
        let t = &r.totals;
        writeln!(out)?;
        writeln!(
            out,
            "answers: {} joined, {} compared, {} same, {} differ ({:.3} %), {} nondeterministic differences ignored, {} order-only without ORDER BY",
            t.joined,
            t.compared,
            t.same,
            t.mismatched,
            t.mismatch_rate * 100.0,
            t.nondeterministic_differences,
            t.order_unspecified
        )?;
        writeln!(
            out,
            "  application statements (judged): {} compared, {} differ ({}); driver chatter left out: {} compared",
            t.application_compared,
            t.application_mismatched,
            fmt_share(t.application_mismatch_rate),
            t.compared.saturating_sub(t.application_compared)
        )?;
        for (what, m) in [
            ("not compared", &t.not_compared),
            ("only in baseline", &t.only_baseline),
            ("only in candidate", &t.only_candidate),
        ] {
            if !m.is_empty() {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
                writeln!(out, "  {what}: {}", parts.join(", "))?;
            }
        }
        if !r.mismatches.is_empty() {
            let parts: Vec<String> = r
                .mismatches
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(
                out,
                "  {}: {}",
                self.paint("31", "differences"),
                parts.join(", ")
            )?;
        }
        let l = if r.comparison.latency_measure == "service" {
            &r.latency.service
        } else {
            &r.latency.since_scheduled
        };
        writeln!(out)?;
        writeln!(
            out,
            "latency ({}):        baseline     candidate    ratio",
            r.comparison.latency_measure.replace('_', " ")
        )?;
        for (name, bv, cv, ratio) in [
            ("p50", l.baseline.p50_us, l.candidate.p50_us, l.p50_ratio),
            ("p95", l.baseline.p95_us, l.candidate.p95_us, l.p95_ratio),
            ("p99", l.baseline.p99_us, l.candidate.p99_us, l.p99_ratio),
            ("max", l.baseline.max_us, l.candidate.max_us, None),
        ] {
            writeln!(
                out,
                "  {name:<22} {:>12} {:>12} {:>8}",
                fmt_us(bv),
                fmt_us(cv),
                fmt_ratio(ratio)
            )?;
        }
        writeln!(out, "over time:")?;
        for l in timeline_lines(&r.timeline) {
            writeln!(out, "  {l}")?;
        }
        writeln!(
            out,
            "shapes: {} in all, {} regressed, {} improved",
            r.shapes.len(),
            r.verdict.regressed_shapes,
            r.verdict.improved_shapes
        )?;
        let top = top_shapes(r, self.top);
        if !top.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "  {:<16} {:>7} {:>10} {:>10} {:>7} {:>11}  {:<11} fingerprint",
                "id", "count", "p99 base", "p99 cand", "ratio", "added", "latency"
            )?;
        }
        for s in top {
            let lat = match s.latency.as_str() {
                "regressed" => self.paint("31", "regressed"),
                "improved" => self.paint("32", "improved"),
                o => o.to_string(),
            };
            let fp: String = s.fingerprint.chars().take(70).collect();
            writeln!(
                out,
                "  {:<16} {:>7} {:>10} {:>10} {:>7} {:>11}  {:<11} {}",
                s.id,
                s.candidate.count,
                fmt_us(s.baseline.p99_us),
                fmt_us(s.candidate.p99_us),
                fmt_ratio(s.p99_ratio),
                fmt_signed_us(s.added_us),
                lat,
                fp
            )?;
            if !s.mismatches.is_empty() {
                let parts: Vec<String> = s
                    .mismatches
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                let label = if s.nondeterministic {
                    "differences (nondeterministic, ignored)"
                } else {
                    "differences"
                };
                writeln!(out, "  {:<16} {label}: {}", "", parts.join(", "))?;
                if let Some(e) = s.examples.first() {
                    writeln!(
                        out,
                        "  {:<16} e.g. session {} #{}: baseline {} / candidate {}",
                        "", e.session, e.seq, e.baseline, e.candidate
                    )?;
                }
            }
        }
        self.examples(r, out)
    }
}

impl Text {
    /// Each shape's examples: the statement as sent, where, and both sides' rows with the
    /// differing cells between `*`.
    fn examples(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let shapes = example_shapes(r);
        if shapes.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nDiffering answers (cells that differ are between *)")?;
        let mark = |c: &str| self.paint("1;33", &format!("*{c}*"));
        for s in shapes.iter().take(EXAMPLE_SHAPES) {
            let fp: String = s.fingerprint.chars().take(100).collect();
            writeln!(
                out,
                "  shape {}{}: {fp}",
                s.id,
                if s.nondeterministic {
                    " (nondeterministic, ignored)"
                } else {
                    ""
                }
            )?;
            for e in &s.examples {
                let clone = if e.clone > 0 {
                    format!(" clone {}", e.clone)
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "    session {} #{}{clone} ({}): {}",
                    e.session,
                    e.seq,
                    e.class,
                    example_statement(e)
                )?;
                for (side, answer, rows) in [
                    (
                        "baseline",
                        &e.baseline,
                        e.rows.as_ref().map(|x| &x.baseline),
                    ),
                    (
                        "candidate",
                        &e.candidate,
                        e.rows.as_ref().map(|x| &x.candidate),
                    ),
                ] {
                    writeln!(out, "      {side}: {answer}")?;
                    let Some(rows) = rows else { continue };
                    if rows.kept {
                        for l in rows_lines(rows, 40, &mark) {
                            writeln!(out, "        {l}")?;
                        }
                    }
                    if let Some(n) = rows_note(rows) {
                        writeln!(out, "        ({n})")?;
                    }
                }
            }
        }
        if shapes.len() > EXAMPLE_SHAPES {
            writeln!(
                out,
                "  examples of {} more shapes in the JSON report",
                shapes.len() - EXAMPLE_SHAPES
            )?;
        }
        Ok(())
    }
}
