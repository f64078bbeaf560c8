//! MySQL packet framing for one direction of a connection: plain packets
//! (`len:u24 seq:u8 payload`), payloads of 16 MiB and more split over several packets, and the
//! compressed protocol (`clen:u24 seq:u8 ulen:u24` frames around zlib or raw bytes).
//!
//! Bytes go in with [`Framer::push`]; whole logical packets come out of [`Framer::next_packet`].
//! Being short of bytes is a state: the framer keeps what it has and waits for more.

use flate2::{Decompress, FlushDecompress, Status};

const MAX_CHUNK: usize = 0xff_ffff;

/// Why framing could not go on; the caller treats it like lost bytes and resynchronises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("compressed frame does not inflate: {0}")]
    Inflate(String),
    #[error("compressed frame inflates to {got} bytes, header says {want}")]
    InflatedLength { got: usize, want: usize },
    #[error("logical packet exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
}

/// One logical packet: sequence id of its first chunk and the joined payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub seq: u8,
    pub payload: &'a [u8],
}

#[derive(Debug)]
pub struct Framer {
    /// Plain bytes not yet framed; `buf[start..]` is live.
    buf: Vec<u8>,
    start: usize,
    /// Compressed-protocol bytes not yet unframed.
    zbuf: Vec<u8>,
    compressed: bool,
    /// A payload of 16 MiB or more being joined.
    big: Vec<u8>,
    big_seq: Option<u8>,
    /// Joined payload handed out by the last `next_packet`, kept until the next call.
    out: Vec<u8>,
    limit: usize,
    /// When the oldest byte still buffered arrived (µs).
    pub first_byte_us: u64,
    /// When the last bytes were pushed (µs).
    last_push_us: u64,
}

/// The first packet of `data`, if `data` starts with a whole one under 16 MiB: its sequence
/// number, its payload and the bytes after it.
pub fn whole_packet(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if data.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
    if len >= MAX_CHUNK || data.len() < 4 + len {
        return None;
    }
    Some((data[3], &data[4..4 + len], &data[4 + len..]))
}

