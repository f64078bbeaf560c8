//! Report exporters: one per output format, behind [`Exporter`].

mod html;
mod markdown;
mod text;

use std::io::{self, Write};

use crate::report::{Example, Report, RunUnreplayed, Shape, SideRows, Stall, Timeline};

pub use html::Html;
pub use markdown::Markdown;
pub use text::Text;

/// Renders a [`Report`] in one format.
pub trait Exporter {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

/// The report as JSON (see `schema/report.schema.json`).
pub struct Json;

impl Exporter for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::other)?;
        writeln!(out)
    }
}

/// `1234` µs → `1.23 ms`; human units for latencies.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

pub fn fmt_signed_us(us: i64) -> String {
    let s = fmt_us(us.unsigned_abs());
    if us < 0 {
        format!("-{s}")
    } else {
        format!("+{s}")
    }
}

pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("×{r:.2}"))
}

/// `0.025` → `2.500 %`: shares and rates as the reports print them.
pub fn fmt_share(share: f64) -> String {
    format!("{:.3} %", share * 100.0)
}

/// A time on a run's axis: `12.3 s`; past two minutes also as `m:ss` (`754 s (12:34)`).
pub fn fmt_s(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0) } else { 0.0 };
    if s < 120.0 {
        let t = format!("{s:.1}");
        format!("{} s", t.strip_suffix(".0").unwrap_or(&t))
    } else {
        let whole = s.round() as u64;
        let (h, m, sec) = (whole / 3600, whole / 60 % 60, whole % 60);
        if h > 0 {
            format!("{whole} s ({h}:{m:02}:{sec:02})")
        } else {
            format!("{whole} s ({m}:{sec:02})")
        }
    }
}

/// Stalls named in a summary; the JSON has them all.
const STALLS_NAMED: usize = 10;

/// A side's stalls in a line: `at 12.3 s for 2 s, at …`, or `no stall`.
pub fn stalls_summary(stalls: &[Stall]) -> String {
    if stalls.is_empty() {
        return "no stall".into();
    }
    let mut parts: Vec<String> = stalls
        .iter()
        .take(STALLS_NAMED)
        .map(|x| format!("at {} for {}", fmt_s(x.start_s), fmt_s(x.length_s)))
        .collect();
    if stalls.len() > STALLS_NAMED {
        parts.push(format!("and {} more", stalls.len() - STALLS_NAMED));
    }
    format!("{} stalled {}", stalls.len(), parts.join(", "))
}

/// The timeline in a few lines: the bucket width, the worst window, each side's stalls.
pub fn timeline_lines(t: &Timeline) -> Vec<String> {
    let mut lines = vec![format!(
        "{} buckets from each run's first exchange; a stall is {} or more without a completion \
         while exchanges were in flight ({} ms resolution)",
        fmt_s(t.bucket_s),
        fmt_s(crate::timeline::STALL_MIN_US as f64 / 1e6),
        t.stall_resolution_ms
    )];
    match &t.worst_window {
        Some(w) => lines.push(format!(
            "worst window (candidate p99 service time): {} at {}–{}; baseline {}",
            fmt_us(w.candidate_p99_us),
            fmt_s(w.start_s),
            fmt_s(w.start_s + t.bucket_s),
            w.baseline_p99_us.map_or_else(
                || "measured nothing then".into(),
                |b| format!("{} then", fmt_us(b))
            )
        )),
        None => lines.push("worst window: the candidate measured no exchange".into()),
    }
    for (side, run) in [("baseline", &t.baseline), ("candidate", &t.candidate)] {
        lines.push(format!("{side}: {}", stalls_summary(&run.stalls)));
    }
    lines
}

/// The runs that left exchanges out, by side (`baseline`, `candidate`): what every report
/// names before any other finding.
pub fn unreplayed_runs(r: &Report) -> impl Iterator<Item = (&'static str, &RunUnreplayed)> {
    [
        ("baseline", &r.unreplayed.baseline),
        ("candidate", &r.unreplayed.candidate),
    ]
    .into_iter()
    .filter(|(_, run)| !run.reasons.is_empty())
}

/// How much of a run was not replayed, against the `--max-unreplayed` limit, in one line.
pub fn unreplayed_summary(run: &RunUnreplayed, limit: Option<f64>) -> String {
    let total = run.skipped + run.lost_in_flight;
    let share = |n: u64| {
        if run.exchanges > 0 {
            n as f64 / run.exchanges as f64
        } else {
            0.0
        }
    };
    let mut s = format!(
        "{total} of {} recorded exchanges ({})",
        run.exchanges,
        fmt_share(share(total))
    );
    match (run.replay, limit) {
        (false, _) => s.push_str(", not judged: the run is not a replay"),
        (true, None) => {}
        (true, Some(max)) if run.counted == total => {
            s.push_str(&format!(", limit {}", fmt_share(max)));
        }
        (true, Some(max)) => s.push_str(&format!(
            "; {} ({}) count against the limit of {}",
            run.counted,
            fmt_share(run.counted_share),
            fmt_share(max)
        )),
    }
    s
}

