//! Self-contained HTML report: one file, no network (inline CSS from `style.css`, charts as
//! inline SVG drawn here, a few lines of inline JS from `script.js` to sort the shapes table).
//! Written for the people deciding whether to migrate: the verdict first, then what was
//! compared, answers, latency, shapes.
//!
//! Every string that comes from the report goes through [`esc`]: fingerprints, file names and
//! error messages hold `<`, `&` and quotes.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{fmt_ratio, fmt_signed_us, fmt_us, top_shapes, Exporter};
use crate::compare::Mismatch;
use crate::report::{Report, RunInfo, Shape, SideBySide};

pub struct Html;

/// Shapes listed in the table (the page stays usable with huge workloads).
const MAX_SHAPES: usize = 500;
/// Shapes whose mismatch examples are shown.
const MAX_EXAMPLE_SHAPES: usize = 50;
/// Bars in the top-regressions chart.
const TOP_BARS: usize = 10;

const BASE_COLOR: &str = "#3569b4";
const CAND_COLOR: &str = "#e8710a";
const RED: &str = "#d93025";
const GREEN: &str = "#1e8e3e";

/// `write!` into a String (cannot fail).
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters (other than tab/newline) have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// At most `n` characters, with an ellipsis when cut.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A number for SVG attributes: finite, two decimals at most.
fn f(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            o.push(',');
        }
        o.push(c);
    }
    o
}

fn human(s: &str) -> String {
    s.replace('_', " ")
}

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

/// The page's style sheet, for screen and print.
const CSS: &str = include_str!("style.css");

/// Sorts the shapes table by a clicked column (numbers by `data-v`, else by text).
const JS: &str = include_str!("script.js");

impl Exporter for Html {
    fn write(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let mut s = String::with_capacity(64 * 1024);
        let verdict = if r.verdict.pass { "PASS" } else { "FAIL" };
        w!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>myrr analyze: {verdict} ({})</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n",
            esc(&human(&r.comparison.kind))
        );
        w!(
            s,
            "<h1>myrr analyze report <small>myrr {} · report schema {}</small></h1>\n",
            esc(&r.tool_version),
            r.schema_version
        );
        verdict_banner(&mut s, r);
        compared(&mut s, r);
        answers(&mut s, r);
        latency(&mut s, r);
        regressions(&mut s, r);
        shapes_table(&mut s, r);
        examples(&mut s, r);
        w!(
            s,
            "<footer>Generated by myrr {} — self-contained page: no network access needed.</footer>\n\
             </main>\n<script>\n{JS}</script>\n</body>\n</html>\n",
            esc(&r.tool_version)
        );
        out.write_all(s.as_bytes())
    }
}

/// The latency figures the verdict uses.
fn measure(r: &Report) -> &SideBySide {
    if r.comparison.latency_measure == "since_scheduled" {
        &r.latency.since_scheduled
    } else {
        &r.latency.service
    }
}

fn verdict_banner(s: &mut String, r: &Report) {
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
        "<div class=\"facts\"><span><b>{}</b> of {} compared answers differ ({})</span>\
         <span>p99 {} → {} <b class=\"{}\">{}</b></span>\
         <span><b>{}</b> shapes regressed, <b>{}</b> improved (of {})</span></div>\n",
        thousands(t.mismatched),
        thousands(t.compared),
        pct(t.mismatch_rate),
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
    w!(
        s,
        "<div class=\"thresholds\">Thresholds: p99 regression {p99} · answer mismatch rate {mm} · \
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

fn compared(s: &mut String, r: &Report) {
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
    s.push_str("</section>\n");
}

fn answers(s: &mut String, r: &Report) {
    let t = &r.totals;
    s.push_str(
        "<section class=\"card\" id=\"answers\">\n<h2>Answers</h2>\n<div class=\"tiles\">\n",
    );
    let bad = t.mismatched > 0;
    let tiles: [(String, &str, &str); 7] = [
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
        mismatch_chart(s, &rows);
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

/// Horizontal bars, one per mismatch class.
fn mismatch_chart(s: &mut String, rows: &[(String, u64)]) {
    let (width, label_w, row_h, top) = (1000.0, 380.0, 28.0, 6.0);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let plot_w = width - label_w - 90.0;
    let height = top * 2.0 + row_h * rows.len() as f64;
    w!(
        s,
        "<div class=\"chart\"><svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"answer differences by class\">\n",
        f(width),
        f(height)
    );
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let bw = (*n as f64 / max * plot_w).max(2.0);
        w!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{RED}\"><title>{}: {}</title></rect>\
             <text x=\"{}\" y=\"{}\">{}</text>\n",
            f(label_w - 10.0),
            f(y + row_h / 2.0 + 4.0),
            esc(&truncate(label, 58)),
            f(label_w),
            f(y + 4.0),
            f(bw),
            f(row_h - 8.0),
            esc(label),
            n,
            f(label_w + bw + 6.0),
            f(y + row_h / 2.0 + 4.0),
            thousands(*n)
        );
    }
    s.push_str("</svg></div>\n");
}

fn latency(s: &mut String, r: &Report) {
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
    curve_chart(s, r);
    s.push_str("</section>\n");
}

/// x position of a percentile: log10(1 / (1 - p)), so 90, 99, 99.9, 99.99 are evenly spaced.
/// `None` for 100 (the maximum, drawn past the last finite point).
fn tail_x(p: f64) -> Option<f64> {
    let q = (p / 100.0).clamp(0.0, 1.0);
    (q < 1.0).then(|| (1.0 / (1.0 - q)).log10())
}

/// Axis label of a round latency: `1 µs`, `20 ms`, `1 s`.
fn axis_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{} ms", f(us as f64 / 1e3)),
        _ => format!("{} s", f(us as f64 / 1e6)),
    }
}

