//! Self-contained HTML report (no network): placeholder until the full page lands.

use std::io::{self, Write};

use super::{Exporter, Markdown};
use crate::report::Report;

pub struct Html;

impl Exporter for Html {
    fn write(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let mut md = Vec::new();
        Markdown { top: 50 }.write(r, &mut md)?;
        writeln!(
            out,
            "<!doctype html><meta charset=utf-8><title>myrr report</title><pre>"
        )?;
        let text = String::from_utf8_lossy(&md)
            .replace('&', "&amp;")
            .replace('<', "&lt;");
        writeln!(out, "{text}</pre>")
    }
}
