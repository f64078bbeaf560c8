//! NSS key log files (the `SSLKEYLOGFILE` format) and the key log lines a pcapng file carries in
//! its Decryption Secrets Blocks.
//!
//! One line per secret: `LABEL <client_random hex> <secret hex>`, `#` starts a comment. Used:
//! `CLIENT_RANDOM` (TLS 1.0–1.2: the 48-byte master secret) and TLS 1.3's
//! `CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`,
//! `CLIENT_TRAFFIC_SECRET_0`, `SERVER_TRAFFIC_SECRET_0`. Other labels that key loggers write
//! (`EXPORTER_SECRET`, early data, ECH) are known and not needed. A line that cannot be used (an
//! unknown label, bad hex, a wrong length, RSA pre-master lines, which would need the server's
//! private key) is counted with its source and line number; the first [`BAD_LINES_KEPT`] are
//! kept to be shown, and the rest of the file is read on.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use myrr_recording::read_full;

/// Bad lines kept with their place (all are counted).
pub const BAD_LINES_KEPT: usize = 20;

/// A client random: it names a TLS session in a key log.
pub type ClientRandom = [u8; 32];

/// TLS 1.3 secrets of one session, as far as the key log has them (32 bytes for SHA-256
/// suites, 48 for SHA-384).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls13Secrets {
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_traffic: Option<Vec<u8>>,
    pub server_traffic: Option<Vec<u8>>,
}

/// Why a key log line was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadLineKind {
    /// Not `LABEL random secret`.
    Fields(usize),
    UnknownLabel(String),
    /// A label whose secret cannot be used here (RSA pre-master secrets).
    Unsupported(String),
    /// Not hexadecimal.
    Hex,
    /// Not UTF-8 text.
    NotText,
    /// The client random is not 32 bytes.
    RandomLength(usize),
    /// The secret has a length no suite uses.
    SecretLength(usize),
}

impl fmt::Display for BadLineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadLineKind::Fields(n) => write!(f, "{n} fields, expected LABEL CLIENT_RANDOM SECRET"),
            BadLineKind::UnknownLabel(l) => write!(f, "unknown label {l}"),
            BadLineKind::Unsupported(l) => write!(
                f,
                "{l} lines are not supported (they need the server's private key)"
            ),
            BadLineKind::Hex => write!(f, "not hexadecimal"),
            BadLineKind::NotText => write!(f, "not text"),
            BadLineKind::RandomLength(n) => {
                write!(f, "client random of {n} bytes, expected 32")
            }
            BadLineKind::SecretLength(n) => write!(f, "secret of {n} bytes"),
        }
    }
}

/// A key log line that was not used, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The file, or `F (pcapng secrets block at byte N)`.
    pub source: String,
    /// 1-based.
    pub line: usize,
    pub kind: BadLineKind,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.source, self.line, self.kind)
    }
}

/// Every secret read, by client random.
#[derive(Debug, Clone, Default)]
pub struct KeyLog {
    master: HashMap<ClientRandom, [u8; 48]>,
    tls13: HashMap<ClientRandom, Tls13Secrets>,
    /// Lines holding a secret that was used (comments and blank lines are not counted).
    pub lines_used: u64,
    /// Lines not used, all counted.
    pub bad_lines: u64,
    /// The first [`BAD_LINES_KEPT`] of them.
    pub bad: Vec<BadLine>,
    /// pcapng Decryption Secrets Blocks read (of the TLS key log kind).
    pub secrets_blocks: u64,
}

impl KeyLog {
    /// Reads a key log file.
    pub fn read_file(&mut self, path: &Path) -> io::Result<()> {
        let text = std::fs::read(path)?;
        self.parse(&text, &path.display().to_string());
        Ok(())
    }