/// Shapes worth showing: regressions and mismatches first, then by added time.
pub fn top_shapes(report: &Report, n: usize) -> Vec<&crate::report::Shape> {
    let mut v: Vec<_> = report.shapes.iter().collect();
    v.sort_by_key(|s| {
        (
            s.latency != "regressed",
            s.mismatches.is_empty() || s.nondeterministic,
            std::cmp::Reverse(s.added_us),
        )
    });
    v.truncate(n);
    v
}

/// Whether the baseline reproduced production, in a line: the not-reproduced share and its
/// causes with `--reference`, or why write-order noise cannot be told apart without.
pub fn reproduction_summary(r: &Report) -> String {
    let x = &r.reproduction;
    let dependent = &r.totals.order_dependent;
    let labelled = if dependent.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = dependent.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!(
            "; {} answers differ on exchanges a replay labelled ({}): the replay's order can \
             explain them, they are not counted as differences",
            dependent.values().sum::<u64>(),
            parts.join(", ")
        )
    };
    let Some(reference) = &x.reference else {
        return format!("{}{labelled}", x.note);
    };
    let causes: Vec<String> = x.causes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "reference {}: {} of {} baseline answers ({}) not reproduced{}; {} joined exchanges kept \
         out of the comparison and the verdict{labelled}",
        reference.files.join(", "),
        x.not_reproduced,
        x.compared,
        fmt_share(x.not_reproduced_share),
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        },
        x.excluded
    )
}

/// Shapes whose examples the text and Markdown reports show (all are in the JSON).
pub const EXAMPLE_SHAPES: usize = 20;

/// The shapes with examples of differing answers, those that fail the verdict first.
pub fn example_shapes(report: &Report) -> Vec<&Shape> {
    top_shapes(report, usize::MAX)
        .into_iter()
        .filter(|s| !s.examples.is_empty())
        .collect()
}

/// The statement of an example in a line, with its parameters.
pub fn example_statement(e: &Example) -> String {
    let one_line: String = e.statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if e.params.is_empty() {
        one_line
    } else {
        format!("{one_line}  -- params: {}", e.params.join(", "))
    }
}

/// One side's rows as lines of aligned cells; `mark` wraps a differing cell. Cells are cut at
/// `width` characters for display (the mark still says the cell differs).
pub fn rows_lines(side: &SideRows, width: usize, mark: &dyn Fn(&str) -> String) -> Vec<String> {
    let cut = |c: &str| -> String {
        let one: String = c.replace(['\n', '\r', '\t'], " ");
        if one.chars().count() > width {
            let mut t: String = one.chars().take(width.saturating_sub(1)).collect();
            t.push('…');
            t
        } else {
            one
        }
    };
    let header: Vec<String> = side.columns.iter().map(|c| cut(c)).collect();
    let body: Vec<Vec<String>> = side
        .rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let n = header
        .len()
        .max(body.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0; n];
    for r in std::iter::once(&header).chain(&body) {
        for (k, c) in r.iter().enumerate() {
            widths[k] = widths[k].max(c.chars().count() + 2);
        }
    }
    let line = |r: &[String], row: Option<usize>| -> String {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let marked = row.is_some_and(|i| side.differing.contains(&[i as u32, k as u32]));
                let shown = if marked { mark(c) } else { format!(" {c} ") };
                // Padded by the cell's own width: a mark may hold colour codes.
                let pad = widths[k].saturating_sub(c.chars().count() + 2);
                format!("{shown}{}", " ".repeat(pad))
            })
            .collect();
        cells.join("|").trim_end().to_string()
    };
    let mut out = vec![line(&header, None)];
    out.extend(body.iter().enumerate().map(|(i, r)| line(r, Some(i))));
    out
}

