//! The report's sections, in page order: the verdict banner, what was compared, answers,
//! latency, both runs over time, where the time went, the shapes table and examples of differing answers. Each
//! writes one `<section>` of the page; the charts inside them are drawn by [`super::svg`].

use std::fmt::Write as _;

use super::svg::{self, f, Line, Scale, Stalls, TimeChart, BASE_COLOR, CAND_COLOR};
use super::{esc, human, thousands, truncate};
use crate::compare::Mismatch;
use crate::export::{
    fmt_ratio, fmt_s, fmt_signed_us, fmt_us, reproduction_summary, rows_note, timeline_lines,
    top_shapes, unreplayed_runs, unreplayed_summary,
};
use crate::report::{
    Example, Report, RunInfo, RunTimeline, Shape, ShapeBucket, ShapePoint, SideBySide, TimeBucket,
};

/// Shapes listed in the table (the page stays usable with huge workloads).
const MAX_SHAPES: usize = 500;
/// Shapes whose mismatch examples are shown.
const MAX_EXAMPLE_SHAPES: usize = 50;
/// Bars in the top-regressions chart.
const TOP_BARS: usize = 10;

fn pct(rate: f64) -> String {
    if !rate.is_finite() {
        "-".into()
    } else if rate == 0.0 {
        "0 %".into()
    } else if rate < 0.0001 {
        format!("{:.4} %", rate * 100.0)
    } else {
        format!("{:.3} %", rate * 100.0)
    }
}

fn fmt_p(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if !p.is_finite() => "-".into(),
        Some(p) if p < 0.0001 => "&lt; 0.0001".into(),
        Some(p) => format!("{p:.4}"),
    }
}

/// CSS class of a ratio: slower (red) or faster (green) by more than 10 %.
fn ratio_class(r: Option<f64>) -> &'static str {
    match r {
        Some(r) if r.is_finite() && r > 1.1 => "worse",
        Some(r) if r.is_finite() && r < 1.0 / 1.1 => "better",
        _ => "",
    }
}

/// The description of a mismatch class name (the name itself when unknown).
fn mismatch_label(name: &str) -> String {
    Mismatch::from_name(name).map_or_else(|| human(name), |m| m.describe().to_string())
}

/// `error_code 3, values 1`.
fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{}: {}", human(k), thousands(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The latency figures the verdict uses.
fn measure(r: &Report) -> &SideBySide {
    if r.comparison.latency_measure == "since_scheduled" {
        &r.latency.since_scheduled
    } else {
        &r.latency.service
    }
}

/// The exchanges the runs did not replay, by reason: inside the verdict banner, before its
/// reasons, since what follows may be their consequence.
fn unreplayed(s: &mut String, r: &Report) {
    for (side, run) in unreplayed_runs(r) {
        w!(
            s,
            "<div class=\"unreplayed\" id=\"unreplayed-{side}\"><h3>Not replayed in the {side}: {}</h3>\n\
             <table><thead><tr><th>reason</th><th class=\"n\">exchanges</th><th class=\"n\">share</th>\
             <th>what it means</th></tr></thead><tbody>\n",
            esc(&unreplayed_summary(run, r.verdict.thresholds.max_unreplayed))
        );
        for x in &run.reasons {
            w!(
                s,
                "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}{}</td></tr>\n",
                esc(&x.reason),
                thousands(x.count),
                pct(x.share),
                esc(&x.explanation),
                if x.counted {
                    ""
                } else {
                    " <span class=\"muted\">(not counted)</span>"
                }
            );
        }
        s.push_str("</tbody></table></div>\n");
    }
}