    /// Reads key log lines; `source` names them in [`BadLine`]s.
    pub fn parse(&mut self, text: &[u8], source: &str) {
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            match self.line(line) {
                Ok(true) => self.lines_used += 1,
                Ok(false) => {}
                Err(kind) => {
                    self.bad_lines += 1;
                    if self.bad.len() < BAD_LINES_KEPT {
                        self.bad.push(BadLine {
                            source: source.to_string(),
                            line: i + 1,
                            kind,
                        });
                    }
                }
            }
        }
    }

    /// One line: Ok(true) when it gave a secret, Ok(false) for a comment, a blank line or a
    /// label not needed.
    fn line(&mut self, line: &[u8]) -> Result<bool, BadLineKind> {
        let line = std::str::from_utf8(line).map_err(|_| BadLineKind::NotText)?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(false);
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let label = fields[0];
        match label {
            "CLIENT_RANDOM"
            | "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
            | "SERVER_HANDSHAKE_TRAFFIC_SECRET"
            | "CLIENT_TRAFFIC_SECRET_0"
            | "SERVER_TRAFFIC_SECRET_0" => {}
            // Secrets not needed; OpenSSL 3.0 logs the secrets after a KeyUpdate as
            // `*_TRAFFIC_SECRET_N`, which are derived here from `_0`.
            "EXPORTER_SECRET"
            | "EARLY_EXPORTER_SECRET"
            | "CLIENT_EARLY_TRAFFIC_SECRET"
            | "ECH_SECRET"
            | "ECH_CONFIG"
            | "CLIENT_TRAFFIC_SECRET_N"
            | "SERVER_TRAFFIC_SECRET_N" => return Ok(false),
            "RSA" | "PMS_CLIENT_RANDOM" => return Err(BadLineKind::Unsupported(label.into())),
            _ => return Err(BadLineKind::UnknownLabel(truncate(label))),
        }
        if fields.len() != 3 {
            return Err(BadLineKind::Fields(fields.len()));
        }
        let random = hex(fields[1]).ok_or(BadLineKind::Hex)?;
        let random: ClientRandom = random
            .as_slice()
            .try_into()
            .map_err(|_| BadLineKind::RandomLength(random.len()))?;
        let secret = hex(fields[2]).ok_or(BadLineKind::Hex)?;
        if label == "CLIENT_RANDOM" {
            let master: [u8; 48] = secret
                .as_slice()
                .try_into()
                .map_err(|_| BadLineKind::SecretLength(secret.len()))?;
            self.master.insert(random, master);
            return Ok(true);
        }
        if secret.len() != 32 && secret.len() != 48 {
            return Err(BadLineKind::SecretLength(secret.len()));
        }
        let s = self.tls13.entry(random).or_default();
        let slot = match label {
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut s.client_handshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut s.server_handshake,
            "CLIENT_TRAFFIC_SECRET_0" => &mut s.client_traffic,
            _ => &mut s.server_traffic,
        };
        *slot = Some(secret);
        Ok(true)
    }

    /// The TLS 1.0–1.2 master secret of the session that sent `random`.
    /// A session's master secret (TLS 1.0–1.2), as a `CLIENT_RANDOM` line gives it.
    pub fn add_master(&mut self, random: ClientRandom, master: [u8; 48]) {
        self.master.insert(random, master);
    }

    /// A session's TLS 1.3 secrets, as its lines give them.
    pub fn add_tls13(&mut self, random: ClientRandom, secrets: Tls13Secrets) {
        self.tls13.insert(random, secrets);
    }

    pub fn master_secret(&self, random: &ClientRandom) -> Option<&[u8; 48]> {
        self.master.get(random)
    }

    /// The TLS 1.3 secrets of the session that sent `random`.
    pub fn tls13(&self, random: &ClientRandom) -> Option<&Tls13Secrets> {
        self.tls13.get(random)
    }

    /// Sessions with secrets.
    pub fn sessions(&self) -> usize {
        self.master.len() + self.tls13.len()
    }

    /// Whether any secret was read.
    pub fn is_empty(&self) -> bool {
        self.master.is_empty() && self.tls13.is_empty()
    }

    /// Reads the key log lines of every TLS Decryption Secrets Block of a pcapng file (a pcap
    /// file has none: nothing is read). Returns how many blocks were read.
    pub fn read_pcapng_secrets(&mut self, path: &Path) -> io::Result<u64> {
        let file = std::fs::File::open(path)?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut n = 0;
        for (offset, data) in secrets_blocks(&mut r)? {
            n += 1;
            self.secrets_blocks += 1;
            let source = format!("{} (pcapng secrets block at byte {offset})", path.display());
            self.parse(&data, &source);
        }
        Ok(n)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

const SHB: u32 = 0x0A0D_0D0A;
const DSB: u32 = 0x0000_000A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// The TLS key log kind of Decryption Secrets Block.
const SECRETS_TLS: u32 = 0x544C_534B;
/// A secrets block bigger than this is not read (its lines would be kept in memory).
const MAX_SECRETS: u32 = 64 << 20;

/// The (byte offset, key log text) of every TLS Decryption Secrets Block of a pcapng stream,
/// walking block headers (bodies of other blocks are skipped). A stream that is not pcapng
/// gives none; a damaged block ends the walk with what was found before it (the packet reader
/// reports the damage).
///
/// The walk reads the whole file through `r`'s buffer (skips are `seek_relative`, which keeps
/// it): one pass over the file, lost in the noise of decoding it (a page-cached 216 MiB pcapng
/// decodes in 0.30–0.34 s, the same packets as pcap, not walked, in 0.30–0.35 s).
pub fn secrets_blocks<R: Read + Seek>(r: &mut BufReader<R>) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut found = Vec::new();
    let mut offset = 0u64;
    let mut big_endian = false;
    loop {
        let mut head = [0u8; 12];
        match read_full(r, &mut head)? {
            12 => {}
            _ => return Ok(found),
        }
        let raw_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if raw_type == SHB {
            // The byte-order magic says how this section's numbers are written.
            let magic = [head[8], head[9], head[10], head[11]];
            big_endian = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
                (BYTE_ORDER_MAGIC, _) => false,
                (_, BYTE_ORDER_MAGIC) => true,
                _ => return Ok(found),
            };
        } else if offset == 0 {
            return Ok(found); // not pcapng
        }
        let num = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let block_type = num(&head[0..4]);
        let total = num(&head[4..8]);
        if total < 12 || total % 4 != 0 {
            return Ok(found);
        }
        if block_type == DSB && total >= 20 {
            let secrets_type = num(&head[8..12]);
            let mut len = [0u8; 4];
            if read_full(r, &mut len)? != 4 {
                return Ok(found);
            }
            let len = num(&len);
            if secrets_type == SECRETS_TLS && len <= MAX_SECRETS && len <= total - 20 {
                let mut data = vec![0u8; len as usize];
                if read_full(r, &mut data)? != data.len() {
                    return Ok(found);
                }
                found.push((offset, data));
                r.seek_relative(i64::from(total - 16 - len))?;
            } else {
                r.seek_relative(i64::from(total - 16))?;
            }
        } else {
            r.seek_relative(i64::from(total - 12))?;
        }
        offset += u64::from(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: &str = "03ED79E6D1BBFF454C8C512424D5B6B24D24AFAB1307B24AF91F440350955DDE";
    const MASTER: &str = "14BD78D3BCF5F0F9AE605A56C981F67CDAEEF1DA8C202BEAF12C32077DEE7344F07089A2EE5B492BAE612CDF6C8B0723";

    fn random() -> ClientRandom {
        hex(RANDOM).unwrap().try_into().unwrap()
    }

    #[test]
    fn good_lines_give_secrets_by_client_random() {
        let s32 = "ab".repeat(32);
        let s48 = "cd".repeat(48);
        let text = format!(
            "# a comment\n\nCLIENT_RANDOM {RANDOM} {MASTER}\r\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {s32}\n\
             SERVER_HANDSHAKE_TRAFFIC_SECRET {r} {s32}\n\
             CLIENT_TRAFFIC_SECRET_0 {r} {s48}\n\
             SERVER_TRAFFIC_SECRET_0 {r} {s48}\n\
             EXPORTER_SECRET {r} {s32}\n",
            r = RANDOM.to_lowercase()
        );
        let mut k = KeyLog::default();
        k.parse(text.as_bytes(), "k");
        assert_eq!((k.lines_used, k.bad_lines), (5, 0), "{:?}", k.bad);
        assert_eq!(
            k.master_secret(&random()).unwrap().to_vec(),
            hex(MASTER).unwrap()
        );
        let t = k.tls13(&random()).unwrap();
        assert_eq!(t.client_handshake.as_deref(), Some(&[0xab; 32][..]));
        assert_eq!(t.server_traffic.as_deref(), Some(&[0xcd; 48][..]));
        assert_eq!(k.sessions(), 2);
    }

    #[test]
    fn bad_lines_are_counted_with_their_line_numbers() {
        let text = format!(
            "CLIENT_RANDOM {RANDOM}\n\
             CLIENT_RANDOM {RANDOM} {MASTER} extra\n\
             CLIENT_RANDOM {RANDOM} 12345\n\
             CLIENT_RANDOM zz{} {MASTER}\n\
             CLIENT_RANDOM abcd {MASTER}\n\
             CLIENT_RANDOM {RANDOM} abcd\n\
             CLIENT_TRAFFIC_SECRET_0 {RANDOM} abcd\n\
             RSA 0102030405060708 {MASTER}\n\
             NOT_A_LABEL x y\n\
             \u{ff}\u{fe}\n\
             CLIENT_RANDOM {RANDOM} {MASTER}\n",
            &RANDOM[2..]
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        let mut k = KeyLog::default();
        k.parse(&bytes, "keys.log");
        let kinds: Vec<(usize, BadLineKind)> =
            k.bad.iter().map(|b| (b.line, b.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (1, BadLineKind::Fields(2)),
                (2, BadLineKind::Fields(4)),
                (3, BadLineKind::Hex),
                (4, BadLineKind::Hex),
                (5, BadLineKind::RandomLength(2)),
                (6, BadLineKind::SecretLength(2)),
                (7, BadLineKind::SecretLength(2)),
                (8, BadLineKind::Unsupported("RSA".into())),
                (9, BadLineKind::UnknownLabel("NOT_A_LABEL".into())),
                (10, BadLineKind::UnknownLabel("\u{ff}\u{fe}".into())),
                (12, BadLineKind::NotText),
            ]
        );
        assert_eq!((k.bad_lines, k.lines_used), (11, 1));
        assert_eq!(
            k.bad[4].to_string(),
            "keys.log line 5: client random of 2 bytes, expected 32"
        );
        // Only the first BAD_LINES_KEPT are kept; all are counted.
        let mut k = KeyLog::default();
        k.parse("x\n".repeat(50).as_bytes(), "k");
        assert_eq!((k.bad_lines, k.bad.len()), (50, BAD_LINES_KEPT));
    }

    /// A pcapng section header, a secrets block and a packet block, in either byte order.
    fn pcapng(big_endian: bool, secrets: &[u8]) -> Vec<u8> {
        let w = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let mut f = Vec::new();
        // SHB: type, length 28, magic, version 1.0, section length -1.
        f.extend_from_slice(&SHB.to_le_bytes());
        w(&mut f, 28);
        w(&mut f, BYTE_ORDER_MAGIC);
        f.extend_from_slice(&if big_endian {
            [0, 1, 0, 0]
        } else {
            [1, 0, 0, 0]
        });
        f.extend_from_slice(&[0xff; 8]);
        w(&mut f, 28);
        // An enhanced packet block of 4 bytes of data, skipped.
        w(&mut f, 6);
        w(&mut f, 36);
        f.extend_from_slice(&[0; 20]);
        f.extend_from_slice(&[1, 2, 3, 4]);
        w(&mut f, 36);
        // The DSB.
        let padded = secrets.len().div_ceil(4) * 4;
        let total = (20 + padded) as u32;
        w(&mut f, DSB);
        w(&mut f, total);
        w(&mut f, SECRETS_TLS);
        w(&mut f, secrets.len() as u32);
        f.extend_from_slice(secrets);
        f.resize(f.len() + padded - secrets.len(), 0);
        w(&mut f, total);
        f
    }

    #[test]
    fn secrets_blocks_are_found_in_either_byte_order() {
        let line = format!("CLIENT_RANDOM {RANDOM} {MASTER}\n");
        for be in [false, true] {
            let f = pcapng(be, line.as_bytes());
            let found = secrets_blocks(&mut BufReader::new(io::Cursor::new(&f))).unwrap();
            assert_eq!(
                found,
                vec![(64, line.as_bytes().to_vec())],
                "big endian {be}"
            );
        }
        // Not pcapng, truncated, or a damaged length: nothing, or what came before, no panic.
        assert!(secrets_blocks(&mut BufReader::new(io::Cursor::new(
            b"\xd4\xc3\xb2\xa1 pcap"
        )))
        .unwrap()
        .is_empty());
        let f = pcapng(false, line.as_bytes());
        for cut in 0..f.len() {
            let found = secrets_blocks(&mut BufReader::new(io::Cursor::new(&f[..cut]))).unwrap();
            if cut < 64 + 16 + line.len() {
                assert!(found.is_empty(), "cut {cut}");
            }
        }
        let mut bad = f.clone();
        bad[68] = 0x0d; // the DSB's length, no longer a multiple of 4
        assert!(secrets_blocks(&mut BufReader::new(io::Cursor::new(&bad)))
            .unwrap()
            .is_empty());
    }
}
