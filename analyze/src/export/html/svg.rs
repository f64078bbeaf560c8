//! The chart engine: bar charts, percentile curves and series over time as inline SVG, sized
//! by a `viewBox` so they scale with the page. Coordinates go through [`f`], so a chart never holds NaN or
//! infinity whatever the report's numbers.

use std::fmt::Write as _;

use super::{esc, thousands, truncate};
use crate::export::{fmt_s, fmt_signed_us, fmt_us};
use crate::report::{CurvePoint, Shape, Stall};

/// The baseline's colour; the latency table's legend uses it too, to match the curves.
pub(super) const BASE_COLOR: &str = "#3569b4";
/// The candidate's colour.
pub(super) const CAND_COLOR: &str = "#e8710a";
const RED: &str = "#d93025";
const GREEN: &str = "#1e8e3e";

/// A number for SVG attributes: finite, two decimals at most.
pub(super) fn f(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A horizontal grid line at `y` across the plot (`ml`: its left margin, `pw`: its width),
/// labelled on the left.
fn y_grid(s: &mut String, (ml, pw): (f64, f64), y: f64, label: &str) {
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
        esc(label)
    );
}

/// The plot's x and y axes (`mt`, `ph`: its top margin and height).
fn axes(s: &mut String, (ml, pw): (f64, f64), (mt, ph): (f64, f64)) {
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
}

/// Horizontal bars, one per mismatch class.
pub(super) fn mismatch_chart(s: &mut String, rows: &[(String, u64)]) {
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
pub(super) fn curve_chart(s: &mut String, curve: &[CurvePoint]) {
    let pts: Vec<_> = curve.iter().filter(|c| c.percentile.is_finite()).collect();
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
        y_grid(s, (ml, pw), y, &axis_us(t));
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
    axes(s, (ml, pw), (mt, ph));
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
            (|c: &CurvePoint| c.baseline_us) as fn(&CurvePoint) -> u64,
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

/// Diverging bars around zero, one per shape in the order given: red where the candidate
/// spent more time, green where it saved time.
pub(super) fn added_time_chart(s: &mut String, shapes: &[&Shape]) {
    let (width, label_w, row_h, top_m) = (1000.0, 400.0, 30.0, 8.0);
    let text_room = 84.0;
    let pos = shapes.iter().map(|x| x.added_us.max(0)).max().unwrap_or(0) as f64;
    let neg = shapes
        .iter()
        .map(|x| (-x.added_us).max(0))
        .max()
        .unwrap_or(0) as f64;
    let avail = width - label_w - 10.0 - text_room * (if neg > 0.0 { 2.0 } else { 1.0 });
    let scale = avail / (pos + neg).max(1.0);
    let zero = label_w
        + 10.0
        + if neg > 0.0 {
            text_room + neg * scale
        } else {
            0.0
        };
    let height = top_m * 2.0 + row_h * shapes.len() as f64;
    w!(
        s,
        "<div class=\"chart\"><svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"top shapes by added time\">\n",
        f(width),
        f(height)
    );
    for (i, x) in shapes.iter().enumerate() {
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
        "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#57606a\"/>\n</svg></div>\n",
        f(zero),
        f(zero),
        f(top_m - 4.0),
        f(height - top_m + 4.0)
    );
}

/// How a chart over time reads its values.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Scale {
    /// Per second, from 0 (linear).
    Rate,
    /// Latency in µs (log scale).
    Latency,
}

/// One line of a chart over time: a value per bucket, none where the run measured nothing.
pub(super) struct Line {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub values: Vec<Option<f64>>,
}

/// Times a run stalled, shaded in its colour.
pub(super) struct Stalls<'a> {
    pub side: &'static str,
    pub color: &'static str,
    pub stalls: &'a [Stall],
}

/// A chart over time: buckets `bucket_s` wide from each run's time 0.
pub(super) struct TimeChart<'a> {
    pub label: &'a str,
    pub scale: Scale,
    pub bucket_s: f64,
    pub lines: Vec<Line>,
    pub stalls: Vec<Stalls<'a>>,
    /// A bucket outlined and named (the worst window): its start and its label.
    pub marker: Option<(f64, String)>,
    pub height: f64,
}

