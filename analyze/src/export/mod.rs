//! Report exporters: one per output format, behind [`Exporter`].

mod html;
mod markdown;
mod text;

use std::io::{self, Write};

use crate::report::Report;

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