/// What a side shows besides its rows: why none, what was left out.
pub fn rows_note(side: &SideRows) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(n) = &side.note {
        parts.push(n.clone());
    }
    if side.rows_left_out > 0 {
        parts.push(format!("{} more rows not shown", side.rows_left_out));
    }
    if side.cells_cut > 0 {
        parts.push(format!("{} values cut at 256 bytes", side.cells_cut));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A ramp run's headroom, in a sentence.
pub fn ramp_summary(ramp: &crate::ramp::RampReport) -> String {
    let ran = ramp.steps.iter().filter(|s| s.ran).count();
    let head = match ramp.headroom {
        Some(m) => format!("headroom x{m}: the largest multiple of the recorded load sustained"),
        None => "no headroom: the candidate did not sustain the recorded load (step 1)".into(),
    };
    format!(
        "{head} within the limit ({}, {} time); {ran} of {} steps ran",
        ramp.limit,
        ramp.measure.replace('_', " "),
        ramp.steps.len()
    )
}

/// A ramp run's steps as a table: the header, then a row per step.
pub fn ramp_table(ramp: &crate::ramp::RampReport) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "step",
        "load",
        "asked/s",
        "achieved/s",
        "service p50",
        "p95",
        "p99",
        "since scheduled p50",
        "p95",
        "p99",
        "errors",
        "outcome",
    ];
    let rows = ramp
        .steps
        .iter()
        .map(|s| {
            let outcome = match (&s.stopped, s.ran, s.within_limit) {
                (_, false, _) => "not run".to_string(),
                (Some(why), _, _) => format!("cut short: {why}"),
                (None, true, true) => "within the limit".to_string(),
                (None, true, false) => "over the latency limit".to_string(),
            };
            vec![
                s.step.to_string(),
                format!("x{}", s.multiple),
                format!("{:.0}", s.asked_per_s),
                format!("{:.0}", s.achieved_per_s),
                fmt_us(s.service.p50_us),
                fmt_us(s.service.p95_us),
                fmt_us(s.service.p99_us),
                fmt_us(s.since_scheduled.p50_us),
                fmt_us(s.since_scheduled.p95_us),
                fmt_us(s.since_scheduled.p99_us),
                s.errors.to_string(),
                outcome,
            ]
        })
        .collect();
    (header, rows)
}

#[cfg(test)]
mod tests {
    use super::html::tests::failing_report;
    use super::*;

