//! The TLS record layer as a passive reader sees it: a direction's bytes cut into records
//! ([`Records`], whatever the TCP segments were), and handshake messages cut out of the
//! handshake records' contents ([`Handshakes`], which may span records).
//!
//! Memory is bounded: a partial record (at most [`HEADER_LEN`] + [`MAX_BODY`] bytes) per
//! direction, and the first [`MAX_KEPT`] bytes of the handshake messages that are read.

/// A record header: type, version, length.
pub const HEADER_LEN: usize = 5;
/// The largest record body allowed: 2^14 plus the expansion TLS 1.2 allows (RFC 5246 §6.2.3).
pub const MAX_BODY: usize = (1 << 14) + 2048;
/// Bytes of a handshake message kept for reading (ClientHello/ServerHello need far fewer).
pub const MAX_KEPT: usize = 1 << 16;

pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;
pub const HEARTBEAT: u8 = 24;

/// One record, borrowed from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub content_type: u8,
    pub version: u16,
    pub body: &'a [u8],
}

/// A record header that no TLS peer sends: the stream is not (or no longer) TLS records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    ContentType(u8),
    Version(u16),
    /// Longer than [`MAX_BODY`].
    Length(usize),
}

/// One step of cutting records; being short of bytes is a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Ready { record: Record<'a>, consumed: usize },
    NeedMore { at_least: usize },
    Invalid(RecordError),
}

/// The record at the start of `buf`.
pub fn parse(buf: &[u8]) -> Step<'_> {
    if buf.len() < HEADER_LEN {
        return Step::NeedMore {
            at_least: HEADER_LEN - buf.len(),
        };
    }
    let content_type = buf[0];
    if !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&content_type) {
        return Step::Invalid(RecordError::ContentType(content_type));
    }
    let version = u16::from_be_bytes([buf[1], buf[2]]);
    if buf[1] != 3 {
        return Step::Invalid(RecordError::Version(version));
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > MAX_BODY {
        return Step::Invalid(RecordError::Length(len));
    }
    let end = HEADER_LEN + len;
    match buf.get(HEADER_LEN..end) {
        Some(body) => Step::Ready {
            record: Record {
                content_type,
                version,
                body,
            },
            consumed: end,
        },
        None => Step::NeedMore {
            at_least: end - buf.len(),
        },
    }
}

/// Cuts one direction's stream into records, keeping a partial record between calls.
#[derive(Debug, Default)]
pub struct Records {
    partial: Vec<u8>,
}

