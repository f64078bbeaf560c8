//! The server's generic packets (OK, ERR, EOF, column definition), read the same wherever
//! they occur in an answer. `parse_err` is public: replay reads a refused login with it.

use myrr_recording::{Column, ErrInfo, OkInfo};

use crate::reader::Reader;

/// An ERR packet's code, SQL state and message.
pub fn parse_err(p: &[u8]) -> ErrInfo {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    let code = r.u16().unwrap_or(0);
    let state = if r.rest().first() == Some(&b'#') {
        r.skip(1);
        r.take(5).unwrap_or_default().to_vec()
    } else {
        Vec::new()
    };
    ErrInfo {
        code,
        state,
        message: r.rest().to_vec(),
    }
}

pub(super) fn parse_ok(p: &[u8], session_track: bool) -> OkInfo {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    let mut ok = OkInfo {
        affected_rows: r.lenenc().unwrap_or(0),
        last_insert_id: r.lenenc().unwrap_or(0),
        status: r.u16().unwrap_or(0),
        warnings: r.u16().unwrap_or(0),
        info: Vec::new(),
    };
    ok.info = if session_track {
        r.lenenc_bytes().unwrap_or_default().to_vec()
    } else {
        r.rest().to_vec()
    };
    ok
}

/// (warnings, status) of an EOF packet.
pub(super) fn parse_eof(p: &[u8]) -> (u16, u16) {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    (r.u16().unwrap_or(0), r.u16().unwrap_or(0))
}

/// ColumnDefinition41 (with MariaDB's optional extended metadata).
pub(super) fn parse_column(p: &[u8]) -> Option<Column> {
    let mut r = Reader::new(p);
    r.lenenc_bytes()?; // catalog
    r.lenenc_bytes()?; // schema
    let table = r.lenenc_bytes()?.to_vec();
    r.lenenc_bytes()?; // org_table
    let name = r.lenenc_bytes()?.to_vec();
    r.lenenc_bytes()?; // org_name
    let mut fixed = r.lenenc()?;
    if fixed != 0x0c || r.remaining() < 12 {
        // MariaDB extended metadata precedes the fixed-length fields.
        r.skip(fixed as usize)?;
        fixed = r.lenenc()?;
    }
    if fixed < 12 {
        return None;
    }
    let charset = r.u16()?;
    let length = r.u32()?;
    let column_type = r.u8()?;
    let flags = r.u16()?;
    let decimals = r.u8()?;
    Some(Column {
        name,
        table,
        column_type,
        flags,
        charset,
        decimals,
        length,
    })
}