    fn render(e: &dyn Exporter, r: &Report) -> String {
        let mut out = Vec::new();
        e.write(r, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn formats() -> Vec<(&'static str, Box<dyn Exporter>)> {
        vec![
            (
                "text",
                Box::new(Text {
                    color: false,
                    top: 20,
                }),
            ),
            ("md", Box::new(Markdown { top: 20 })),
            ("html", Box::new(Html)),
            ("json", Box::new(Json)),
        ]
    }

    /// Every format shows an example's statement, parameters and both sides' rows, with the
    /// differing cell marked as the format marks it (and escaped).
    #[test]
    fn examples_show_statement_params_and_marked_cells() {
        let r = failing_report();
        for (name, e) in formats() {
            let out = render(e.as_ref(), &r);
            let has = |s: &str| assert!(out.contains(s), "{name}: no {s:?} in\n{out}");
            has("SELECT id, note FROM t WHERE id = ?");
            match name {
                "text" => {
                    has("session 12 #41 clone 1 (values)");
                    has("-- params: '<script>'");
                    has(" 1  |*<b>old</b>*");
                    has(" 1  |*<b>new</b>*");
                    has("(2 more rows not shown)");
                }
                "md" => {
                    has("| id | note |");
                    has("| 1 | **<b>old</b>** |");
                    has("| 1 | **<b>new</b>** |");
                }
                "html" => {
                    has("<td class=\"differs\"><mark>&lt;b&gt;old&lt;/b&gt;</mark></td>");
                    has("<td class=\"differs\"><mark>&lt;b&gt;new&lt;/b&gt;</mark></td>");
                    has("params: &#39;&lt;script&gt;&#39;");
                }
                _ => {
                    has("\"differing\": [");
                    has("\"statement\": \"SELECT id, note FROM t WHERE id = ?\"");
                }
            }
        }
    }

    /// Every format says how much the baseline did not reproduce of the reference, and why;
    /// without a reference, that write-order noise cannot be told apart.
    #[test]
    fn reproduction_is_reported_in_every_format() {
        let mut r = failing_report();
        for (name, e) in formats() {
            let out = render(e.as_ref(), &r);
            let want = if name == "json" {
                "\"not_reproduced\": 12"
            } else {
                "12 of 20000 baseline answers (0.060 %) not reproduced (insert_id 2, values 10)"
            };
            assert!(out.contains(want), "{name}: no {want:?} in\n{out}");
        }
        r.reproduction = crate::reproduction::without_reference();
        for (name, e) in formats() {
            let out = render(e.as_ref(), &r);
            assert!(out.contains("cannot be told apart"), "{name}:\n{out}");
        }
    }

    /// Every format names the bucket width, the candidate's worst window against the
    /// baseline's at the same time, and each side's stalls with their time and length.
    #[test]
    fn timeline_in_every_format() {
        let mut r = failing_report();
        for (name, e) in formats() {
            let out = render(e.as_ref(), &r);
            let want: &[&str] = if name == "json" {
                &[
                    "\"bucket_s\": 1.0",
                    "\"start_s\": 29.8",
                    "\"length_s\": 2.5",
                    "\"candidate_p99_us\": 240000",
                ]
            } else {
                &[
                    "1 s buckets",
                    "worst window (candidate p99 service time): 240.00 ms at 32 s–33 s; baseline 5.20 ms then",
                    "baseline: no stall",
                    "candidate: 1 stalled at 29.8 s for 2.5 s",
                ]
            };
            for w in want {
                assert!(out.contains(w), "{name}: no {w:?} in\n{out}");
            }
        }
        r.timeline.candidate.stalls = (0..12)
            .map(|i| Stall {
                start_s: 200.0 * f64::from(i),
                length_s: 1.5,
            })
            .collect();
        let out = render(
            &Text {
                color: false,
                top: 5,
            },
            &r,
        );
        assert!(
            out.contains("candidate: 12 stalled at 0 s for 1.5 s, at 200 s (3:20) for 1.5 s,"),
            "{out}"
        );
        assert!(
            out.contains("at 1800 s (30:00) for 1.5 s, and 2 more"),
            "{out}"
        );
    }

    #[test]
    fn fmt_seconds() {
        assert_eq!(fmt_s(0.0), "0 s");
        assert_eq!(fmt_s(12.34), "12.3 s");
        assert_eq!(fmt_s(754.0), "754 s (12:34)");
        assert_eq!(fmt_s(3_725.0), "3725 s (1:02:05)");
        assert_eq!(fmt_s(f64::NAN), "0 s");
        assert_eq!(fmt_s(-3.0), "0 s");
    }

    #[test]
    fn rows_lines_align_and_mark() {
        let side = SideRows {
            kept: true,
            note: None,
            columns: vec!["id".into(), "name".into()],
            rows: vec![
                vec!["1".into(), "pen".into()],
                vec!["22".into(), "a\nb".into()],
            ],
            differing: vec![[1, 1]],
            rows_left_out: 0,
            cells_cut: 0,
        };
        let lines = rows_lines(&side, 40, &|c| format!("*{c}*"));
        assert_eq!(lines, [" id | name", " 1  | pen", " 22 |*a b*"]);
        assert_eq!(rows_note(&side), None);
    }

    /// Every format names what was not replayed, with each reason's count, share and
    /// explanation, before any other finding.
    #[test]
    fn unreplayed_comes_first_in_every_format() {
        let r = failing_report();
        for (name, e) in formats() {
            let mut out = render(e.as_ref(), &r);
            if name == "html" {
                // The page's content; its style sheet names classes like `regressed`.
                out = out.split_off(out.find("<main>").unwrap());
            }
            let at = |s: &str| {
                out.find(s)
                    .unwrap_or_else(|| panic!("{name}: no {s:?} in\n{out}"))
            };
            let first = at("unknown_statement");
            for finding in ["overall p99", "values", "regressed"] {
                assert!(
                    first < at(finding),
                    "{name}: {finding} before unknown_statement"
                );
            }
            let share = if name == "json" { "0.00997" } else { "0.997 %" };
            for shown in ["1200", share, "EXECUTE of a statement prepared", "filtered"] {
                let p = at(shown);
                assert!(p < at("overall p99"), "{name}: {shown} after the findings");
            }
            if name != "json" {
                assert!(out.contains("(not counted)"), "{name}: filtered not marked");
                assert!(
                    out.contains("1502 of 120345 recorded exchanges (1.248 %); 1202 (0.999 %) count against the limit of 0.500 %"),
                    "{name}: no summary in\n{out}"
                );
            }
        }
    }

    /// A run that replayed everything has no such block.
    #[test]
    fn nothing_unreplayed_nothing_named() {
        let mut r = failing_report();
        r.unreplayed = Default::default();
        r.verdict.reasons.remove(0);
        for (name, e) in formats() {
            let out = render(e.as_ref(), &r);
            assert!(!out.contains("unknown_statement"), "{name}");
            assert!(!out.to_lowercase().contains("not replayed in"), "{name}");
        }
    }

    /// Both mismatch rates are shown: over every compared answer and over the application
    /// statements the verdict judges.
    #[test]
    fn both_mismatch_rates_shown() {
        let r = failing_report();
        for (name, e) in formats() {
            let out = render(e.as_ref(), &r);
            if name == "json" {
                assert!(
                    out.contains("\"application_mismatch_rate\": 0.00021"),
                    "{out}"
                );
                continue;
            }
            // 21 of 119 500 overall, 21 of 100 000 application statements.
            assert!(out.contains("0.018 %"), "{name}: overall rate");
            assert!(out.contains("0.021 %"), "{name}: application rate");
            assert!(out.contains("application statements"), "{name}");
        }
    }
}