impl Records {
    /// Hands every whole record of the stream so far to `f`, in order, and keeps the rest.
    /// `f` returns false to stop (the rest of `data` is then dropped). An invalid header
    /// stops it too, and is returned.
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut f: impl FnMut(Record<'_>) -> bool,
    ) -> Result<(), RecordError> {
        while !self.partial.is_empty() && !data.is_empty() {
            match parse(&self.partial) {
                Step::NeedMore { at_least } => {
                    let take = at_least.min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
                Step::Invalid(e) => {
                    self.partial.clear();
                    return Err(e);
                }
                Step::Ready { .. } => break,
            }
            match parse(&self.partial) {
                Step::Ready { record, .. } => {
                    let go_on = f(record);
                    self.partial.clear();
                    if !go_on {
                        return Ok(());
                    }
                }
                Step::Invalid(e) => {
                    self.partial.clear();
                    return Err(e);
                }
                Step::NeedMore { .. } => {}
            }
        }
        // Whole records straight from the segment, without a copy.
        while !data.is_empty() {
            match parse(data) {
                Step::Ready { record, consumed } => {
                    data = &data[consumed..];
                    if !f(record) {
                        return Ok(());
                    }
                }
                Step::NeedMore { .. } => {
                    self.partial.extend_from_slice(data);
                    return Ok(());
                }
                Step::Invalid(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Bytes of a record not yet whole.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    pub fn clear(&mut self) {
        self.partial = Vec::new();
    }
}

/// Cuts handshake messages (type, 24-bit length, body) out of the contents of handshake
/// records, which may hold several messages or a part of one.
#[derive(Debug, Default)]
pub struct Handshakes {
    head: [u8; 4],
    head_len: usize,
    /// Body bytes of the current message still to come.
    left: usize,
    /// The current message's first bytes, when it is one to read.
    body: Vec<u8>,
    keep: bool,
}

impl Handshakes {
    /// Feeds record contents; `f(type, body)` gets each whole message whose type `wanted`
    /// accepts, with its first [`MAX_KEPT`] bytes.
    pub fn push(
        &mut self,
        mut data: &[u8],
        wanted: impl Fn(u8) -> bool,
        mut f: impl FnMut(u8, &[u8]),
    ) {
        while !data.is_empty() {
            if self.head_len < 4 {
                let take = (4 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if self.head_len < 4 {
                    return;
                }
                self.left = usize::from(self.head[1]) << 16
                    | usize::from(self.head[2]) << 8
                    | usize::from(self.head[3]);
                self.keep = wanted(self.head[0]);
                self.body.clear();
            }
            let take = self.left.min(data.len());
            if self.keep {
                let room = MAX_KEPT.saturating_sub(self.body.len()).min(take);
                self.body.extend_from_slice(&data[..room]);
            }
            self.left -= take;
            data = &data[take..];
            if self.left == 0 {
                if self.keep {
                    f(self.head[0], &self.body);
                }
                self.head_len = 0;
                self.body.clear();
            }
        }
        // A message with an empty body completes at its header.
        if self.head_len == 4 && self.left == 0 {
            if self.keep {
                f(self.head[0], &self.body);
            }
            self.head_len = 0;
        }
    }

    /// Bytes held for the message being read.
    pub fn buffered(&self) -> usize {
        self.body.capacity()
    }

    /// Whether a message is partly read (a record boundary inside it).
    pub fn in_message(&self) -> bool {
        self.head_len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two records, a handshake of 3 bytes and application data of 4, back to back.
    const TWO_RECORDS: &[u8] = &[22, 3, 1, 0, 3, 1, 2, 3, 23, 3, 3, 0, 4, 9, 8, 7, 6];

    fn cut(chunks: &[&[u8]]) -> (Vec<(u8, Vec<u8>)>, usize) {
        let mut r = Records::default();
        let mut got = Vec::new();
        for c in chunks {
            r.push(c, |rec| {
                got.push((rec.content_type, rec.body.to_vec()));
                true
            })
            .unwrap();
        }
        (got, r.buffered())
    }

    #[test]
    fn every_split_point_gives_the_same_records() {
        let whole = cut(&[TWO_RECORDS]);
        assert_eq!(
            whole,
            (vec![(22, vec![1, 2, 3]), (23, vec![9, 8, 7, 6])], 0)
        );
        for i in 0..=TWO_RECORDS.len() {
            for j in i..=TWO_RECORDS.len() {
                let (a, rest) = TWO_RECORDS.split_at(i);
                let (b, c) = rest.split_at(j - i);
                assert_eq!(cut(&[a, b, c]), whole, "split at {i}, {j}");
            }
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = TWO_RECORDS.chunks(1).collect();
        assert_eq!(cut(&bytes), whole);
        // A partial record stays buffered.
        assert_eq!(cut(&[&TWO_RECORDS[..12]]), (vec![(22, vec![1, 2, 3])], 4));
    }

    #[test]
    fn impossible_headers_are_errors() {
        assert_eq!(
            parse(&[0x47, b'E', b'T', 0, 0]),
            Step::Invalid(RecordError::ContentType(0x47))
        );
        assert_eq!(
            parse(&[23, 2, 0, 0, 0]),
            Step::Invalid(RecordError::Version(0x0200))
        );
        assert_eq!(
            parse(&[23, 3, 3, 0xff, 0xff]),
            Step::Invalid(RecordError::Length(0xffff))
        );
        assert_eq!(parse(&[23, 3]), Step::NeedMore { at_least: 3 });
        assert_eq!(parse(&[23, 3, 3, 0, 9, 1]), Step::NeedMore { at_least: 8 });
        let mut r = Records::default();
        assert_eq!(
            r.push(&[23, 3, 3, 0, 1, 0, 99, 3, 3, 0, 0], |_| true),
            Err(RecordError::ContentType(99))
        );
        // Split in the header: found when the header is whole.
        let mut r = Records::default();
        assert!(r.push(&[99, 3], |_| true).is_ok());
        assert_eq!(
            r.push(&[3, 0, 0], |_| true),
            Err(RecordError::ContentType(99))
        );
        // Stopping drops the rest.
        let mut r = Records::default();
        let mut n = 0;
        r.push(TWO_RECORDS, |_| {
            n += 1;
            false
        })
        .unwrap();
        assert_eq!((n, r.buffered()), (1, 0));
    }

    #[test]
    fn handshake_messages_span_records_and_share_them() {
        // ServerHello of 5 bytes, Certificate (not wanted) of 3, ServerHelloDone (empty).
        let stream: &[u8] = &[2, 0, 0, 5, 1, 2, 3, 4, 5, 11, 0, 0, 3, 7, 7, 7, 14, 0, 0, 0];
        for i in 0..=stream.len() {
            let mut h = Handshakes::default();
            let mut got = Vec::new();
            for part in [&stream[..i], &stream[i..]] {
                h.push(part, |t| t != 11, |t, b| got.push((t, b.to_vec())));
            }
            assert_eq!(
                got,
                vec![(2, vec![1, 2, 3, 4, 5]), (14, vec![])],
                "split {i}"
            );
            assert!(!h.in_message());
        }
        // A huge message is kept only up to MAX_KEPT.
        let mut h = Handshakes::default();
        let mut got = Vec::new();
        let len = MAX_KEPT + 10;
        let mut m = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        m.resize(4 + len, 0xaa);
        h.push(&m, |_| true, |t, b| got.push((t, b.len())));
        assert_eq!(got, vec![(1, MAX_KEPT)]);
    }
}
