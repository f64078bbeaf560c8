//! Markdown, for pull requests and tickets.

use std::io::{self, Write};

use super::{
    example_shapes, example_statement, fmt_ratio, fmt_share, fmt_signed_us, fmt_us,
    reproduction_summary, rows_note, timeline_lines, top_shapes, unreplayed_runs,
    unreplayed_summary, Exporter, EXAMPLE_SHAPES,
};
use crate::report::Report;
use crate::report::SideRows;

pub struct Markdown {
    pub top: usize,
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl Exporter for Markdown {
    fn write(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let v = if r.verdict.pass {
            "✅ PASS"
        } else {
            "❌ FAIL"
        };
        writeln!(out, "## myrr analyze: {v}\n")?;
        // What was not replayed comes before any finding: what follows may be its consequence.
        for (side, run) in unreplayed_runs(r) {
            writeln!(
                out,
                "**Not replayed in the {side}:** {}\n",
                cell(&unreplayed_summary(
                    run,
                    r.verdict.thresholds.max_unreplayed
                ))
            )?;
            writeln!(
                out,
                "| reason | exchanges | share | what it means |\n|---|---|---|---|"
            )?;
            for x in &run.reasons {
                writeln!(
                    out,
                    "| `{}` | {} | {} | {}{} |",
                    x.reason,
                    x.count,
                    fmt_share(x.share),
                    cell(&x.explanation),
                    if x.counted { "" } else { " (not counted)" }
                )?;
            }
            writeln!(out)?;
        }
        for reason in &r.verdict.reasons {
            writeln!(out, "- {}", cell(reason))?;
        }
        if let Some(ramp) = &r.ramp {
            writeln!(
                out,
                "\n### Load ramp\n\n{}\n",
                cell(&super::ramp_summary(ramp))
            )?;
            let (header, rows) = super::ramp_table(ramp);
            writeln!(out, "| {} |", header.join(" | "))?;
            writeln!(out, "|{}", "---|".repeat(header.len()))?;
            for row in rows {
                let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                writeln!(out, "| {} |", cells.join(" | "))?;
            }
        }
        let (b, c) = (&r.comparison.baseline, &r.comparison.candidate);
        writeln!(out, "\n| | baseline | candidate |\n|---|---|---|")?;
        writeln!(
            out,
            "| run | {} ({}) | {} ({}) |",
            cell(&b.files.join(", ")),
            b.kind,
            cell(&c.files.join(", ")),
            c.kind
        )?;
        writeln!(
            out,
            "| server | {} | {} |",
            cell(b.server_version.as_deref().unwrap_or("-")),
            cell(c.server_version.as_deref().unwrap_or("-"))
        )?;
        writeln!(out, "| exchanges | {} | {} |", b.exchanges, c.exchanges)?;
        let l = if r.comparison.latency_measure == "service" {
            &r.latency.service
        } else {
            &r.latency.since_scheduled
        };
        for (name, bv, cv) in [
            ("p50", l.baseline.p50_us, l.candidate.p50_us),
            ("p95", l.baseline.p95_us, l.candidate.p95_us),
            ("p99", l.baseline.p99_us, l.candidate.p99_us),
        ] {
            writeln!(out, "| {name} latency | {} | {} |", fmt_us(bv), fmt_us(cv))?;
        }
        writeln!(out, "\n_{}_\n", cell(&r.comparison.note))?;
        writeln!(
            out,
            "**Reproduction:** {}\n",
            cell(&reproduction_summary(r))
        )?;
        let t = &r.totals;
        writeln!(
            out,
            "**Answers:** {} joined, {} compared, {} differ ({:.3} %); application statements (judged): {} compared, {} differ ({}); {} nondeterministic differences ignored; {} order-only differences without ORDER BY.\n",
            t.joined,
            t.compared,
            t.mismatched,
            t.mismatch_rate * 100.0,
            t.application_compared,
            t.application_mismatched,
            fmt_share(t.application_mismatch_rate),
            t.nondeterministic_differences,
            t.order_unspecified
        )?;
        if !r.mismatches.is_empty() {
            writeln!(out, "| difference | count |\n|---|---|")?;
            for (k, v) in &r.mismatches {
                writeln!(out, "| {k} | {v} |")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "### Over time\n")?;
        for l in timeline_lines(&r.timeline) {
            writeln!(out, "- {}", cell(&l))?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "### Query shapes ({} regressed, {} improved)\n",
            r.verdict.regressed_shapes, r.verdict.improved_shapes
        )?;
        writeln!(out, "| id | count | p99 baseline | p99 candidate | ratio | added | latency | differences | fingerprint |\n|---|---|---|---|---|---|---|---|---|")?;
        for s in top_shapes(r, self.top) {
            let diffs: Vec<String> = s
                .mismatches
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | `{}` |",
                s.id,
                s.candidate.count,
                fmt_us(s.baseline.p99_us),
                fmt_us(s.candidate.p99_us),
                fmt_ratio(s.p99_ratio),
                fmt_signed_us(s.added_us),
                s.latency,
                cell(&diffs.join(", ")),
                cell(&s.fingerprint.chars().take(120).collect::<String>()).replace('`', "'")
            )?;
        }
        examples(r, out)
    }
}

/// A cell of a rows table: escaped, cut for display, bold when it differs.
fn row_cell(c: &str, differs: bool) -> String {
    let mut t: String = c.chars().take(80).collect();
    if t.len() < c.len() {
        t.push('…');
    }
    let t = cell(&t)
        .replace('*', "\\*")
        .replace('_', "\\_")
        .replace('`', "\\`");
    if differs && !t.is_empty() {
        format!("**{t}**")
    } else {
        t
    }
}

fn rows_table(side: &SideRows, out: &mut dyn Write) -> io::Result<()> {
    let n = side
        .columns
        .len()
        .max(side.rows.iter().map(Vec::len).max().unwrap_or(0));
    if n == 0 {
        return Ok(());
    }
    let head: Vec<String> = (0..n)
        .map(|k| row_cell(side.columns.get(k).map_or("", String::as_str), false))
        .collect();
    writeln!(out, "| {} |", head.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(n))?;
    for (i, r) in side.rows.iter().enumerate() {
        let cells: Vec<String> = (0..n)
            .map(|k| {
                let differs = side.differing.contains(&[i as u32, k as u32]);
                row_cell(r.get(k).map_or("", String::as_str), differs)
            })
            .collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    writeln!(out)
}

/// Each shape's examples: the statement as sent, where, both sides' rows (differing cells in
/// bold).
fn examples(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let shapes = example_shapes(r);
    if shapes.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n### Differing answers\n")?;
    for s in shapes.iter().take(EXAMPLE_SHAPES) {
        writeln!(
            out,
            "#### `{}`{}\n\n`{}`\n",
            s.id,
            if s.nondeterministic {
                " (nondeterministic, ignored)"
            } else {
                ""
            },
            cell(&s.fingerprint.chars().take(200).collect::<String>()).replace('`', "'")
        )?;
        for e in &s.examples {
            writeln!(
                out,
                "- session {} #{} (clone {}), **{}**:\n\n  ```sql\n  {}\n  ```\n",
                e.session,
                e.seq,
                e.clone,
                e.class,
                example_statement(e).replace("```", "'''")
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
                writeln!(out, "  {side}: {}\n", cell(answer))?;
                let Some(rows) = rows else { continue };
                if rows.kept {
                    rows_table(rows, out)?;
                }
                if let Some(n) = rows_note(rows) {
                    writeln!(out, "  _{}_\n", cell(&n))?;
                }
            }
        }
    }
    if shapes.len() > EXAMPLE_SHAPES {
        writeln!(
            out,
            "_Examples of {} more shapes in the JSON report._",
            shapes.len() - EXAMPLE_SHAPES
        )?;
    }
    Ok(())
}