impl Framer {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            zbuf: Vec::new(),
            compressed: false,
            big: Vec::new(),
            big_seq: None,
            out: Vec::new(),
            limit,
            first_byte_us: 0,
            last_push_us: 0,
        }
    }

    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Bytes held (plain and compressed).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start + self.zbuf.len() + self.big.len()
    }

    /// Nothing is buffered or being joined, and the stream is plain: the whole packets at the
    /// front of new data can be handled straight from it ([`whole_packet`]) instead of being
    /// copied into the buffer first.
    pub fn is_idle(&self) -> bool {
        !self.compressed && self.big_seq.is_none() && self.buffered() == 0
    }

    /// Drops everything buffered (after a gap).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.zbuf.clear();
        self.big.clear();
        self.big_seq = None;
        self.out = Vec::new();
    }

    /// Switches to the compressed protocol; bytes already buffered but not yet framed are
    /// reinterpreted as compressed frames (they arrived after the packet that switched).
    pub fn set_compressed(&mut self) -> Result<(), FrameError> {
        if self.compressed {
            return Ok(());
        }
        self.compressed = true;
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        self.zbuf.extend_from_slice(&rest);
        self.unframe()
    }

    pub fn push(&mut self, data: &[u8], now_us: u64) -> Result<(), FrameError> {
        if self.buffered() == 0 {
            self.first_byte_us = now_us;
        }
        self.last_push_us = now_us;
        if self.compressed {
            self.zbuf.extend_from_slice(data);
            self.unframe()
        } else {
            if self.start > 0 && self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            }
            self.buf.extend_from_slice(data);
            Ok(())
        }
    }

    /// Moves whole compressed frames from `zbuf` into the plain buffer.
    fn unframe(&mut self) -> Result<(), FrameError> {
        let mut pos = 0;
        let res = loop {
            let z = &self.zbuf[pos..];
            if z.len() < 7 {
                break Ok(());
            }
            let clen = u32::from_le_bytes([z[0], z[1], z[2], 0]) as usize;
            let ulen = u32::from_le_bytes([z[4], z[5], z[6], 0]) as usize;
            if z.len() < 7 + clen {
                break Ok(());
            }
            if self.start > 0 && self.start >= self.buf.len() / 2 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let body = &self.zbuf[pos + 7..pos + 7 + clen];
            if ulen == 0 {
                self.buf.extend_from_slice(body);
            } else {
                if self.buf.len() - self.start + ulen > self.limit {
                    break Err(FrameError::TooLarge { limit: self.limit });
                }
                if let Err(e) = inflate_into(body, ulen, &mut self.buf) {
                    pos += 7 + clen;
                    break Err(e);
                }
            }
            pos += 7 + clen;
        };
        self.zbuf.drain(..pos);
        res
    }

    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Peeks at the header of the next plain packet: (payload length, sequence id).
    pub fn peek_header(&self) -> Option<(usize, u8)> {
        let b = &self.buf[self.start..];
        if b.len() < 4 {
            return None;
        }
        Some((u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize, b[3]))
    }

    /// Plain bytes buffered and not yet framed.
    pub fn pending_plain(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// A packet is being handed out. Packets are taken out after every push, so it ended in
    /// the last one: the bytes still buffered after it came with that push.
    fn handed_out(&mut self) {
        self.first_byte_us = self.last_push_us;
    }

    /// The next whole logical packet, or `None` until more bytes arrive.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, FrameError> {
        loop {
            let b = &self.buf[self.start..];
            if b.len() < 4 {
                self.compact();
                return Ok(None);
            }
            let len = u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize;
            let seq = b[3];
            if self.big_seq.is_none() && len < MAX_CHUNK {
                if b.len() < 4 + len {
                    self.compact();
                    return Ok(None);
                }
                let s = self.start + 4;
                self.start = s + len;
                self.handed_out();
                return Ok(Some(Packet {
                    seq,
                    payload: &self.buf[s..s + len],
                }));
            }
            // A chunk of a payload of 16 MiB or more (or its final, shorter chunk).
            if b.len() < 4 + len {
                self.compact();
                return Ok(None);
            }
            if self.big.len() + len > self.limit {
                self.big.clear();
                self.big_seq = None;
                self.start += 4 + len;
                return Err(FrameError::TooLarge { limit: self.limit });
            }
            self.big.extend_from_slice(&b[4..4 + len]);
            self.big_seq.get_or_insert(seq);
            self.start += 4 + len;
            if len < MAX_CHUNK {
                self.out = std::mem::take(&mut self.big);
                let seq = self.big_seq.take().unwrap_or(0);
                self.handed_out();
                return Ok(Some(Packet {
                    seq,
                    payload: &self.out,
                }));
            }
        }
    }
}

fn inflate_into(body: &[u8], ulen: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut d = Decompress::new(true);
    let before = out.len();
    out.reserve(ulen);
    loop {
        let consumed = d.total_in() as usize;
        let produced = out.len() - before;
        if produced >= ulen {
            break;
        }
        let status = d
            .decompress_vec(&body[consumed..], out, FlushDecompress::Finish)
            .map_err(|e| FrameError::Inflate(e.to_string()))?;
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                if out.len() - before == produced && d.total_in() as usize == consumed {
                    if out.capacity() == out.len() {
                        out.reserve(ulen.saturating_sub(produced).max(64));
                        continue;
                    }
                    break;
                }
            }
        }
    }
    let got = out.len() - before;
    if got != ulen {
        out.truncate(before);
        return Err(FrameError::InflatedLength { got, want: ulen });
    }
    Ok(())
}

/// Appends `payload` as plain packets starting at sequence id `seq`, split at 16 MiB (a
/// payload of exactly a multiple of it ends with an empty packet), the inverse of
/// [`Framer`] without compression. Returns the sequence id after the last packet.
pub fn frame(mut seq: u8, payload: &[u8], out: &mut Vec<u8>) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

#[cfg(test)]
pub(crate) fn plain(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame(seq, payload, &mut v);
    v
}