fn pct_label(p: f64) -> String {
    if p >= 100.0 {
        "max".into()
    } else if p <= 0.0 {
        "min".into()
    } else {
        format!("p{}", f(p))
    }
}

/// Percentile curves of both runs: log-latency against log(1/(1-p)).
fn curve_chart(s: &mut String, r: &Report) {
    let pts: Vec<_> = r
        .latency
        .curve
        .iter()
        .filter(|c| c.percentile.is_finite())
        .collect();
    if pts.is_empty()
        || pts
            .iter()
            .all(|c| c.baseline_us == 0 && c.candidate_us == 0)
    {
        s.push_str("<div class=\"empty\">No latency samples to chart.</div>\n");
        return;
    }
    let (width, height) = (1000.0, 400.0);
    let (ml, mr, mt, mb) = (84.0, 24.0, 34.0, 54.0);
    let (pw, ph) = (width - ml - mr, height - mt - mb);
    // x range: 0 .. the last finite point, plus room for the maximum.
    let last = pts
        .iter()
        .filter_map(|c| tail_x(c.percentile))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let has_max = pts.iter().any(|c| tail_x(c.percentile).is_none());
    let xmax = if has_max { last + 0.6 } else { last };
    let xpos = |p: f64| ml + tail_x(p).unwrap_or(last + 0.6) / xmax * pw;
    // y range: whole decades around the values (values below 1 µs drawn at 1 µs).
    let lg = |v: u64| (v.max(1) as f64).log10();
    let vals = pts.iter().flat_map(|c| [c.baseline_us, c.candidate_us]);
    let lo = vals.clone().map(lg).fold(f64::INFINITY, f64::min).floor();
    let mut hi = vals.map(lg).fold(0.0f64, f64::max).ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    let ypos = |v: u64| mt + ph - (lg(v) - lo) / (hi - lo) * ph;
    w!(
        s,
        "<div class=\"chart\"><svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"latency percentile curves\">\n",
        f(width),
        f(height)
    );
    // Horizontal grid: decades, plus 2× and 5× when the range is short.
    let decades = (hi - lo) as i32;
    let mut ticks: Vec<u64> = Vec::new();
    for d in lo as i32..=hi as i32 {
        let base = 10f64.powi(d);
        ticks.push(base as u64);
        if decades <= 2 && d < hi as i32 {
            ticks.push((2.0 * base) as u64);
            ticks.push((5.0 * base) as u64);
        }
    }
    for t in ticks {
        let y = ypos(t);
        w!(
            s,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            f(ml),
            f(ml + pw),
            f(y),
            f(y),
            f(ml - 8.0),
            f(y + 4.0),
            esc(&axis_us(t))
        );
    }
    // Vertical grid: the curve's percentiles, labelled where there is room.
    let mut last_label = f64::NEG_INFINITY;
    for c in &pts {
        let x = xpos(c.percentile);
        w!(
            s,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
            f(x),
            f(x),
            f(mt),
            f(mt + ph)
        );
        if x - last_label >= 44.0 {
            last_label = x;
            w!(
                s,
                "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                f(x),
                f(mt + ph + 18.0),
                esc(&pct_label(c.percentile))
            );
        }
    }
    w!(
        s,
        "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/>\
         <line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/>\n",
        f(ml),
        f(ml + pw),
        f(mt + ph),
        f(mt + ph),
        f(ml),
        f(ml),
        f(mt),
        f(mt + ph)
    );
    w!(
        s,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile (tail stretched: log scale of 1 / (1 − p))</text>\n\
         <text class=\"axis\" transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">latency (log scale)</text>\n",
        f(ml + pw / 2.0),
        f(height - 10.0),
        f(mt + ph / 2.0)
    );
    for (name, color, get) in [
        (
            "baseline",
            BASE_COLOR,
            (|c: &crate::report::CurvePoint| c.baseline_us)
                as fn(&crate::report::CurvePoint) -> u64,
        ),
        ("candidate", CAND_COLOR, |c| c.candidate_us),
    ] {
        let points: Vec<String> = pts
            .iter()
            .map(|c| format!("{},{}", f(xpos(c.percentile)), f(ypos(get(c)))))
            .collect();
        w!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2.5\" stroke-linejoin=\"round\" points=\"{}\"/>\n",
            points.join(" ")
        );
        for c in &pts {
            w!(
                s,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{color}\"><title>{name} {}: {}</title></circle>",
                f(xpos(c.percentile)),
                f(ypos(get(c))),
                esc(&pct_label(c.percentile)),
                esc(&fmt_us(get(c)))
            );
        }
        s.push('\n');
    }
    // Legend, top left (latency grows to the right, so that corner stays clear).
    let lx = ml + 16.0;
    for (i, (name, color)) in [("baseline", BASE_COLOR), ("candidate", CAND_COLOR)]
        .iter()
        .enumerate()
    {
        let y = mt + 14.0 + i as f64 * 20.0;
        w!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\">{name}</text>\n",
            f(lx),
            f(lx + 24.0),
            f(y),
            f(y),
            f(lx + 30.0),
            f(y + 4.0)
        );
    }
    // Value labels at p99 (or the highest finite percentile) for both runs.
    if let Some(c) = pts
        .iter()
        .filter(|c| c.percentile <= 99.0)
        .max_by(|a, b| a.percentile.total_cmp(&b.percentile))
    {
        let x = xpos(c.percentile);
        // The upper curve is labelled above-left of the point, the lower one below-right:
        // both curves climb to the right, so those corners stay clear of the lines.
        let (yb, yc) = (ypos(c.baseline_us), ypos(c.candidate_us));
        for (v, y, color, upper) in [
            (c.baseline_us, yb, BASE_COLOR, yb < yc),
            (c.candidate_us, yc, CAND_COLOR, yc <= yb),
        ] {
            let (tx, ty, anchor) = if upper {
                (x - 7.0, y - 9.0, "end")
            } else {
                (x + 7.0, y + 18.0, "start")
            };
            w!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" style=\"fill:{color};font-weight:600\">{} {}</text>\n",
                f(tx),
                f(ty),
                esc(&pct_label(c.percentile)),
                esc(&fmt_us(v))
            );
        }
    }
    s.push_str("</svg></div>\n");
}

