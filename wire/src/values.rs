//! Binary-protocol values (COM_STMT_EXECUTE parameters and binary result rows), decoded into
//! the value model of `mysql_common` — the crate under `mysql_async` — so a captured row and a
//! replayed row digest alike. We mirror its rules here instead of calling it because its
//! decoder panics on column types it does not know, and capture input is untrusted; a test
//! checks both agree on every type.

use myrr_recording::{Value, ValueRef};

use crate::reader::Reader;

pub const TYPE_DECIMAL: u8 = 0x00;
pub const TYPE_TINY: u8 = 0x01;
pub const TYPE_SHORT: u8 = 0x02;
pub const TYPE_LONG: u8 = 0x03;
pub const TYPE_FLOAT: u8 = 0x04;
pub const TYPE_DOUBLE: u8 = 0x05;
pub const TYPE_NULL: u8 = 0x06;
pub const TYPE_TIMESTAMP: u8 = 0x07;
pub const TYPE_LONGLONG: u8 = 0x08;
pub const TYPE_INT24: u8 = 0x09;
pub const TYPE_DATE: u8 = 0x0a;
pub const TYPE_TIME: u8 = 0x0b;
pub const TYPE_DATETIME: u8 = 0x0c;
pub const TYPE_YEAR: u8 = 0x0d;
pub const TYPE_NEWDATE: u8 = 0x0e;
pub const TYPE_VAR_STRING: u8 = 0xfd;

/// Column flag: the integer is unsigned.
pub const UNSIGNED_FLAG: u16 = 0x20;

/// Reads one non-NULL binary value of `column_type`. `None` when the input is short.
pub fn read_binary<'a>(
    r: &mut Reader<'a>,
    column_type: u8,
    unsigned: bool,
) -> Option<ValueRef<'a>> {
    Some(match column_type {
        TYPE_TINY => ValueRef::Int(if unsigned {
            r.u8()? as i64
        } else {
            r.u8()? as i8 as i64
        }),
        TYPE_SHORT | TYPE_YEAR => ValueRef::Int(if unsigned {
            r.u16()? as i64
        } else {
            r.u16()? as i16 as i64
        }),
        TYPE_LONG | TYPE_INT24 => ValueRef::Int(if unsigned {
            r.u32()? as i64
        } else {
            r.u32()? as i32 as i64
        }),
        TYPE_LONGLONG => {
            let v = r.u64()?;
            if unsigned {
                i64::try_from(v)
                    .map(ValueRef::Int)
                    .unwrap_or(ValueRef::UInt(v))
            } else {
                ValueRef::Int(v as i64)
            }
        }
        TYPE_FLOAT => ValueRef::Float(f32::from_bits(r.u32()?)),
        TYPE_DOUBLE => ValueRef::Double(f64::from_bits(r.u64()?)),
        TYPE_TIMESTAMP | TYPE_DATE | TYPE_NEWDATE | TYPE_DATETIME => {
            let len = r.u8()? as usize;
            let mut b = Reader::new(r.take(len)?);
            let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) = (0, 0, 0, 0, 0, 0, 0);
            if len >= 4 {
                y = b.u16()?;
                mo = b.u8()?;
                d = b.u8()?;
            }
            if len >= 7 {
                h = b.u8()?;
                mi = b.u8()?;
                s = b.u8()?;
            }
            if len == 11 {
                us = b.u32()?;
            }
            ValueRef::Date(y, mo, d, h, mi, s, us)
        }
        TYPE_TIME => {
            let len = r.u8()? as usize;
            let mut b = Reader::new(r.take(len)?);
            let (mut neg, mut days, mut h, mut m, mut s, mut us) = (false, 0, 0, 0, 0, 0);
            if len >= 8 {
                neg = b.u8()? == 1;
                days = b.u32()?;
                h = b.u8()?;
                m = b.u8()?;
                s = b.u8()?;
            }
            if len == 12 {
                us = b.u32()?;
            }
            ValueRef::Time(neg, days, h, m, s, us)
        }
        TYPE_NULL => ValueRef::Null,
        // Strings, blobs, decimals, JSON, BIT, ENUM, SET, GEOMETRY, and anything unknown:
        // length-encoded bytes.
        _ => ValueRef::Bytes(r.lenenc_bytes()?),
    })
}