#[cfg(test)]
pub(crate) fn compressed_frame(seq: u8, inner: &[u8], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let (body, ulen) = if deflate {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(inner).unwrap();
        (e.finish().unwrap(), inner.len())
    } else {
        (inner.to_vec(), 0)
    };
    let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(&(ulen as u32).to_le_bytes()[..3]);
    v.extend_from_slice(&body);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &mut Framer) -> Vec<(u8, Vec<u8>)> {
        let mut v = vec![];
        while let Some(p) = f.next_packet().unwrap() {
            v.push((p.seq, p.payload.to_vec()));
        }
        v
    }

    /// Feeds `stream` split at every point and checks the same packets come out.
    fn every_split(stream: &[u8], compressed: bool, want: &[(u8, Vec<u8>)]) {
        for cut in 0..=stream.len() {
            let mut f = Framer::new(64 << 20);
            if compressed {
                f.set_compressed().unwrap();
            }
            let mut got = vec![];
            f.push(&stream[..cut], 0).unwrap();
            got.extend(collect(&mut f));
            f.push(&stream[cut..], 0).unwrap();
            got.extend(collect(&mut f));
            assert_eq!(got, want, "split at {cut}");
        }
    }

    #[test]
    fn plain_packets_every_split() {
        let mut s = plain(0, b"\x03SELECT 1");
        s.extend(plain(1, b""));
        s.extend(plain(2, b"\x00\x00\x00\x02\x00\x00\x00"));
        every_split(
            &s,
            false,
            &[
                (0, b"\x03SELECT 1".to_vec()),
                (1, vec![]),
                (2, b"\x00\x00\x00\x02\x00\x00\x00".to_vec()),
            ],
        );
    }

    #[test]
    fn compressed_frames_every_split() {
        let mut inner = plain(
            0,
            b"\x03SELECT * FROM t WHERE a = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
        );
        inner.extend(plain(0, b"\x0e"));
        // One packet split across two compressed frames, one deflated, one raw.
        let (a, b) = inner.split_at(20);
        let mut s = compressed_frame(0, a, true);
        s.extend(compressed_frame(1, b, false));
        every_split(
            &s,
            true,
            &[
                (0, b"\x03SELECT * FROM t WHERE a = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'".to_vec()),
                (0, b"\x0e".to_vec()),
            ],
        );
    }

    #[test]
    fn framed_payloads_come_back_whole_at_the_16_mib_boundaries() {
        for len in [0, 1, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1, 2 * MAX_CHUNK] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut stream = Vec::new();
            let next = frame(254, &payload, &mut stream);
            let chunks = len / MAX_CHUNK + 1;
            assert_eq!(next, 254u8.wrapping_add(chunks as u8), "len {len}");
            assert_eq!(stream.len(), len + 4 * chunks, "len {len}");
            let mut f = Framer::new(64 << 20);
            f.push(&stream, 0).unwrap();
            assert_eq!(collect(&mut f), vec![(254, payload)], "len {len}");
        }
    }

    #[test]
    fn sixteen_mib_payload_is_joined() {
        let payload: Vec<u8> = (0..MAX_CHUNK + 10).map(|i| (i % 251) as u8).collect();
        let mut s = Vec::new();
        s.extend_from_slice(&[0xff, 0xff, 0xff, 0]);
        s.extend_from_slice(&payload[..MAX_CHUNK]);
        s.extend(plain(1, &payload[MAX_CHUNK..]));
        s.extend(plain(2, b"next"));
        let mut f = Framer::new(64 << 20);
        for chunk in s.chunks(1 << 20) {
            f.push(chunk, 0).unwrap();
        }
        let got = collect(&mut f);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 0);
        assert!(got[0].1 == payload);
        assert_eq!(got[1], (2, b"next".to_vec()));
    }

    #[test]
    fn oversize_and_bad_zlib_are_errors() {
        let mut f = Framer::new(8);
        f.push(&[0xff, 0xff, 0xff, 0], 0).unwrap();
        f.push(&vec![0u8; MAX_CHUNK], 0).unwrap();
        assert_eq!(f.next_packet(), Err(FrameError::TooLarge { limit: 8 }));

        let mut f = Framer::new(1 << 20);
        f.set_compressed().unwrap();
        let err = f
            .push(&[5, 0, 0, 0, 50, 0, 0, 1, 2, 3, 4, 5], 0)
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Inflate(_) | FrameError::InflatedLength { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn switch_to_compression_reinterprets_buffered_bytes() {
        let mut s = plain(2, b"\x00\x00\x00\x02\x00\x00\x00");
        s.extend(compressed_frame(0, &plain(1, b"\x0e"), false));
        let mut f = Framer::new(1 << 20);
        f.push(&s, 0).unwrap();
        let first = f.next_packet().unwrap().unwrap();
        assert_eq!(first.seq, 2);
        f.set_compressed().unwrap();
        assert_eq!(collect(&mut f), vec![(1, b"\x0e".to_vec())]);
    }
}