/// A round step of the time axis for `span_s` seconds, at most ~10 ticks.
fn time_step(span_s: f64) -> f64 {
    const STEPS: [f64; 14] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    ];
    let mut step = STEPS
        .iter()
        .copied()
        .find(|s| span_s / s <= 10.0)
        .unwrap_or(7200.0);
    while span_s / step > 10.0 && (step * 2.0).is_finite() {
        step *= 2.0;
    }
    step
}

/// A time axis label in the unit of the axis's step: `30 s`, `5 min`, `2 h`.
fn axis_s(t: f64, step: f64) -> String {
    let t = t.round().max(0.0) as u64;
    if step >= 3600.0 && t % 3600 == 0 {
        format!("{} h", t / 3600)
    } else if step >= 60.0 && t % 60 == 0 {
        format!("{} min", t / 60)
    } else {
        format!("{t} s")
    }
}

/// A round value at or above `v` (1, 2 or 5 × 10ⁿ).
fn nice_ceil(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

fn axis_rate(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}/s", thousands(v.round() as u64))
    } else {
        format!("{}/s", f(v))
    }
}

/// Lines over time, with the runs' stalls shaded: rates from 0, latencies on a log scale.
pub(super) fn time_chart(s: &mut String, c: &TimeChart) {
    let n = c.lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let finite = |v: &Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0);
    let values: Vec<f64> = c
        .lines
        .iter()
        .flat_map(|l| l.values.iter().filter_map(finite))
        .collect();
    if n == 0 || values.is_empty() || !(c.bucket_s.is_finite() && c.bucket_s > 0.0) {
        s.push_str("<div class=\"empty\">Nothing measured over time.</div>\n");
        return;
    }
    let (width, height) = (1000.0, c.height.max(80.0));
    let (ml, mr, mt, mb) = (84.0, 24.0, 10.0, 30.0);
    let (pw, ph) = (width - ml - mr, height - mt - mb);
    let span = n as f64 * c.bucket_s;
    let xpos = |t: f64| ml + (t / span).clamp(0.0, 1.0) * pw;
    let max = values.iter().copied().fold(0.0f64, f64::max);
    // y: 0 .. a round maximum, or whole decades around the latencies (1 µs at least).
    let lg = |v: f64| v.max(1.0).log10();
    let (lo, hi) = match c.scale {
        Scale::Rate => (0.0, nice_ceil(max)),
        Scale::Latency => {
            let lo = values
                .iter()
                .map(|&v| lg(v))
                .fold(f64::INFINITY, f64::min)
                .floor();
            let hi = lg(max).ceil().max(lo + 1.0);
            (lo, hi)
        }
    };
    let ypos = |v: f64| {
        let r = match c.scale {
            Scale::Rate => v / hi,
            Scale::Latency => (lg(v) - lo) / (hi - lo),
        };
        mt + ph - r.clamp(0.0, 1.0) * ph
    };
    w!(
        s,
        "<div class=\"chart\"><svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
        f(width),
        f(height),
        esc(c.label)
    );
    // Stalls first, under the lines.
    for st in &c.stalls {
        for x in st.stalls {
            let (x0, x1) = (xpos(x.start_s), xpos(x.start_s + x.length_s));
            w!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" opacity=\"0.18\">\
                 <title>{} stalled at {} for {}</title></rect>\n",
                f(x0),
                f(mt),
                f((x1 - x0).max(1.5)),
                f(ph),
                st.color,
                st.side,
                esc(&fmt_s(x.start_s)),
                esc(&fmt_s(x.length_s))
            );
        }
    }
    // Horizontal grid.
    let ticks: Vec<f64> = match c.scale {
        Scale::Rate => (0..=4).map(|i| hi * f64::from(i) / 4.0).collect(),
        Scale::Latency => {
            let mut t = Vec::new();
            for d in lo as i32..=hi as i32 {
                let base = 10f64.powi(d);
                t.push(base);
                if hi - lo <= 2.0 && f64::from(d) < hi {
                    t.extend([2.0 * base, 5.0 * base]);
                }
            }
            t
        }
    };
    for t in ticks {
        let y = ypos(t);
        let label = match c.scale {
            Scale::Rate => axis_rate(t),
            Scale::Latency => axis_us(t as u64),
        };
        y_grid(s, (ml, pw), y, &label);
    }
    // Time axis.
    let step = time_step(span);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let x = xpos(t);
        w!(
            s,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            f(x),
            f(x),
            f(mt),
            f(mt + ph),
            f(x),
            f(mt + ph + 18.0),
            esc(&axis_s(t, step))
        );
        t += step;
    }
    axes(s, (ml, pw), (mt, ph));
    if let Some((start, label)) = &c.marker {
        let (x0, x1) = (xpos(*start), xpos(start + c.bucket_s));
        let (tx, anchor) = if x0 > ml + pw / 2.0 {
            (x0 - 6.0, "end")
        } else {
            (x1 + 6.0, "start")
        };
        w!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{RED}\" \
             stroke-dasharray=\"4 3\"><title>{}</title></rect>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" style=\"fill:{RED};font-weight:600\">{}</text>\n",
            f(x0),
            f(mt),
            f((x1 - x0).max(1.5)),
            f(ph),
            esc(label),
            f(tx),
            f(mt + 14.0),
            esc(label)
        );
    }
    // Each line at its buckets' middles, broken where the run measured nothing.
    for l in &c.lines {
        let dash = if l.dashed {
            " stroke-dasharray=\"5 4\" stroke-width=\"1.5\""
        } else {
            " stroke-width=\"2\""
        };
        let mut segment: Vec<String> = Vec::new();
        let flush = |s: &mut String, seg: &mut Vec<String>| {
            match seg.len() {
                0 => {}
                1 => {
                    let (x, y) = seg[0].split_once(',').unwrap_or(("0", "0"));
                    w!(
                        s,
                        "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{}\"/>",
                        l.color
                    );
                }
                _ => w!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{}\"{dash} stroke-linejoin=\"round\" points=\"{}\"/>",
                    l.color,
                    seg.join(" ")
                ),
            }
            seg.clear();
        };
        for (i, v) in l.values.iter().enumerate() {
            match finite(v) {
                Some(v) => segment.push(format!(
                    "{},{}",
                    f(xpos((i as f64 + 0.5) * c.bucket_s)),
                    f(ypos(v))
                )),
                None => flush(s, &mut segment),
            }
        }
        flush(s, &mut segment);
        w!(s, "<title>{}</title>\n", esc(&l.name));
    }
    s.push_str("</svg></div>\n");
}