/// Appends `v` as a binary-protocol value of `column_type` (a COM_STMT_EXECUTE parameter), the
/// inverse of [`read_binary`]. Returns the type to declare for it: `column_type` when the value
/// fits it, else the natural type of the value (a recording never pairs them otherwise, but a
/// replay must send something the server can read).
pub fn write_binary(out: &mut Vec<u8>, column_type: u8, v: &Value) -> u8 {
    match (column_type, v) {
        (_, Value::Null) => column_type,
        (TYPE_TINY, Value::Int(i)) => {
            out.push(*i as u8);
            column_type
        }
        (TYPE_SHORT | TYPE_YEAR, Value::Int(i)) => {
            out.extend_from_slice(&(*i as u16).to_le_bytes());
            column_type
        }
        (TYPE_LONG | TYPE_INT24, Value::Int(i)) => {
            out.extend_from_slice(&(*i as u32).to_le_bytes());
            column_type
        }
        (_, Value::Int(i)) => {
            out.extend_from_slice(&i.to_le_bytes());
            TYPE_LONGLONG
        }
        (_, Value::UInt(u)) => {
            out.extend_from_slice(&u.to_le_bytes());
            TYPE_LONGLONG
        }
        (_, Value::Float(f)) => {
            out.extend_from_slice(&f.to_bits().to_le_bytes());
            TYPE_FLOAT
        }
        (_, Value::Double(d)) => {
            out.extend_from_slice(&d.to_bits().to_le_bytes());
            TYPE_DOUBLE
        }
        (_, Value::Date(y, mo, d, h, mi, s, us)) => {
            let len = if *us != 0 {
                11
            } else if (*h, *mi, *s) != (0, 0, 0) {
                7
            } else if (*y, *mo, *d) != (0, 0, 0) {
                4
            } else {
                0
            };
            out.push(len);
            if len >= 4 {
                out.extend_from_slice(&y.to_le_bytes());
                out.extend_from_slice(&[*mo, *d]);
            }
            if len >= 7 {
                out.extend_from_slice(&[*h, *mi, *s]);
            }
            if len == 11 {
                out.extend_from_slice(&us.to_le_bytes());
            }
            match column_type {
                TYPE_TIMESTAMP | TYPE_DATE | TYPE_NEWDATE | TYPE_DATETIME => column_type,
                _ => TYPE_DATETIME,
            }
        }
        (_, Value::Time(neg, days, h, m, s, us)) => {
            let len = if *us != 0 {
                12
            } else if (*days, *h, *m, *s) != (0, 0, 0, 0) {
                8
            } else {
                0
            };
            out.push(len);
            if len >= 8 {
                out.push(*neg as u8);
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&[*h, *m, *s]);
            }
            if len == 12 {
                out.extend_from_slice(&us.to_le_bytes());
            }
            TYPE_TIME
        }
        (_, Value::Bytes(b)) => {
            write_lenenc(out, b.len() as u64);
            out.extend_from_slice(b);
            match column_type {
                TYPE_TINY | TYPE_SHORT | TYPE_YEAR | TYPE_LONG | TYPE_INT24 | TYPE_LONGLONG
                | TYPE_FLOAT | TYPE_DOUBLE | TYPE_NULL | TYPE_TIMESTAMP | TYPE_DATE
                | TYPE_NEWDATE | TYPE_DATETIME | TYPE_TIME => TYPE_VAR_STRING,
                _ => column_type,
            }
        }
    }
}