/// Shapes that added or saved the most time, as diverging bars around zero.
fn regressions(s: &mut String, r: &Report) {
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
    let (width, label_w, row_h, top_m) = (1000.0, 400.0, 30.0, 8.0);
    let text_room = 84.0;
    let pos = top.iter().map(|x| x.added_us.max(0)).max().unwrap_or(0) as f64;
    let neg = top.iter().map(|x| (-x.added_us).max(0)).max().unwrap_or(0) as f64;
    let avail = width - label_w - 10.0 - text_room * (if neg > 0.0 { 2.0 } else { 1.0 });
    let scale = avail / (pos + neg).max(1.0);
    let zero = label_w
        + 10.0
        + if neg > 0.0 {
            text_room + neg * scale
        } else {
            0.0
        };
    let height = top_m * 2.0 + row_h * top.len() as f64;
    w!(
        s,
        "<div class=\"chart\"><svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"top shapes by added time\">\n",
        f(width),
        f(height)
    );
    for (i, x) in top.iter().enumerate() {
        let y = top_m + i as f64 * row_h;
        let mid = y + row_h / 2.0 + 4.0;
        let len = (x.added_us.unsigned_abs() as f64 * scale).max(2.0);
        let (bx, color, tx, anchor) = if x.added_us > 0 {
            (zero, RED, zero + len + 6.0, "start")
        } else {
            (zero - len, GREEN, zero - len - 6.0, "end")
        };
        let label = truncate(&format!("{}  {}", x.id, x.fingerprint), 54);
        w!(
            s,
            "<text class=\"mono\" x=\"{}\" y=\"{}\">{}<title>{}</title></text>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{color}\"><title>{}: {} ({})</title></rect>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" style=\"font-weight:600\">{}</text>\n",
            f(4.0),
            f(mid),
            esc(&label),
            esc(&truncate(&x.fingerprint, 2000)),
            f(bx),
            f(y + 5.0),
            f(len),
            f(row_h - 10.0),
            esc(&x.id),
            esc(&fmt_signed_us(x.added_us)),
            esc(&x.latency),
            f(tx),
            f(mid),
            esc(&fmt_signed_us(x.added_us))
        );
    }
    w!(
        s,
        "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#57606a\"/>\n</svg></div>\n</section>\n",
        f(zero),
        f(zero),
        f(top_m - 4.0),
        f(height - top_m + 4.0)
    );
}