/// A ramp run against load: one panel of throughput (asked dashed, achieved solid) from 0,
/// one of p99 (service, and since scheduled dashed) on a log scale with the latency limit;
/// the steps equally spaced, the headroom's step marked.
pub(super) fn ramp_chart(s: &mut String, ramp: &crate::ramp::RampReport) {
    let steps: Vec<&crate::ramp::RampStep> = ramp.steps.iter().filter(|st| st.ran).collect();
    if steps.is_empty() {
        s.push_str("<div class=\"empty\">No step ran.</div>\n");
        return;
    }
    let (width, ml, mr) = (1000.0, 84.0, 24.0);
    let pw = width - ml - mr;
    let n = ramp.steps.len().max(2) as f64;
    let xpos = |i: usize| ml + pw * (i as f64 + 0.5) / n;
    let panel = |s: &mut String,
                 title: &str,
                 series: &[(Vec<Option<f64>>, &str, bool, &str)],
                 log: bool,
                 limit: Option<f64>| {
        let (height, mt, mb) = (200.0, 10.0, 30.0);
        let ph = height - mt - mb;
        let values: Vec<f64> = series
            .iter()
            .flat_map(|(v, ..)| v.iter().flatten().copied())
            .chain(limit)
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let max = values.iter().copied().fold(1.0f64, f64::max);
        let lg = |v: f64| v.max(1.0).log10();
        let (lo, hi) = if log {
            let lo = values
                .iter()
                .map(|&v| lg(v))
                .fold(f64::INFINITY, f64::min)
                .floor();
            let lo = if lo.is_finite() { lo } else { 0.0 };
            (lo, lg(max).ceil().max(lo + 1.0))
        } else {
            (0.0, nice_ceil(max))
        };
        let ypos = |v: f64| {
            let r = if log {
                (lg(v) - lo) / (hi - lo)
            } else {
                v / hi
            };
            mt + ph - r.clamp(0.0, 1.0) * ph
        };
        w!(
            s,
            "<div class=\"chart\"><svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
            f(width),
            f(height),
            esc(title)
        );
        let ticks: Vec<f64> = if log {
            (lo as i32..=hi as i32).map(|d| 10f64.powi(d)).collect()
        } else {
            (0..=4).map(|i| hi * f64::from(i) / 4.0).collect()
        };
        for t in ticks {
            let y = ypos(t);
            let label = if log { axis_us(t as u64) } else { axis_rate(t) };
            y_grid(s, (ml, pw), y, &label);
        }
        for (i, st) in ramp.steps.iter().enumerate() {
            let head = ramp.headroom == Some(st.multiple) && st.within_limit;
            w!(
                s,
                "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\"{}>x{}{}</text>\n",
                f(xpos(i)),
                f(mt + ph + 18.0),
                if head { " font-weight=\"bold\"" } else { "" },
                f(st.multiple),
                if head { " (headroom)" } else { "" }
            );
        }
        if let Some(l) = limit {
            w!(
                s,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{RED}\" stroke-dasharray=\"2 3\">\
                 <title>latency limit {}</title></line>\n",
                f(ml),
                f(ml + pw),
                f(ypos(l)),
                f(ypos(l)),
                esc(&fmt_us(l as u64))
            );
        }
        for (values, color, dashed, name) in series {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| format!("{},{}", f(xpos(i)), f(ypos(v)))))
                .collect();
            w!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{} points=\"{}\">\
                 <title>{}</title></polyline>\n",
                if *dashed {
                    " stroke-dasharray=\"6 4\""
                } else {
                    ""
                },
                points.join(" "),
                esc(name)
            );
            for p in &points {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                w!(
                    s,
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>\n"
                );
            }
        }
        axes(s, (ml, pw), (mt, ph));
        s.push_str("</svg></div>\n");
    };
    let of = |g: &dyn Fn(&crate::ramp::RampStep) -> f64| -> Vec<Option<f64>> {
        ramp.steps.iter().map(|st| st.ran.then(|| g(st))).collect()
    };
    panel(
        s,
        "throughput against load",
        &[
            (of(&|st| st.asked_per_s), BASE_COLOR, true, "asked"),
            (of(&|st| st.achieved_per_s), CAND_COLOR, false, "achieved"),
        ],
        false,
        None,
    );
    panel(
        s,
        "p99 against load",
        &[
            (
                of(&|st| st.service.p99_us as f64),
                CAND_COLOR,
                false,
                "p99 service",
            ),
            (
                of(&|st| st.since_scheduled.p99_us as f64),
                CAND_COLOR,
                true,
                "p99 since scheduled",
            ),
        ],
        true,
        Some(ramp.p99_limit_us as f64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_axes() {
        assert_eq!(f(f64::NAN), "0");
        assert_eq!(f(-0.001), "0");
        assert_eq!(f(12.5), "12.5");
        assert_eq!(tail_x(100.0), None);
        assert!((tail_x(99.0).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(pct_label(99.9), "p99.9");
    }

    #[test]
    fn time_axes() {
        assert_eq!(time_step(60.0), 10.0);
        assert_eq!(time_step(300.0), 30.0);
        assert_eq!(time_step(90_000.0), 14_400.0);
        assert!(time_step(f64::MAX).is_finite());
        assert_eq!(axis_s(300.0, 60.0), "5 min");
        assert_eq!(axis_s(7200.0, 3600.0), "2 h");
        assert_eq!(axis_s(90.0, 30.0), "90 s");
        assert_eq!(axis_s(60.0, 10.0), "60 s");
        assert_eq!(axis_s(7200.0, 1800.0), "120 min");
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(3.2), 5.0);
        assert_eq!(nice_ceil(1000.0), 1000.0);
        assert_eq!(nice_ceil(1001.0), 2000.0);
    }
}
