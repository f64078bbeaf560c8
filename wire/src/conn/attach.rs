//! Guesses at where a stream with no known start can be picked up: a connection whose
//! handshake is not in the capture, or one resuming after a gap. Decoding inside an answer
//! from an arbitrary byte would misread it, so only what plausibly starts a command (or a
//! greeting, or a server's refusal) is trusted as a boundary; the rest is skipped and counted.

use crate::command::{self, Code};

pub(super) enum Framing {
    Plain,
    Compressed,
}

/// Whether `data` starts with a command packet a client could have sent, and in which framing.
pub(super) fn plausible_command(data: &[u8], compressed_known: bool) -> Option<Framing> {
    if data.len() < 5 {
        return None;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
    let seq = data[3];
    let cmd = data[4];
    if !compressed_known && seq == 0 && len >= 1 && plausible_payload(cmd, len, &data[4..]) {
        return Some(Framing::Plain);
    }
    // Compressed: clen(3) seq(1) ulen(3), then either raw packets or zlib.
    if data.len() >= 8 {
        let ulen = u32::from_le_bytes([data[4], data[5], data[6], 0]) as usize;
        if ulen == 0 {
            let inner = &data[7..];
            if inner.len() >= 5 {
                let ilen = u32::from_le_bytes([inner[0], inner[1], inner[2], 0]) as usize;
                if inner[3] == 0
                    && ilen + 4 <= len
                    && plausible_payload(inner[4], ilen, &inner[4..])
                {
                    return Some(Framing::Compressed);
                }
            }
        } else if data[7] == 0x78 && ulen >= len.saturating_sub(16) && seq == 0 {
            return Some(Framing::Compressed);
        }
    }
    None
}

fn plausible_payload(cmd: u8, len: usize, payload: &[u8]) -> bool {
    match Code::from(cmd) {
        Code::Quit
        | Code::Statistics
        | Code::ProcessInfo
        | Code::Debug
        | Code::Ping
        | Code::ResetConnection => len == 1,
        Code::InitDb | Code::Query | Code::StmtPrepare => {
            let text = payload.get(1..payload.len().min(len)).unwrap_or_default();
            len > 1
                && (looks_like_sql(text)
                    || command::query_attributes_block(text)
                        .is_some_and(|(_, s)| looks_like_sql(s)))
        }
        Code::FieldList | Code::ChangeUser => len > 1,
        Code::ProcessKill | Code::StmtClose | Code::StmtReset => len == 5,
        Code::StmtExecute => len >= 10,
        Code::StmtSendLongData => len >= 7,
        Code::SetOption => len == 3,
        Code::StmtFetch => len == 9,
        _ => false,
    }
}

/// Text that could be the start of an SQL statement (allowing for a cut-off end).
pub(super) fn looks_like_sql(b: &[u8]) -> bool {
    let head = &b[..b.len().min(64)];
    !head.is_empty()
        && head
            .iter()
            .all(|&c| c >= 0x20 || c == b'\n' || c == b'\r' || c == b'\t')
        && head.iter().any(|c| {
            c.is_ascii_alphabetic() || *c == b'(' || *c == b'/' || *c == b'-' || *c == b'#'
        })
}

pub(super) fn looks_like_greeting(data: &[u8]) -> bool {
    if data.len() < 10 {
        return false;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
    let proto = data[4];
    data[3] == 0
        && (proto == 0x0a || proto == 0x09)
        && len + 4 <= data.len() + 64
        && data[5].is_ascii_digit()
        && data[5..].iter().take(64).position(|&b| b == 0).is_some()
}

/// An ERR a server sends instead of its greeting ("Host is blocked", "Too many connections"):
/// packet 0, alone in the segment, with an error code and no SQL state, since nothing has been
/// negotiated yet (every ERR after a 4.1 login has one).
pub(super) fn looks_like_refusal(data: &[u8]) -> bool {
    match crate::framing::whole_packet(data) {
        Some((0, p, rest)) => {
            rest.is_empty()
                && p.len() > 3
                && p[0] == 0xff
                && u16::from_le_bytes([p[1], p[2]]) >= 1000
                && p[3] != b'#'
        }
        _ => false,
    }
}