fn shapes_table(s: &mut String, r: &Report) {
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

fn examples(s: &mut String, r: &Report) {
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
        s.push_str("</tbody></table></div>\n");
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::*;
    use crate::stats::Percentiles;

    fn pct(count: u64, p50: u64, p95: u64, p99: u64, max: u64) -> Percentiles {
        Percentiles {
            count,
            mean_us: (p50 + p95) as f64 / 2.0,
            p50_us: p50,
            p95_us: p95,
            p99_us: p99,
            max_us: max,
        }
    }

    fn run(kind: &str, file: &str, version: Option<&str>) -> RunInfo {
        RunInfo {
            files: vec![file.into()],
            kind: kind.into(),
            source: "interface eth0".into(),
            server_version: version.map(Into::into),
            sessions: 42,
            exchanges: 120_345,
        }
    }

    fn side(b: Percentiles, c: Percentiles) -> SideBySide {
        let ratio = |a: u64, b: u64| (a > 0).then(|| b as f64 / a as f64);
        SideBySide {
            p50_ratio: ratio(b.p50_us, c.p50_us),
            p95_ratio: ratio(b.p95_us, c.p95_us),
            p99_ratio: ratio(b.p99_us, c.p99_us),
            baseline: b,
            candidate: c,
        }
    }

    fn shape(id: &str, fp: &str, added: i64, latency: &str, b: u64, c: u64) -> Shape {
        Shape {
            id: id.into(),
            fingerprint: fp.into(),
            nondeterministic: false,
            baseline: pct(500, b, b * 3, b * 5, b * 9),
            candidate: pct(500, c, c * 3, c * 5, c * 9),
            total_baseline_us: 500 * b,
            total_candidate_us: 500 * c,
            added_us: added,
            p50_ratio: Some(c as f64 / b as f64),
            p99_ratio: Some(c as f64 / b as f64),
            p_value: Some(if latency == "unchanged" { 0.42 } else { 1e-12 }),
            latency: latency.into(),
            mismatches: BTreeMap::new(),
            examples: vec![],
        }
    }

    /// A failing report: regressions, mismatches with examples, hostile strings.
    pub(crate) fn failing_report() -> Report {
        let mut shapes = vec![
            shape(
                "A1B2C3D4E5F60718",
                "select * from orders where customer_id=? and status in(?+) order by created_at desc limit ?",
                8_400_000,
                "regressed",
                800,
                2_100,
            ),
            shape(
                "0F1E2D3C4B5A6978",
                "select c from t where note = '<script>alert(\"x\")</script>' & x<?",
                1_250_000,
                "regressed",
                120,
                260,
            ),
            shape(
                "1111222233334444",
                "update stock set qty=qty-? where sku=?",
                300_000,
                "unchanged",
                300,
                310,
            ),
            shape(
                "5555666677778888",
                "select sum(total) from invoices where day between ? and ?",
                -2_600_000,
                "improved",
                5_000,
                2_900,
            ),
            shape(
                "9999AAAABBBBCCCC",
                "select now(), rand()",
                1_000,
                "insufficient",
                20,
                21,
            ),
        ];
        shapes[1].mismatches.insert("values".into(), 17);
        shapes[1]
            .mismatches
            .insert("error_only_candidate".into(), 3);
        shapes[1].examples = vec![
            Example {
                session: 12,
                seq: 40,
                clone: 0,
                sql: shapes[1].fingerprint.clone(),
                baseline: "3 rows × 2 columns, digest 00aa/11bb".into(),
                candidate: "error 1064 You have an error near '<\"&'>' at line 1".into(),
            },
            Example {
                session: 12,
                seq: 41,
                clone: 1,
                sql: shapes[1].fingerprint.clone(),
                baseline: "3 rows × 2 columns, digest 00aa/11bb".into(),
                candidate: "3 rows × 2 columns, digest 00aa/22cc".into(),
            },
        ];
        shapes[4].nondeterministic = true;
        shapes[4].mismatches.insert("values".into(), 4);
        shapes[4].examples = vec![Example {
            session: 3,
            seq: 7,
            clone: 0,
            sql: "select now(), rand()".into(),
            baseline: "1 rows × 2 columns, digest 1/2".into(),
            candidate: "1 rows × 2 columns, digest 3/4".into(),
        }];
        let mut mismatches = BTreeMap::new();
        mismatches.insert("values".to_string(), 17u64);
        mismatches.insert("error_only_candidate".to_string(), 3u64);
        mismatches.insert("row_count".to_string(), 1u64);
        let curve = [
            (0.0, 9, 11),
            (10.0, 40, 52),
            (25.0, 90, 120),
            (50.0, 210, 300),
            (75.0, 600, 820),
            (90.0, 1_400, 2_300),
            (95.0, 2_300, 4_100),
            (99.0, 5_200, 12_000),
            (99.5, 7_000, 18_000),
            (99.9, 12_000, 41_000),
            (99.99, 30_000, 95_000),
            (100.0, 61_000, 240_000),
        ]
        .iter()
        .map(|&(p, b, c)| CurvePoint {
            percentile: p,
            baseline_us: b,
            candidate_us: c,
        })
        .collect();
        let svc = side(
            pct(120_000, 210, 2_300, 5_200, 61_000),
            pct(120_000, 300, 4_100, 12_000, 240_000),
        );
        Report {
            schema_version: SCHEMA_VERSION,
            tool_version: "0.1.0".into(),
            comparison: Comparison {
                kind: "replay_vs_replay".into(),
                note: "both sides replayed by myrr from the same position: latencies compare like for like".into(),
                baseline: run("replay", "/data/runs/mysql-5.7 <old>.myrr", Some("5.7.44-log")),
                candidate: run("replay", "/data/runs/mysql-8.0 & \"new\".myrr", None),
                latency_measure: "service".into(),
            },
            totals: Totals {
                joined: 120_000,
                compared: 119_500,
                same: 119_479,
                mismatched: 21,
                mismatch_rate: 21.0 / 119_500.0,
                nondeterministic_differences: 4,
                order_unspecified: 12,
                not_compared: [("skipped".to_string(), 500u64)].into_iter().collect(),
                only_baseline: [("not_in_candidate".to_string(), 345u64)]
                    .into_iter()
                    .collect(),
                only_candidate: BTreeMap::new(),
            },
            latency: Latency {
                service: svc.clone(),
                since_scheduled: svc,
                curve,
            },
            shapes,
            mismatches,
            verdict: Verdict {
                pass: false,
                reasons: vec![
                    "overall p99 5.20 ms → 12.00 ms (×2.31, limit ×1.20)".into(),
                    "shape 0F1E2D3C4B5A6978 regressed: p99 0.60 ms → 1.30 ms (×2.17, limit ×1.20): select c from t where note = '<script>alert(\"x\")</script>'".into(),
                    "21 of 119500 compared answers differ (0.018 %, limit 0.000 %)".into(),
                ],
                thresholds: Thresholds {
                    max_p99_regression: Some(0.2),
                    max_mismatch_rate: Some(0.0),
                    min_samples: 30,
                    alpha: 0.001,
                    min_change: 0.1,
                    min_change_us: 50,
                },
                regressed_shapes: 2,
                improved_shapes: 1,
            },
        }
    }

    /// Nothing measured: no shapes, no mismatches, all latencies zero.
    fn empty_report() -> Report {
        let mut r = failing_report();
        r.shapes.clear();
        r.mismatches.clear();
        r.totals = Totals::default();
        let zero = side(Percentiles::default(), Percentiles::default());
        r.latency = Latency {
            service: zero.clone(),
            since_scheduled: zero,
            curve: [0.0, 50.0, 99.0, 100.0]
                .iter()
                .map(|&p| CurvePoint {
                    percentile: p,
                    baseline_us: 0,
                    candidate_us: 0,
                })
                .collect(),
        };
        r.verdict.pass = true;
        r.verdict.reasons.clear();
        r.verdict.regressed_shapes = 0;
        r.verdict.improved_shapes = 0;
        r
    }

    fn render(r: &Report) -> String {
        let mut out = Vec::new();
        Html.write(r, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The SVG parts of a page.
    fn svgs(page: &str) -> Vec<&str> {
        page.split("<svg")
            .skip(1)
            .map(|s| &s[..s.find("</svg>").expect("closed svg")])
            .collect()
    }

    fn assert_clean_svg(page: &str) {
        assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
        for svg in svgs(page) {
            for bad in ["NaN", "inf", "Infinity"] {
                assert!(!svg.contains(bad), "{bad} in svg: {svg}");
            }
            // Every number in a coordinate attribute parses as a finite f64.
            for attr in [
                " x=\"",
                " y=\"",
                " x1=\"",
                " x2=\"",
                " y1=\"",
                " y2=\"",
                " cx=\"",
                " cy=\"",
                " width=\"",
                " height=\"",
            ] {
                for part in svg.split(attr).skip(1) {
                    let v = &part[..part.find('"').unwrap()];
                    let n: f64 = v.parse().unwrap_or_else(|_| panic!("{attr}{v}"));
                    assert!(n.is_finite() && n > -1.0, "{attr}{v}");
                }
            }
        }
    }

    #[test]
    fn escapes_report_text() {
        let page = render(&failing_report());
        assert!(!page.contains("<script>alert"), "unescaped fingerprint");
        assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
        assert!(page.contains("near &#39;&lt;&quot;&amp;&#39;&gt;&#39;"));
        assert!(page.contains("mysql-8.0 &amp; &quot;new&quot;.myrr"));
        assert!(!page.contains("<old>"));
        // The only script element is the page's own sorter.
        assert_eq!(page.matches("<script").count(), 1);
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn self_contained() {
        for r in [failing_report(), empty_report()] {
            let page = render(&r);
            assert!(!page.contains("http://") && !page.contains("https://"));
            assert!(!page.contains("src=") && !page.contains("<link"));
            assert!(!page.contains("@import") && !page.contains("url("));
        }
    }

    #[test]
    fn failing_report_content() {
        let page = render(&failing_report());
        assert!(page.contains("verdict fail") && page.contains(">FAIL<"));
        assert!(page.contains("different values (values)"));
        assert!(page.contains("nondeterministic"));
        assert!(page.contains("polyline"));
        // Charts: mismatch classes, percentile curves, top shapes by added time.
        assert_eq!(svgs(&page).len(), 3);
        assert!(page.contains("-2.60 s") && page.contains("+8.40 s"));
        assert_clean_svg(&page);
    }

    #[test]
    fn empty_and_zero_latency_reports() {
        let page = render(&empty_report());
        assert!(page.contains("verdict pass"));
        assert!(page.contains("No latency samples to chart."));
        assert!(page.contains("No query shapes."));
        assert!(page.contains("No answer differs"));
        assert_clean_svg(&page);

        // Zero latencies on one side only, an empty curve, odd percentiles.
        let mut r = failing_report();
        for c in &mut r.latency.curve {
            c.baseline_us = 0;
        }
        for s in &mut r.shapes {
            s.added_us = 0;
            s.p_value = Some(f64::NAN);
            s.p99_ratio = None;
        }
        r.latency.curve.push(CurvePoint {
            percentile: f64::NAN,
            baseline_us: 1,
            candidate_us: 1,
        });
        let page = render(&r);
        assert_eq!(svgs(&page).len(), 2);
        assert_clean_svg(&page);
        r.latency.curve.clear();
        assert_clean_svg(&render(&r));
        r.latency.curve = vec![CurvePoint {
            percentile: 100.0,
            baseline_us: 5,
            candidate_us: u64::MAX,
        }];
        assert_clean_svg(&render(&r));
    }

    #[test]
    fn helpers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(f(f64::NAN), "0");
        assert_eq!(f(-0.001), "0");
        assert_eq!(f(12.5), "12.5");
        assert_eq!(tail_x(100.0), None);
        assert!((tail_x(99.0).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(pct_label(99.9), "p99.9");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    /// Writes the failing sample page when MYRR_HTML_OUT names a file (to look at it in a
    /// browser); always checks the page renders the verdict.
    #[test]
    fn write_sample_page() {
        let page = render(&failing_report());
        assert!(page.contains("FAIL"));
        if let Some(path) = std::env::var_os("MYRR_HTML_OUT") {
            std::fs::write(&path, &page).unwrap();
        }
    }
}