pub(super) fn verdict_banner(s: &mut String, r: &Report) {
    let v = &r.verdict;
    let (class, word) = if v.pass {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    let sub = if v.pass {
        "the candidate met every threshold"
    } else {
        "the candidate did not meet the thresholds"
    };
    w!(
        s,
        "<section class=\"verdict {class}\">\n<div class=\"head\"><span class=\"big\">{word}</span>\
         <span class=\"sub\">{sub} · {}</span></div>\n",
        esc(&human(&r.comparison.kind))
    );
    unreplayed(s, r);
    if !v.reasons.is_empty() {
        s.push_str("<ul>\n");
        for reason in &v.reasons {
            w!(s, "<li>{}</li>\n", esc(reason));
        }
        s.push_str("</ul>\n");
    }
    let l = measure(r);
    let t = &r.totals;
    w!(
        s,
        "<div class=\"facts\"><span><b>{}</b> of {} compared application statements differ ({})</span>\
         <span>p99 {} → {} <b class=\"{}\">{}</b></span>\
         <span><b>{}</b> shapes regressed, <b>{}</b> improved (of {})</span></div>\n",
        thousands(t.application_mismatched),
        thousands(t.application_compared),
        pct(t.application_mismatch_rate),
        fmt_us(l.baseline.p99_us),
        fmt_us(l.candidate.p99_us),
        ratio_class(l.p99_ratio),
        fmt_ratio(l.p99_ratio),
        v.regressed_shapes,
        v.improved_shapes,
        r.shapes.len()
    );
    let th = &v.thresholds;
    let p99 = th
        .max_p99_regression
        .map_or_else(|| "not checked".into(), |x| format!("+{:.0} %", x * 100.0));
    let mm = th
        .max_mismatch_rate
        .map_or_else(|| "not checked".into(), pct);
    let mu = th.max_unreplayed.map_or_else(|| "not checked".into(), pct);
    w!(
        s,
        "<div class=\"thresholds\">Thresholds: not replayed {mu} · p99 regression {p99} · \
         answer mismatch rate (application statements) {mm} · \
         shapes judged with ≥ {} samples per side, Mann-Whitney α = {}, median change ≥ {:.0} % and ≥ {} · \
         latency measure: {}</div>\n</section>\n",
        th.min_samples,
        th.alpha,
        th.min_change * 100.0,
        esc(&fmt_us(th.min_change_us)),
        esc(&human(&r.comparison.latency_measure))
    );
}

fn run_cell(i: &RunInfo) -> [String; 6] {
    [
        esc(&i.kind),
        esc(&i.source),
        i.files
            .iter()
            .map(|f| format!("<span class=\"mono\">{}</span>", esc(f)))
            .collect::<Vec<_>>()
            .join("<br>"),
        i.server_version
            .as_deref()
            .map_or_else(|| "<span class=\"muted\">unknown</span>".into(), esc),
        thousands(i.sessions),
        thousands(i.exchanges),
    ]
}

pub(super) fn compared(s: &mut String, r: &Report) {
    let c = &r.comparison;
    s.push_str("<section class=\"card\" id=\"compared\">\n<h2>What was compared</h2>\n");
    w!(
        s,
        "<p style=\"margin:0 0 10px\"><b>{}</b> · latency measure: <b>{}</b></p>\n",
        esc(&human(&c.kind)),
        esc(&human(&c.latency_measure))
    );
    let (b, k) = (run_cell(&c.baseline), run_cell(&c.candidate));
    s.push_str(
        "<table class=\"kv\"><thead><tr><th></th><th>baseline</th><th>candidate</th></tr></thead><tbody>\n",
    );
    for (i, name) in [
        "run kind",
        "source",
        "files",
        "server version",
        "sessions",
        "exchanges",
    ]
    .iter()
    .enumerate()
    {
        w!(
            s,
            "<tr><th>{name}</th><td>{}</td><td>{}</td></tr>\n",
            b[i],
            k[i]
        );
    }
    s.push_str("</tbody></table>\n");
    if !c.note.is_empty() {
        w!(s, "<div class=\"note\">{}</div>\n", esc(&c.note));
    }
    w!(
        s,
        "<div class=\"note\" id=\"reproduction\"><b>Reproduction:</b> {}</div>\n",
        esc(&reproduction_summary(r))
    );
    s.push_str("</section>\n");
}

pub(super) fn answers(s: &mut String, r: &Report) {
    let t = &r.totals;
    s.push_str(
        "<section class=\"card\" id=\"answers\">\n<h2>Answers</h2>\n<div class=\"tiles\">\n",
    );
    let bad = t.mismatched > 0;
    let app_bad = t.application_mismatched > 0;
    let tiles: [(String, &str, &str); 9] = [
        (thousands(t.joined), "joined (on both sides)", ""),
        (thousands(t.compared), "compared", ""),
        (thousands(t.same), "same", if bad { "" } else { "good" }),
        (
            thousands(t.mismatched),
            "differ",
            if bad { "bad" } else { "" },
        ),
        (
            pct(t.mismatch_rate),
            "mismatch rate",
            if bad { "bad" } else { "" },
        ),
        (
            thousands(t.application_compared),
            "application statements compared (driver chatter left out)",
            "",
        ),
        (
            pct(t.application_mismatch_rate),
            "application mismatch rate (judged)",
            if app_bad { "bad" } else { "" },
        ),
        (
            thousands(t.nondeterministic_differences),
            "nondeterministic differences (ignored)",
            "",
        ),
        (
            thousands(t.order_unspecified),
            "same rows, other order, no ORDER BY (ignored)",
            "",
        ),
    ];
    for (v, k, class) in tiles {
        w!(
            s,
            "<div class=\"tile {class}\"><div class=\"v\">{v}</div><div class=\"k\">{k}</div></div>\n"
        );
    }
    s.push_str("</div>\n<div class=\"cols\">\n");
    for (title, m) in [
        ("Joined but not compared", &t.not_compared),
        ("Only in the baseline", &t.only_baseline),
        ("Only in the candidate", &t.only_candidate),
    ] {
        w!(s, "<div><h3>{title}</h3>");
        if m.is_empty() {
            s.push_str("<div class=\"empty\">none</div>");
        } else {
            s.push_str("<table><tbody>");
            for (k, v) in m {
                w!(
                    s,
                    "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                    esc(&human(k)),
                    thousands(*v)
                );
            }
            s.push_str("</tbody></table>");
        }
        s.push_str("</div>\n");
    }
    s.push_str("</div>\n<h3>Answer differences by class</h3>\n");
    if r.mismatches.is_empty() {
        s.push_str("<div class=\"ok\">No answer differs between baseline and candidate.</div>\n");
    } else {
        let mut rows: Vec<(String, u64)> = r
            .mismatches
            .iter()
            .map(|(k, v)| (format!("{} ({})", mismatch_label(k), human(k)), *v))
            .collect();
        rows.sort_by_key(|x| std::cmp::Reverse(x.1));
        svg::mismatch_chart(s, &rows);
    }
    if t.nondeterministic_differences > 0 {
        w!(
            s,
            "<p class=\"muted\">{} differences in shapes whose answers cannot be stable (NOW(), RAND() …) are not counted above.</p>\n",
            thousands(t.nondeterministic_differences)
        );
    }
    s.push_str("</section>\n");
}

pub(super) fn latency(s: &mut String, r: &Report) {
    let l = &r.latency;
    s.push_str("<section class=\"card\" id=\"latency\">\n<h2>Latency</h2>\n");
    s.push_str(
        "<table><thead><tr><th></th><th class=\"n\">p50</th><th class=\"n\">p95</th><th class=\"n\">p99</th>\
         <th class=\"n\">max</th><th class=\"n\">mean</th><th class=\"n\">samples</th></tr></thead><tbody>\n",
    );
    for (key, name, sbs) in [
        ("service", "service time", &l.service),
        (
            "since_scheduled",
            "since scheduled (queueing included)",
            &l.since_scheduled,
        ),
    ] {
        let used = if r.comparison.latency_measure == key {
            " <span class=\"badge used\">used for the verdict and shapes</span>"
        } else {
            ""
        };
        w!(
            s,
            "<tr class=\"group\"><td colspan=\"7\">{name}{used}</td></tr>\n"
        );
        for (side, p) in [("baseline", &sbs.baseline), ("candidate", &sbs.candidate)] {
            let color = if side == "baseline" {
                BASE_COLOR
            } else {
                CAND_COLOR
            };
            let label = format!("<span style=\"color:{color}\">■</span> {side}");
            w!(
                s,
                "<tr><td>&nbsp; {label}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                fmt_us(p.p50_us),
                fmt_us(p.p95_us),
                fmt_us(p.p99_us),
                fmt_us(p.max_us),
                fmt_us(if p.mean_us.is_finite() {
                    p.mean_us.round().max(0.0) as u64
                } else {
                    0
                }),
                thousands(p.count)
            );
        }
        let max_ratio = (sbs.baseline.max_us > 0)
            .then(|| sbs.candidate.max_us as f64 / sbs.baseline.max_us as f64);
        w!(
            s,
            "<tr><td>&nbsp; candidate ÷ baseline</td><td class=\"n {}\">{}</td><td class=\"n {}\">{}</td>\
             <td class=\"n {}\">{}</td><td class=\"n {}\">{}</td><td></td><td></td></tr>\n",
            ratio_class(sbs.p50_ratio),
            fmt_ratio(sbs.p50_ratio),
            ratio_class(sbs.p95_ratio),
            fmt_ratio(sbs.p95_ratio),
            ratio_class(sbs.p99_ratio),
            fmt_ratio(sbs.p99_ratio),
            ratio_class(max_ratio),
            fmt_ratio(max_ratio),
        );
    }
    s.push_str("</tbody></table>\n");
    w!(
        s,
        "<h3>Latency by percentile ({})</h3>\n",
        esc(&human(&r.comparison.latency_measure))
    );
    svg::curve_chart(s, &r.latency.curve);
    s.push_str("</section>\n");
}

/// Both runs over time: throughput, p99 service and since-scheduled time, errors, with the
/// stalls shaded; then the regressed shapes' mean and max latency over time.
/// A ramp run: the headroom, throughput and p99 against load, and the steps.
pub(super) fn ramp(s: &mut String, r: &Report) {
    let Some(ramp) = &r.ramp else { return };
    s.push_str("<section class=\"card\" id=\"ramp\">\n<h2>Load ramp</h2>\n");
    w!(
        s,
        "<p><b>{}</b></p>\n",
        esc(&crate::export::ramp_summary(ramp))
    );
    w!(
        s,
        "<p class=\"muted\">Throughput: <span style=\"color:{BASE_COLOR}\">- -</span> asked \
         <span style=\"color:{CAND_COLOR}\">—</span> achieved · p99: \
         <span style=\"color:{CAND_COLOR}\">—</span> service \
         <span style=\"color:{CAND_COLOR}\">- -</span> since scheduled · red: the limit</p>\n"
    );
    svg::ramp_chart(s, ramp);
    let (header, rows) = crate::export::ramp_table(ramp);
    s.push_str("<table><thead><tr>");
    for h in header {
        w!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>\n");
    for row in rows {
        s.push_str("<tr>");
        for c in row {
            w!(s, "<td>{}</td>", esc(&c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n</section>\n");
}

pub(super) fn timeline(s: &mut String, r: &Report) {
    let t = &r.timeline;
    s.push_str("<section class=\"card\" id=\"timeline\">\n<h2>Over time</h2>\n");
    if t.baseline.buckets.is_empty() && t.candidate.buckets.is_empty() {
        s.push_str("<div class=\"empty\">No exchanges measured over time.</div>\n</section>\n");
        return;
    }
    s.push_str("<ul class=\"timeline\">\n");
    for l in timeline_lines(t) {
        w!(s, "<li>{}</li>\n", esc(&l));
    }
    w!(
        s,
        "</ul>\n<p class=\"muted\"><span style=\"color:{BASE_COLOR}\">■</span> baseline \
         <span style=\"color:{CAND_COLOR}\">■</span> candidate · each exchange counts in the \
         bucket it ended in · shaded: a stall</p>\n"
    );
    let stalls = || {
        vec![
            Stalls {
                side: "baseline",
                color: BASE_COLOR,
                stalls: &t.baseline.stalls,
            },
            Stalls {
                side: "candidate",
                color: CAND_COLOR,
                stalls: &t.candidate.stalls,
            },
        ]
    };
    type Get = fn(&TimeBucket) -> Option<f64>;
    let series =
        |run: &RunTimeline, get: Get| -> Vec<Option<f64>> { run.buckets.iter().map(get).collect() };
    let charts: [(&str, Scale, Get); 4] = [
        (
            "Throughput (exchanges completed per second)",
            Scale::Rate,
            |b| Some(b.throughput),
        ),
        ("p99 service time", Scale::Latency, |b| {
            (b.exchanges > 0).then_some(b.p99_service_us as f64)
        }),
        (
            "p99 time since scheduled (queueing included)",
            Scale::Latency,
            |b| (b.exchanges > 0).then_some(b.p99_since_scheduled_us as f64),
        ),
        ("Errors per second", Scale::Rate, |b| Some(b.errors_per_s)),
    ];
    let worst = t.worst_window.as_ref().map(|w| {
        (
            w.start_s,
            format!(
                "worst window: candidate p99 {} at {}",
                fmt_us(w.candidate_p99_us),
                fmt_s(w.start_s)
            ),
        )
    });
    for (i, (title, scale, get)) in charts.into_iter().enumerate() {
        w!(s, "<h3>{title}</h3>\n");
        svg::time_chart(
            s,
            &TimeChart {
                label: title,
                scale,
                bucket_s: t.bucket_s,
                lines: vec![
                    Line {
                        name: "baseline".into(),
                        color: BASE_COLOR,
                        dashed: false,
                        values: series(&t.baseline, get),
                    },
                    Line {
                        name: "candidate".into(),
                        color: CAND_COLOR,
                        dashed: false,
                        values: series(&t.candidate, get),
                    },
                ],
                stalls: stalls(),
                // On the p99 service time chart.
                marker: if i == 1 { worst.clone() } else { None },
                height: 220.0,
            },
        );
    }
    if !t.shapes.is_empty() {
        w!(
            s,
            "<h3>Regressed shapes over time <span class=\"muted\" style=\"font-weight:400\">\
             (mean: solid, max: dashed; {})</span></h3>\n",
            esc(&human(&r.comparison.latency_measure))
        );
    }
    for st in &t.shapes {
        let fp = r
            .shapes
            .iter()
            .find(|x| x.id == st.id)
            .map_or("", |x| x.fingerprint.as_str());
        w!(
            s,
            "<div class=\"shape-time\"><span class=\"mono\" style=\"font-weight:600\">{}</span> \
             <span class=\"fp\">{}</span>\n",
            esc(&st.id),
            esc(&truncate(fp, 160))
        );
        let line = |name: &str, color, dashed, get: &dyn Fn(&ShapeBucket) -> Option<f64>| Line {
            name: name.into(),
            color,
            dashed,
            values: st.buckets.iter().map(get).collect(),
        };
        let mean = |p: &ShapePoint| (p.count > 0).then_some(p.mean_us);
        let max = |p: &ShapePoint| (p.count > 0).then_some(p.max_us as f64);
        svg::time_chart(
            s,
            &TimeChart {
                label: &format!("shape {} over time", st.id),
                scale: Scale::Latency,
                bucket_s: t.bucket_s,
                lines: vec![
                    line("baseline mean", BASE_COLOR, false, &|b| mean(&b.baseline)),
                    line("candidate mean", CAND_COLOR, false, &|b| mean(&b.candidate)),
                    line("baseline max", BASE_COLOR, true, &|b| max(&b.baseline)),
                    line("candidate max", CAND_COLOR, true, &|b| max(&b.candidate)),
                ],
                stalls: stalls(),
                marker: None,
                height: 150.0,
            },
        );
        s.push_str("</div>\n");
    }
    s.push_str("</section>\n");
}

/// Shapes that added or saved the most time.
pub(super) fn regressions(s: &mut String, r: &Report) {
    s.push_str("<section class=\"card\" id=\"time\">\n<h2>Where the time went: top shapes by added time</h2>\n");
    let mut top: Vec<&Shape> = r.shapes.iter().filter(|x| x.added_us != 0).collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.added_us.unsigned_abs()));
    top.truncate(TOP_BARS);
    top.sort_by_key(|x| std::cmp::Reverse(x.added_us));
    if top.is_empty() {
        s.push_str("<div class=\"empty\">No shape added or saved time.</div>\n</section>\n");
        return;
    }
    s.push_str(
        "<p class=\"muted\" style=\"margin-top:0\">Added time = (candidate mean − baseline mean) × candidate executions. \
         Red: the candidate spent more time; green: it saved time.</p>\n",
    );
    svg::added_time_chart(s, &top);
    s.push_str("</section>\n");
}

pub(super) fn shapes_table(s: &mut String, r: &Report) {
    w!(
        s,
        "<section class=\"card\" id=\"shapes\">\n<h2>Query shapes <span class=\"muted\" style=\"font-weight:400\">({} in all · {} regressed · {} improved)</span></h2>\n",
        thousands(r.shapes.len() as u64),
        r.verdict.regressed_shapes,
        r.verdict.improved_shapes
    );
    if r.shapes.is_empty() {
        s.push_str("<div class=\"empty\">No query shapes.</div>\n</section>\n");
        return;
    }
    s.push_str(
        "<p class=\"muted\" style=\"margin-top:0\">Regressions and shapes with differing answers first, then by added time. \
         Click a column to sort. Counts are executions measured on each side (baseline / candidate).</p>\n",
    );
    s.push_str(
        "<div class=\"scroll\"><table class=\"shapes sortable\"><thead><tr><th>shape</th><th class=\"n\">count</th>\
         <th class=\"n\">p50 base</th><th class=\"n\">p50 cand</th><th class=\"n\">p99 base</th><th class=\"n\">p99 cand</th>\
         <th class=\"n\">p99 ratio</th><th class=\"n\">added</th><th>latency</th><th class=\"n\">p-value</th>\
         <th>answers differ</th></tr></thead><tbody>\n",
    );
    let shown = top_shapes(r, MAX_SHAPES);
    for x in &shown {
        let count = if x.baseline.count == x.candidate.count {
            thousands(x.candidate.count)
        } else {
            format!(
                "{} / {}",
                thousands(x.baseline.count),
                thousands(x.candidate.count)
            )
        };
        let diffs = if x.mismatches.is_empty() {
            "<span class=\"muted\">none</span>".to_string()
        } else {
            let lines = x
                .mismatches
                .iter()
                .map(|(k, v)| format!("{}: {}", esc(&human(k)), thousands(*v)))
                .collect::<Vec<_>>()
                .join("<br>");
            if x.nondeterministic {
                format!("<span class=\"badge nondet\" title=\"answers of this shape cannot be stable: not a failure\">nondeterministic</span><br><span class=\"muted\">{lines}</span>")
            } else {
                format!("<span class=\"worse\">{lines}</span>")
            }
        };
        let added_class = if x.added_us > 0 && x.latency == "regressed" {
            "worse"
        } else if x.added_us < 0 && x.latency == "improved" {
            "better"
        } else {
            ""
        };
        let nd = x.mismatches.values().sum::<u64>();
        w!(
            s,
            "<tr><td><div class=\"id mono\">{}</div><div class=\"fp\" title=\"{}\">{}</div></td>\
             <td class=\"n\" data-v=\"{}\">{count}</td>\
             <td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>\
             <td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>\
             <td class=\"n {}\" data-v=\"{}\">{}</td><td class=\"n {added_class}\" data-v=\"{}\">{}</td>\
             <td><span class=\"badge {}\">{}</span></td><td class=\"n\" data-v=\"{}\">{}</td>\
             <td data-v=\"{nd}\">{diffs}</td></tr>\n",
            esc(&x.id),
            esc(&truncate(&x.fingerprint, 2000)),
            esc(&truncate(&x.fingerprint, 400)),
            x.candidate.count,
            x.baseline.p50_us,
            fmt_us(x.baseline.p50_us),
            x.candidate.p50_us,
            fmt_us(x.candidate.p50_us),
            x.baseline.p99_us,
            fmt_us(x.baseline.p99_us),
            x.candidate.p99_us,
            fmt_us(x.candidate.p99_us),
            ratio_class(x.p99_ratio),
            f(x.p99_ratio.unwrap_or(0.0)),
            fmt_ratio(x.p99_ratio),
            x.added_us,
            esc(&fmt_signed_us(x.added_us)),
            badge_class(&x.latency),
            esc(&x.latency),
            f(x.p_value.unwrap_or(2.0)),
            fmt_p(x.p_value),
        );
    }
    s.push_str("</tbody></table></div>\n");
    if r.shapes.len() > shown.len() {
        w!(
            s,
            "<p class=\"muted\">{} more shapes not listed (see the JSON report).</p>\n",
            thousands((r.shapes.len() - shown.len()) as u64)
        );
    }
    s.push_str("</section>\n");
}

fn badge_class(latency: &str) -> &'static str {
    match latency {
        "regressed" => "regressed",
        "improved" => "improved",
        "unchanged" => "unchanged",
        _ => "insufficient",
    }
}

/// One example in full: the statement as sent, its parameters, both sides' rows with the
/// differing cells marked.
fn example_rows(s: &mut String, e: &Example) {
    w!(
        s,
        "<div class=\"stmt\"><b>session {} #{}{}</b> · {}<br>{}</div>\n",
        e.session,
        e.seq,
        if e.clone > 0 {
            format!(" clone {}", e.clone)
        } else {
            String::new()
        },
        esc(&e.class),
        esc(&truncate(&e.statement, 2000))
    );
    if !e.params.is_empty() {
        w!(
            s,
            "<div class=\"stmt muted\">params: {}</div>\n",
            esc(&truncate(&e.params.join(", "), 2000))
        );
    }
    let Some(rows) = &e.rows else { return };
    s.push_str("<div class=\"sides\">\n");
    for (side, r) in [("baseline", &rows.baseline), ("candidate", &rows.candidate)] {
        w!(s, "<div class=\"side\"><div class=\"muted\">{side}</div>\n");
        if r.kept {
            s.push_str("<table class=\"rows\"><thead><tr>");
            for c in &r.columns {
                w!(s, "<th>{}</th>", esc(&truncate(c, 100)));
            }
            s.push_str("</tr></thead><tbody>\n");
            for (i, row) in r.rows.iter().enumerate() {
                s.push_str("<tr>");
                for (k, c) in row.iter().enumerate() {
                    if r.differing.contains(&[i as u32, k as u32]) {
                        w!(
                            s,
                            "<td class=\"differs\"><mark>{}</mark></td>",
                            esc(&truncate(c, 300))
                        );
                    } else {
                        w!(s, "<td>{}</td>", esc(&truncate(c, 300)));
                    }
                }
                s.push_str("</tr>\n");
            }
            s.push_str("</tbody></table>\n");
        }
        if let Some(n) = rows_note(r) {
            w!(s, "<div class=\"muted\">{}</div>\n", esc(&n));
        }
        s.push_str("</div>\n");
    }
    s.push_str("</div>\n");
}

pub(super) fn examples(s: &mut String, r: &Report) {
    let with: Vec<&Shape> = top_shapes(r, usize::MAX)
        .into_iter()
        .filter(|x| !x.examples.is_empty())
        .collect();
    s.push_str("<section class=\"card\" id=\"examples\">\n<h2>Answer differences: examples</h2>\n");
    if with.is_empty() {
        s.push_str("<div class=\"empty\">No differing answers to show.</div>\n</section>\n");
        return;
    }
    for x in with.iter().take(MAX_EXAMPLE_SHAPES) {
        let nd = if x.nondeterministic {
            " <span class=\"badge nondet\">nondeterministic: not a failure</span>"
        } else {
            ""
        };
        w!(
            s,
            "<div class=\"example\"><div><span class=\"mono\" style=\"font-weight:600\">{}</span>{nd} \
             <span class=\"worse\">{}</span></div><div class=\"fp\" style=\"margin:4px 0 8px\">{}</div>\n\
             <table><thead><tr><th class=\"n\">session</th><th class=\"n\">seq</th><th class=\"n\">clone</th>\
             <th>baseline answered</th><th>candidate answered</th></tr></thead><tbody>\n",
            esc(&x.id),
            esc(&counts(&x.mismatches)),
            esc(&truncate(&x.fingerprint, 600))
        );
        for e in &x.examples {
            w!(
                s,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"diff\">{}</td><td class=\"diff\">{}</td></tr>\n",
                e.session,
                e.seq,
                e.clone,
                esc(&truncate(&e.baseline, 600)),
                esc(&truncate(&e.candidate, 600))
            );
        }
        s.push_str("</tbody></table>\n");
        for e in &x.examples {
            example_rows(s, e);
        }
        s.push_str("</div>\n");
    }
    if with.len() > MAX_EXAMPLE_SHAPES {
        w!(
            s,
            "<p class=\"muted\">Examples of {} more shapes in the JSON report.</p>\n",
            with.len() - MAX_EXAMPLE_SHAPES
        );
    }
    s.push_str("</section>\n");
}
