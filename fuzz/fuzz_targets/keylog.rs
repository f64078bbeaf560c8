//! `KeyLog::parse` (NSS key log lines) and `keylog::secrets_blocks` (the pcapng block walk),
//! both fed the same arbitrary bytes.
//!
//! Checks: no panic; every line is used, ignored or counted bad, never more than there are
//! lines; at most `BAD_LINES_KEPT` bad lines kept, each with a line number within the input;
//! secrets blocks found lie inside the input, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myrr_capture::tls::keylog::{secrets_blocks, BAD_LINES_KEPT};
use myrr_capture::tls::KeyLog;

fuzz_target!(|data: &[u8]| {
    myrr_fuzz::run(|| one(data));
});

fn one(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let mut k = KeyLog::default();
    k.parse(data, "fuzz");
    assert!(k.lines_used + k.bad_lines <= lines);
    assert!(k.bad.len() <= BAD_LINES_KEPT);
    assert!(k.bad.len() as u64 <= k.bad_lines);
    for b in &k.bad {
        assert!(b.line >= 1 && b.line as u64 <= lines, "{b}");
        let _ = b.to_string();
    }
    assert!(k.sessions() as u64 <= k.lines_used);
    let found = secrets_blocks(&mut std::io::BufReader::new(std::io::Cursor::new(data))).unwrap();
    let mut last = None;
    for (offset, secrets) in &found {
        assert!((*offset as usize) + secrets.len() <= data.len());
        assert!(last.is_none_or(|l| l < *offset));
        last = Some(*offset);
    }
}