/// Appends a length-encoded integer.
pub fn write_lenenc(out: &mut Vec<u8>, n: u64) {
    if n < 0xfb {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= 0xff_ffff {
        out.push(0xfd);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::constants::{ColumnFlags, ColumnType};
    use mysql_common::io::ParseBuf;
    use mysql_common::proto::MyDeserialize;
    use mysql_common::value::{BinValue, ValueDeserializer};

    fn theirs(bytes: &[u8], t: u8, unsigned: bool) -> Option<mysql_common::Value> {
        let ct = ColumnType::try_from(t).ok()?;
        let flags = if unsigned {
            ColumnFlags::UNSIGNED_FLAG
        } else {
            ColumnFlags::empty()
        };
        let mut buf = ParseBuf(bytes);
        ValueDeserializer::<BinValue>::deserialize((ct, flags), &mut buf)
            .ok()
            .map(|v| v.0)
    }

    fn same(ours: ValueRef<'_>, theirs: &mysql_common::Value) -> bool {
        use mysql_common::Value as V;
        match (ours, theirs) {
            (ValueRef::Null, V::NULL) => true,
            (ValueRef::Bytes(a), V::Bytes(b)) => a == &b[..],
            (ValueRef::Int(a), V::Int(b)) => a == *b,
            (ValueRef::UInt(a), V::UInt(b)) => a == *b,
            (ValueRef::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (ValueRef::Double(a), V::Double(b)) => a.to_bits() == b.to_bits(),
            (ValueRef::Date(a, b, c, d, e, f, g), V::Date(a2, b2, c2, d2, e2, f2, g2)) => {
                (a, b, c, d, e, f, g) == (*a2, *b2, *c2, *d2, *e2, *f2, *g2)
            }
            (ValueRef::Time(a, b, c, d, e, f), V::Time(a2, b2, c2, d2, e2, f2)) => {
                (a, b, c, d, e, f) == (*a2, *b2, *c2, *d2, *e2, *f2)
            }
            _ => false,
        }
    }

    const TYPES: &[u8] = &[
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0f,
        0x10, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
    ];

    fn fixtures() -> Vec<Vec<u8>> {
        vec![
            vec![0xff; 8],
            vec![0x80, 0, 0, 0, 0, 0, 0, 0x80],
            vec![4, 0xe8, 0x07, 2, 29],
            vec![7, 0xe8, 0x07, 2, 29, 23, 59, 58],
            vec![11, 0xe8, 0x07, 2, 29, 23, 59, 58, 1, 2, 3, 0],
            vec![8, 1, 3, 0, 0, 0, 4, 5, 6],
            vec![12, 0, 3, 0, 0, 0, 4, 5, 6, 0x40, 0x42, 0x0f, 0],
            vec![0],
            vec![3, b'a', b'b', b'c', 9],
            vec![0xfc, 2, 0, b'x', b'y'],
        ]
    }

    #[test]
    fn agrees_with_mysql_common() {
        for &t in TYPES {
            for unsigned in [false, true] {
                for f in fixtures() {
                    let ours = read_binary(&mut Reader::new(&f), t, unsigned);
                    let theirs = theirs(&f, t, unsigned);
                    match (ours, &theirs) {
                        (Some(o), Some(th)) => {
                            assert!(same(o, th), "type {t:#x} {f:?}: {o:?} vs {th:?}")
                        }
                        (None, None) => {}
                        // A length byte of 0xfb/0xff is malformed: mysql_common reads an empty
                        // string, we refuse the row. Only malformed input differs.
                        (None, Some(mysql_common::Value::Bytes(b)))
                            if b.is_empty() && matches!(f[0], 0xfb | 0xff) => {}
                        (o, th) => panic!("type {t:#x} {f:?}: ours {o:?}, mysql_common {th:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn short_input_is_none_not_panic() {
        for &t in TYPES {
            for f in fixtures() {
                for cut in 0..f.len() {
                    let _ = read_binary(&mut Reader::new(&f[..cut]), t, false);
                }
            }
        }
    }

    #[test]
    fn write_then_read_gives_the_value_back() {
        let cases: Vec<(u8, bool, Value)> = vec![
            (TYPE_TINY, false, Value::Int(-5)),
            (TYPE_TINY, true, Value::Int(250)),
            (TYPE_SHORT, false, Value::Int(-30000)),
            (TYPE_YEAR, true, Value::Int(2024)),
            (TYPE_LONG, false, Value::Int(-2_000_000_000)),
            (TYPE_INT24, true, Value::Int(16_000_000)),
            (TYPE_LONGLONG, false, Value::Int(i64::MIN)),
            (TYPE_LONGLONG, true, Value::UInt(u64::MAX)),
            (TYPE_FLOAT, false, Value::Float(1.5)),
            (TYPE_DOUBLE, false, Value::Double(-2.25e300)),
            (TYPE_DATE, false, Value::Date(2024, 2, 29, 0, 0, 0, 0)),
            (
                TYPE_DATETIME,
                false,
                Value::Date(2024, 2, 29, 23, 59, 58, 0),
            ),
            (
                TYPE_TIMESTAMP,
                false,
                Value::Date(2024, 2, 29, 23, 59, 58, 999_999),
            ),
            (TYPE_DATETIME, false, Value::Date(0, 0, 0, 0, 0, 0, 0)),
            (TYPE_TIME, false, Value::Time(true, 3, 4, 5, 6, 0)),
            (TYPE_TIME, false, Value::Time(false, 0, 0, 0, 1, 7)),
            (TYPE_TIME, false, Value::Time(false, 0, 0, 0, 0, 0)),
            (TYPE_VAR_STRING, false, Value::Bytes(b"abc".to_vec())),
            (0xfc, false, Value::Bytes(vec![7; 300])),
            (0xfc, false, Value::Bytes(vec![7; 70_000])),
            (TYPE_DECIMAL, false, Value::Bytes(b"-12.50".to_vec())),
            // A value that does not fit the recorded type is sent under its own type.
            (TYPE_LONG, false, Value::Bytes(b"42".to_vec())),
            (TYPE_VAR_STRING, false, Value::Int(42)),
        ];
        for (t, unsigned, v) in cases {
            let mut out = Vec::new();
            let sent = write_binary(&mut out, t, &v);
            let mut r = Reader::new(&out);
            let back = read_binary(&mut r, sent, unsigned).expect("reads back");
            assert!(r.is_empty(), "{t:#x} {v:?}: {} bytes left", r.remaining());
            assert_eq!(back.to_owned_value(), v, "type {t:#x} sent as {sent:#x}");
        }
    }
}
