//! One TLS session read passively with a key log: [`Session`] is fed each direction's bytes
//! from the first TLS record on (for MySQL, what follows the SSLRequest) and says what it
//! finds through [`Out`]: that the session is readable, or why not, each direction's
//! application data in plaintext, and the bytes it lost.
//!
//! The handshake is followed as far as decrypting needs: the ClientHello's random (which
//! names the session in the key log), the ServerHello's version, cipher suite and
//! encrypt-then-MAC extension (skipping a HelloRetryRequest). TLS 1.0–1.2: the key block comes
//! from the master secret, and each direction turns to its keys at its ChangeCipherSpec.
//! TLS 1.3: each direction reads its encrypted handshake records with its handshake traffic
//! secret and turns to the application secret after its Finished; a KeyUpdate rolls that
//! direction's secret (`traffic upd`). A key log holding only the application secrets still
//! reads the session: the handshake records that cannot be read are skipped until a record
//! opens with the application keys.
//!
//! Not read, and said so (counted by the caller): sessions without keys, versions and suites
//! [`super::cipher::suite`] does not know, renegotiation (TLS 1.2), 0-RTT early data.
//! A record that does not open ends the reading of that direction (its later bytes are
//! reported [`Out::Lost`]); before the session was readable, it makes the session unreadable.
//! A TCP gap in a direction read with an AEAD suite is passed over ([`Resync`]): the next
//! record is found after it by its header, and the number of records lost by trying the
//! sequence numbers the gap's size allows until one authenticates (the tag is the proof);
//! with CBC, or when none is found, the gap ends that direction's reading.

use std::sync::Arc;

use myrr_recording::Direction;

use super::cipher::{self, OpenError, RecordKeys, Suite, Version};
use super::keylog::{ClientRandom, KeyLog};
use super::record::{
    Handshakes, Record, RecordError, Records, ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC,
    HANDSHAKE, HEADER_LEN,
};
use super::TlsStats;

/// The ServerHello random that marks a HelloRetryRequest (RFC 8446 §4.1.3).
const HELLO_RETRY: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const FINISHED: u8 = 20;
const KEY_UPDATE: u8 = 24;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_ENCRYPT_THEN_MAC: u16 = 22;
/// TLS 1.3 handshake records skipped without handshake secrets before one must open with the
/// application keys.
const MAX_SKIPPED: u32 = 64;

/// Why a session cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The key log has no secrets for the session's client random.
    NoKeys,
    /// The ServerHello came without a ClientHello before it.
    NoClientHello,
    UnsupportedVersion(u16),
    UnsupportedSuite(Version, u16),
    /// Reading failed before anything was decrypted.
    Failed(Failure),
}

/// Why reading a direction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A record did not decrypt.
    Open(OpenError),
    /// A record header that is not TLS.
    Record(RecordError),
    /// Bytes lost in the capture (a TCP gap).
    Gap,
    /// A ClientHello or ServerHello that does not parse.
    Hello,
    /// A ChangeCipherSpec after the keys changed (renegotiation), or TLS 1.3 data before the
    /// ServerHello (early data).
    Unexpected,
    /// A TLS 1.3 direction turned to application data without its application secret.
    NoTrafficSecret,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Open(e) => e.name(),
            Failure::Record(_) => "record_header",
            Failure::Gap => "capture_gap",
            Failure::Hello => "hello_unparsable",
            Failure::Unexpected => "unexpected_record",
            Failure::NoTrafficSecret => "no_traffic_secret",
        }
    }
}

/// What a session says as it reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Out<'a> {
    /// The first record decrypted: plaintext follows from now on.
    Readable,
    /// The session cannot be read; nothing more will be said.
    Unreadable(Unreadable),
    /// Application data of one direction.
    Plaintext(Direction, &'a [u8]),
    /// Bytes of a direction that will not be read.
    Lost(Direction, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the hellos.
    Hello,
    /// Keys known, nothing decrypted yet.
    Keyed,
    /// Decrypting.
    Reading,
    Unreadable,
}

#[derive(Debug, Default)]
struct Dir {
    records: Records,
    handshakes: Handshakes,
    keys: Option<RecordKeys>,
    /// TLS 1.0–1.2: what this direction's ChangeCipherSpec turns on.
    pending: Option<RecordKeys>,
    /// TLS 1.3: the secret of the current keys (for KeyUpdate), and the application secret.
    secret: Option<Vec<u8>>,
    traffic_secret: Option<Vec<u8>>,
    /// TLS 1.3: reading application traffic (after Finished).
    app: bool,
    /// TLS 1.3 handshake records skipped for want of handshake secrets.
    skipped: u32,
    /// Reading stopped; later bytes are lost.
    dead: bool,
    /// After a gap: bytes waiting for a record that opens.
    resync: Option<Box<Resync>>,
    /// Protected records opened and their bytes (headers included): the mean record size
    /// that guesses how many records a gap held.
    opened: u64,
    opened_bytes: u64,
    /// Lost bytes not reported yet.
    lost: u64,
}

/// A direction's bytes after a TCP gap, until a record is found that opens.
#[derive(Debug, Default)]
struct Resync {
    buf: Vec<u8>,
    /// Bytes lost: the gap, and the partial record before it.
    lost: u64,
    /// Offsets of `buf` already tried as a record start.
    tried_to: usize,
    /// Decryptions tried since the gap.
    tries: u64,
}

/// Bytes of a direction kept to find a record after a gap, at most.
pub const RESYNC_MAX: usize = 1 << 20;
/// Decryptions tried for one candidate record: sequence numbers around the estimate.
const RESYNC_TRIES: u64 = 200_000;
/// Decryptions tried after one gap, at most (a fraction of a second of CPU): past it, the
/// gap ends the direction's reading, as when no record is found in [`RESYNC_MAX`] bytes.
pub const RESYNC_BUDGET: u64 = 1_000_000;
/// The shortest protected record: header, TLS 1.3's content type, a 16-byte tag.
const MIN_RECORD: u64 = 22;

/// One TLS session's reader (see the module doc).
pub struct Session {
    keylog: Arc<KeyLog>,
    state: State,
    client_random: Option<ClientRandom>,
    version: Option<Version>,
    suite: Option<Suite>,
    dirs: [Dir; 2],
    scratch: Vec<u8>,
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

fn direction(i: usize) -> Direction {
    if i == 0 {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("version", &self.version)
            .field("suite", &self.suite.map(|s| s.id))
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(keylog: Arc<KeyLog>) -> Self {
        Self {
            keylog,
            state: State::Hello,
            client_random: None,
            version: None,
            suite: None,
            dirs: Default::default(),
            scratch: Vec::new(),
        }
    }

    /// Whether the session was found unreadable (its bytes are ignored from then on).
    pub fn is_unreadable(&self) -> bool {
        self.state == State::Unreadable
    }

    /// Whether plaintext is being read.
    pub fn is_reading(&self) -> bool {
        self.state == State::Reading
    }

    /// Bytes held: partial records, handshake messages being read, the scratch buffer.
    pub fn buffered(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| {
                d.records.buffered()
                    + d.handshakes.buffered()
                    + d.resync.as_ref().map_or(0, |r| r.buf.len())
            })
            .sum::<usize>()
            + self.scratch.capacity()
    }

    /// Feeds `dir`'s next bytes.
    pub fn feed(
        &mut self,
        dir: Direction,
        data: &[u8],
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        if self.state == State::Unreadable || data.is_empty() {
            return;
        }
        let i = index(dir);
        if self.dirs[i].dead {
            self.dirs[i].lost += data.len() as u64;
            return;
        }
        if let Some(r) = &mut self.dirs[i].resync {
            r.buf.extend_from_slice(data);
            match self.resync(i, stats) {
                Some(rest) => return self.feed(dir, &rest, stats, out),
                None => {
                    if self.dirs[i]
                        .resync
                        .as_ref()
                        .is_some_and(|r| r.buf.len() > RESYNC_MAX || r.tries >= RESYNC_BUDGET)
                    {
                        let r = self.dirs[i].resync.take().unwrap_or_default();
                        self.fail(i, Failure::Gap, r.lost + r.buf.len() as u64, stats, out);
                    }
                    return;
                }
            }
        }
        let before = self.dirs[i].records.buffered();
        let mut records = std::mem::take(&mut self.dirs[i].records);
        let mut consumed = 0usize;
        let result = records.push(data, |r| {
            consumed += HEADER_LEN + r.body.len();
            self.record(i, r, stats, out);
            self.state != State::Unreadable
        });
        self.dirs[i].records = records;
        if let Err(e) = result {
            let lost = (before + data.len()).saturating_sub(consumed);
            self.fail(i, Failure::Record(e), lost as u64, stats, out);
        }
        if self.state == State::Unreadable {
            self.dirs = Default::default();
        }
    }

    /// `bytes` of `dir` were lost in the capture.
    pub fn gap(
        &mut self,
        dir: Direction,
        bytes: u64,
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        if self.state == State::Unreadable {
            return;
        }
        let i = index(dir);
        let buffered = self.dirs[i].records.buffered() as u64;
        self.dirs[i].records.clear();
        let d = &mut self.dirs[i];
        let resyncable = self.state == State::Reading
            && !d.dead
            && !d.handshakes.in_message()
            && d.keys.as_ref().is_some_and(|k| k.resyncable());
        if d.dead {
            d.lost += bytes + buffered;
        } else if let Some(r) = &mut d.resync {
            // Another gap while looking: what was kept is lost too.
            r.lost += r.buf.len() as u64 + bytes;
            r.buf.clear();
            r.tried_to = 0;
        } else if resyncable {
            d.resync = Some(Box::new(Resync {
                lost: bytes + buffered,
                ..Resync::default()
            }));
        } else {
            self.fail(i, Failure::Gap, bytes + buffered, stats, out);
        }
    }

    /// After a gap in direction `i`: the first record of the bytes kept that opens with a
    /// sequence number the gap allows. Found: the keys go on from there, the bytes before it
    /// are lost, and the bytes from it on are returned to be read.
    fn resync(&mut self, i: usize, stats: &mut TlsStats) -> Option<Vec<u8>> {
        let d = &mut self.dirs[i];
        let keys = d.keys.as_mut()?;
        let r = d.resync.as_mut()?;
        let base = keys.seq;
        let mean = d
            .opened_bytes
            .checked_div(d.opened)
            .unwrap_or(MIN_RECORD)
            .max(MIN_RECORD);
        let mut p = r.tried_to;
        while p + HEADER_LEN <= r.buf.len() {
            let b = &r.buf;
            let len = usize::from(u16::from_be_bytes([b[p + 3], b[p + 4]]));
            let header = b[p] == APPLICATION_DATA && b[p + 1] == 3 && b[p + 2] == 3;
            if !header || !(17..=(1 << 14) + 256).contains(&len) {
                p += 1;
                continue;
            }
            let end = p + HEADER_LEN + len;
            if end > b.len() {
                break; // wait for the whole record
            }
            // Records lost: the gap's bytes and those before p, at most one per shortest record.
            let lost_bytes = r.lost + p as u64;
            let max = lost_bytes / MIN_RECORD + 1;
            let body = &b[p + HEADER_LEN..end];
            let guess = keys
                .seq_hint(body)
                .and_then(|h| h.checked_sub(base))
                .filter(|&n| n <= max)
                .unwrap_or((lost_bytes / mean).min(max));
            let mut found = None;
            for k in 0..RESYNC_TRIES.min(2 * max + 2) {
                // guess, guess+1, guess-1, guess+2, …
                let step = k.div_ceil(2);
                let n = if k % 2 == 1 {
                    guess + step
                } else if step <= guess {
                    guess - step
                } else {
                    continue;
                };
                if n > max {
                    continue;
                }
                if r.tries >= RESYNC_BUDGET {
                    break;
                }
                r.tries += 1;
                keys.seq = base.wrapping_add(n);
                if keys
                    .open(
                        b[p],
                        u16::from_be_bytes([b[p + 1], b[p + 2]]),
                        body,
                        &mut self.scratch,
                    )
                    .is_ok()
                {
                    found = Some(n);
                    break;
                }
            }
            match found {
                Some(n) => {
                    // Read again from p, at the sequence number found.
                    keys.seq = base.wrapping_add(n);
                    let r = d.resync.take()?;
                    d.lost += r.lost + p as u64;
                    stats.gaps_passed += 1;
                    stats.records_lost_in_gaps += n;
                    return Some(r.buf[p..].to_vec());
                }
                None if r.tries >= RESYNC_BUDGET => {
                    keys.seq = base;
                    break;
                }
                None => {
                    keys.seq = base;
                    p += 1;
                }
            }
        }
        r.tried_to = p;
        None
    }

    /// The connection is over: bytes left in partial records, and a gap not passed over, are
    /// lost.
    pub fn finish(&mut self, stats: &mut TlsStats, out: &mut dyn FnMut(Out<'_>)) {
        if self.state != State::Reading {
            return;
        }
        for d in &mut self.dirs {
            d.lost += d.records.buffered() as u64;
            d.records.clear();
            if let Some(r) = d.resync.take() {
                // A gap still not passed over: it, and what came after it, are lost.
                d.lost += r.lost + r.buf.len() as u64;
                *stats.failures.entry(Failure::Gap.name()).or_default() += 1;
            }
        }
        self.flush_lost(out);
    }

    fn flush_lost(&mut self, out: &mut dyn FnMut(Out<'_>)) {
        for (i, d) in self.dirs.iter_mut().enumerate() {
            if d.lost > 0 {
                out(Out::Lost(direction(i), d.lost));
                d.lost = 0;
            }
        }
    }

    /// Reading `dir` stopped; `lost` bytes of it (and all that follow) will not be read.
    fn fail(
        &mut self,
        i: usize,
        why: Failure,
        lost: u64,
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        *stats.failures.entry(why.name()).or_default() += 1;
        if self.state == State::Reading {
            let d = &mut self.dirs[i];
            d.dead = true;
            d.keys = None;
            d.pending = None;
            d.lost += lost;
            self.flush_lost(out);
        } else {
            self.unreadable(Unreadable::Failed(why), stats, out);
        }
    }

    fn unreadable(&mut self, why: Unreadable, stats: &mut TlsStats, out: &mut dyn FnMut(Out<'_>)) {
        match why {
            Unreadable::NoKeys => stats.sessions_without_keys += 1,
            Unreadable::UnsupportedVersion(v) => {
                stats.sessions_unsupported += 1;
                *stats
                    .unsupported
                    .entry(format!("version 0x{v:04x}"))
                    .or_default() += 1;
            }
            Unreadable::UnsupportedSuite(v, s) => {
                stats.sessions_unsupported += 1;
                *stats
                    .unsupported
                    .entry(format!("{} suite 0x{s:04x}", v.name()))
                    .or_default() += 1;
            }
            Unreadable::NoClientHello | Unreadable::Failed(_) => stats.sessions_failed += 1,
        }
        self.state = State::Unreadable;
        out(Out::Unreadable(why));
    }

    fn record(
        &mut self,
        i: usize,
        r: Record<'_>,
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        if self.dirs[i].dead {
            self.dirs[i].lost += (HEADER_LEN + r.body.len()) as u64;
            return;
        }
        let tls13 = self.version == Some(Version::Tls13);
        // TLS 1.3 protects everything after the ServerHello, in both directions.
        let protected = self.dirs[i].keys.is_some() || (tls13 && self.state != State::Hello);
        match r.content_type {
            CHANGE_CIPHER_SPEC if tls13 => {} // middlebox compatibility only
            CHANGE_CIPHER_SPEC => {
                if self.dirs[i].keys.is_some() {
                    let lost = (HEADER_LEN + r.body.len()) as u64;
                    self.fail(i, Failure::Unexpected, lost, stats, out);
                } else if let Some(k) = self.dirs[i].pending.take() {
                    self.dirs[i].keys = Some(k);
                }
                // Without pending keys the hellos were not both seen: the session is already
                // unreadable, or about to be.
            }
            HANDSHAKE if !protected => {
                let mut hs = std::mem::take(&mut self.dirs[i].handshakes);
                let mut hellos = Vec::new();
                hs.push(
                    r.body,
                    |t| t == CLIENT_HELLO || t == SERVER_HELLO,
                    |t, body| hellos.push((t, body.to_vec())),
                );
                self.dirs[i].handshakes = hs;
                for (t, body) in hellos {
                    self.hello(i, t, &body, stats, out);
                    if self.state == State::Unreadable {
                        return;
                    }
                }
            }
            ALERT if !protected => {}
            _ if protected => self.protected(i, r, stats, out),
            _ => {
                // Application data in the clear: early data, or a stream we misread.
                let lost = (HEADER_LEN + r.body.len()) as u64;
                self.fail(i, Failure::Unexpected, lost, stats, out);
            }
        }
    }

    fn hello(
        &mut self,
        i: usize,
        t: u8,
        body: &[u8],
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        match (i, t) {
            (0, CLIENT_HELLO) => match body.get(2..34) {
                Some(r) => {
                    let mut random = [0u8; 32];
                    random.copy_from_slice(r);
                    self.client_random = Some(random);
                }
                None => self.fail(i, Failure::Hello, 0, stats, out),
            },
            (1, SERVER_HELLO) if self.state == State::Hello => {
                match ServerHello::parse(body) {
                    Some(sh) if sh.random == HELLO_RETRY => {} // the real one follows
                    Some(sh) => self.server_hello(&sh, stats, out),
                    None => self.fail(i, Failure::Hello, 0, stats, out),
                }
            }
            _ => {}
        }
    }

    fn server_hello(
        &mut self,
        sh: &ServerHello,
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        let Some(random) = self.client_random else {
            return self.unreadable(Unreadable::NoClientHello, stats, out);
        };
        let Some(version) = Version::from_wire(sh.version) else {
            return self.unreadable(Unreadable::UnsupportedVersion(sh.version), stats, out);
        };
        let Some(suite) = cipher::suite(sh.suite, version) else {
            return self.unreadable(Unreadable::UnsupportedSuite(version, sh.suite), stats, out);
        };
        self.version = Some(version);
        self.suite = Some(suite);
        if version == Version::Tls13 {
            let Some(s) = self
                .keylog
                .tls13(&random)
                .filter(|s| s.client_traffic.is_some() || s.server_traffic.is_some())
            else {
                return self.unreadable(Unreadable::NoKeys, stats, out);
            };
            let s = s.clone();
            let [c, srv] = &mut self.dirs;
            for (d, hs, traffic) in [
                (c, s.client_handshake, s.client_traffic),
                (srv, s.server_handshake, s.server_traffic),
            ] {
                d.keys = hs.as_deref().and_then(|h| cipher::tls13_keys(suite, h));
                d.secret = hs.filter(|_| d.keys.is_some());
                d.traffic_secret = traffic;
            }
        } else {
            let Some(master) = self.keylog.master_secret(&random) else {
                return self.unreadable(Unreadable::NoKeys, stats, out);
            };
            match cipher::tls12_keys(version, suite, master, &random, &sh.random, sh.etm) {
                Some((c, s)) => {
                    self.dirs[0].pending = Some(c);
                    self.dirs[1].pending = Some(s);
                }
                None => return self.fail(1, Failure::Hello, 0, stats, out),
            }
        }
        self.state = State::Keyed;
    }

    /// A record protected by this direction's keys.
    fn protected(
        &mut self,
        i: usize,
        r: Record<'_>,
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        let lost = (HEADER_LEN + r.body.len()) as u64;
        let Some(suite) = self.suite else {
            return self.fail(i, Failure::Unexpected, lost, stats, out);
        };
        let d = &mut self.dirs[i];
        let opened = match &mut d.keys {
            Some(k) => k.open(r.content_type, r.version, r.body, &mut self.scratch),
            None => {
                // TLS 1.3 without this direction's handshake secret: does the record open
                // with the application keys? Until one does, it is a handshake record.
                let mut app = d
                    .traffic_secret
                    .as_deref()
                    .and_then(|s| cipher::tls13_keys(suite, s));
                let tried = app
                    .as_mut()
                    .map(|k| k.open(r.content_type, r.version, r.body, &mut self.scratch));
                match tried {
                    Some(Ok(o)) => {
                        d.keys = app;
                        d.secret = d.traffic_secret.take();
                        d.app = true;
                        Ok(o)
                    }
                    _ => {
                        d.skipped += 1;
                        stats.records_skipped += 1;
                        if d.skipped > MAX_SKIPPED {
                            return self.fail(i, Failure::NoTrafficSecret, lost, stats, out);
                        }
                        return;
                    }
                }
            }
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => return self.fail(i, Failure::Open(e), lost, stats, out),
        };
        stats.records_decrypted += 1;
        self.dirs[i].opened += 1;
        self.dirs[i].opened_bytes += lost;
        if self.state == State::Keyed {
            self.state = State::Reading;
            stats.sessions_decrypted += 1;
            if let (Some(v), Some(s)) = (self.version, self.suite) {
                *stats.suites.entry(suite_name(v, s.id)).or_default() += 1;
            }
            out(Out::Readable);
        }
        let range = opened.range;
        match opened.content_type {
            APPLICATION_DATA => {
                stats.plaintext_bytes += range.len() as u64;
                self.flush_lost(out);
                out(Out::Plaintext(direction(i), &self.scratch[range]));
            }
            HANDSHAKE if self.version == Some(Version::Tls13) => {
                let mut hs = std::mem::take(&mut self.dirs[i].handshakes);
                let mut msgs = Vec::new();
                hs.push(
                    &self.scratch[range],
                    |t| t == FINISHED || t == KEY_UPDATE,
                    |t, _| msgs.push(t),
                );
                self.dirs[i].handshakes = hs;
                for t in msgs {
                    self.tls13_handshake(i, t, suite, stats, out);
                }
            }
            _ => {} // alerts, TLS 1.2 Finished
        }
    }

    /// A TLS 1.3 handshake message that changes the direction's keys.
    fn tls13_handshake(
        &mut self,
        i: usize,
        t: u8,
        suite: Suite,
        stats: &mut TlsStats,
        out: &mut dyn FnMut(Out<'_>),
    ) {
        let d = &mut self.dirs[i];
        let next = match t {
            FINISHED if !d.app => {
                d.app = true;
                d.traffic_secret.take()
            }
            KEY_UPDATE if d.app => {
                stats.key_updates += 1;
                d.secret
                    .as_deref()
                    .and_then(|s| cipher::tls13_next_secret(suite, s))
            }
            _ => return,
        };
        match next.as_deref().and_then(|s| cipher::tls13_keys(suite, s)) {
            Some(k) => {
                d.keys = Some(k);
                d.secret = next;
            }
            None => self.fail(i, Failure::NoTrafficSecret, 0, stats, out),
        }
    }
}

/// "TLS 1.3 TLS_AES_128_GCM_SHA256"-style names of the suites read.
pub fn suite_name(v: Version, id: u16) -> String {
    let name = match id {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x009C => "RSA_WITH_AES_128_GCM_SHA256",
        0x009D => "RSA_WITH_AES_256_GCM_SHA384",
        0x009E => "DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009F => "DHE_RSA_WITH_AES_256_GCM_SHA384",
        0xC02B => "ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xC02C => "ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xC02F => "ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xC030 => "ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xCCA8 => "ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xCCA9 => "ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xCCAA => "DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0x002F => "RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "RSA_WITH_AES_256_CBC_SHA",
        0x0033 => "DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0039 => "DHE_RSA_WITH_AES_256_CBC_SHA",
        0xC009 => "ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xC00A => "ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xC013 => "ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xC014 => "ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0x003C => "RSA_WITH_AES_128_CBC_SHA256",
        0x003D => "RSA_WITH_AES_256_CBC_SHA256",
        0x0067 => "DHE_RSA_WITH_AES_128_CBC_SHA256",
        0x006B => "DHE_RSA_WITH_AES_256_CBC_SHA256",
        0xC023 => "ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xC024 => "ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xC027 => "ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xC028 => "ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        _ => return format!("{} 0x{id:04x}", v.name()),
    };
    if v == Version::Tls13 {
        format!("{} {name}", v.name())
    } else {
        format!("{} TLS_{name}", v.name())
    }
}

/// What is read of a ServerHello.
struct ServerHello {
    /// The negotiated version: supported_versions' when present.
    version: u16,
    random: [u8; 32],
    suite: u16,
    etm: bool,
}

impl ServerHello {
    fn parse(b: &[u8]) -> Option<Self> {
        let legacy = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let mut random = [0u8; 32];
        random.copy_from_slice(b.get(2..34)?);
        let sid = usize::from(*b.get(34)?);
        let at = 35 + sid;
        let suite = u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]);
        let mut sh = ServerHello {
            version: legacy,
            random,
            suite,
            etm: false,
        };
        // compression method, then extensions (absent in old servers' hellos)
        let ext_at = at + 3;
        let Some(len) = b.get(ext_at..ext_at + 2) else {
            return Some(sh);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let mut exts = b.get(ext_at + 2..ext_at + 2 + len)?;
        while exts.len() >= 4 {
            let t = u16::from_be_bytes([exts[0], exts[1]]);
            let l = usize::from(u16::from_be_bytes([exts[2], exts[3]]));
            let data = exts.get(4..4 + l)?;
            match t {
                EXT_SUPPORTED_VERSIONS if l == 2 => {
                    sh.version = u16::from_be_bytes([data[0], data[1]]);
                }
                EXT_ENCRYPT_THEN_MAC => sh.etm = true,
                _ => {}
            }
            exts = &exts[4 + l..];
        }
        Some(sh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: [u8; 32] = [0x11; 32];

    fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![
            content_type,
            3,
            3,
            (body.len() >> 8) as u8,
            body.len() as u8,
        ];
        r.extend_from_slice(body);
        r
    }

    fn handshake(t: u8, body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let mut m = vec![t, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        m.extend_from_slice(body);
        record(HANDSHAKE, &m)
    }

    fn client_hello() -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&RANDOM);
        b.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        handshake(CLIENT_HELLO, &b)
    }

    /// A ServerHello choosing `suite`, TLS 1.3 when `tls13` (supported_versions).
    fn server_hello(random: [u8; 32], suite: u16, tls13: bool) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&random);
        b.push(0); // no session id
        b.extend_from_slice(&suite.to_be_bytes());
        b.push(0);
        let ext: &[u8] = if tls13 { &[0, 43, 0, 2, 3, 4] } else { &[] };
        b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        b.extend_from_slice(ext);
        handshake(SERVER_HELLO, &b)
    }

    fn keylog(with_random: bool) -> Arc<KeyLog> {
        let mut k = KeyLog::default();
        let r: String = RANDOM.iter().map(|b| format!("{b:02x}")).collect();
        let r = if with_random { r } else { "22".repeat(32) };
        let s = "ab".repeat(32);
        k.parse(
            format!("CLIENT_TRAFFIC_SECRET_0 {r} {s}\nSERVER_TRAFFIC_SECRET_0 {r} {s}\n\
                     CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {s}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {r} {s}\n\
                     CLIENT_RANDOM {r} {}\n", "cd".repeat(48))
            .as_bytes(),
            "test",
        );
        Arc::new(k)
    }

    /// Feeds the client's and then the server's bytes, each cut at `cut`; what was said.
    fn run(keys: Arc<KeyLog>, client: &[u8], server: &[u8], cut: usize) -> (Vec<String>, TlsStats) {
        let mut s = Session::new(keys);
        let mut stats = TlsStats::default();
        let mut said = Vec::new();
        for (dir, bytes) in [
            (Direction::ClientToServer, client),
            (Direction::ServerToClient, server),
        ] {
            let cut = cut.min(bytes.len());
            for part in [&bytes[..cut], &bytes[cut..]] {
                s.feed(dir, part, &mut stats, &mut |o| said.push(format!("{o:?}")));
            }
        }
        (said, stats)
    }

    /// A TLS 1.3 TLS_AES_128_GCM_SHA256 application record of `plain` under `secret` at
    /// sequence number `seq`, sealed by ring.
    fn sealed(secret: &[u8], seq: u64, plain: &[u8]) -> Vec<u8> {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
        let suite = cipher::suite(0x1301, Version::Tls13).unwrap();
        let (mut key, mut iv) = ([0u8; 16], [0u8; 12]);
        cipher::hkdf_expand_label(suite.hash, secret, b"key", b"", &mut key).unwrap();
        cipher::hkdf_expand_label(suite.hash, secret, b"iv", b"", &mut iv).unwrap();
        for (a, b) in iv[4..].iter_mut().zip(seq.to_be_bytes()) {
            *a ^= b;
        }
        let mut buf = plain.to_vec();
        buf.push(APPLICATION_DATA);
        let len = buf.len() + 16;
        let head = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).unwrap())
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(head), &mut buf)
            .unwrap();
        let mut r = head.to_vec();
        r.extend_from_slice(&buf);
        r
    }

    /// A TLS 1.3 session whose key log has the application secrets, after its hellos.
    fn tls13_session(secret: &[u8]) -> (Session, TlsStats) {
        let r: String = RANDOM.iter().map(|b| format!("{b:02x}")).collect();
        let s: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut k = KeyLog::default();
        k.parse(
            format!("CLIENT_TRAFFIC_SECRET_0 {r} {s}\nSERVER_TRAFFIC_SECRET_0 {r} {s}\n")
                .as_bytes(),
            "test",
        );
        let mut session = Session::new(Arc::new(k));
        let mut stats = TlsStats::default();
        let mut none = |_: Out<'_>| {};
        session.feed(
            Direction::ClientToServer,
            &client_hello(),
            &mut stats,
            &mut none,
        );
        let sh = server_hello([7; 32], 0x1301, true);
        session.feed(Direction::ServerToClient, &sh, &mut stats, &mut none);
        (session, stats)
    }

    #[test]
    fn a_gap_in_an_aead_direction_is_passed_over_and_a_hopeless_one_given_up() {
        let secret = [0xab; 32];
        let c = Direction::ClientToServer;
        let (mut s, mut stats) = tls13_session(&secret);
        let mut said = Vec::new();
        let recs: Vec<Vec<u8>> = (0..8)
            .map(|i| sealed(&secret, i, format!("statement {i}").as_bytes()))
            .collect();
        for r in &recs[..2] {
            s.feed(c, r, &mut stats, &mut |o| said.push(format!("{o:?}")));
        }
        // Records 2, 3 and 4 lost; 5 and 6 come in pieces that do not follow their bounds.
        let lost: usize = recs[2..5].iter().map(Vec::len).sum();
        s.gap(c, lost as u64, &mut stats, &mut |o| {
            said.push(format!("{o:?}"))
        });
        let after: Vec<u8> = recs[5..7].concat();
        for part in after.chunks(7) {
            s.feed(c, part, &mut stats, &mut |o| said.push(format!("{o:?}")));
        }
        let text = |o: &str| o.contains("Plaintext(ClientToServer");
        assert_eq!(said.iter().filter(|o| text(o)).count(), 4, "{said:?}");
        assert!(
            said[3].ends_with(&format!("Lost(ClientToServer, {lost})")),
            "{said:?}"
        );
        assert_eq!((stats.gaps_passed, stats.records_lost_in_gaps), (1, 3));
        assert!(stats.failures.is_empty(), "{:?}", stats.failures);

        // A gap after which nothing opens (another session's records): given up within the
        // budget of decryptions, and everything from the gap on is lost, not silent.
        s.gap(c, 1_000_000_000, &mut stats, &mut |o| {
            said.push(format!("{o:?}"))
        });
        let wrong: Vec<u8> = (0..6).flat_map(|i| sealed(&[0xcd; 32], i, b"x")).collect();
        let before = said.len();
        s.feed(c, &wrong, &mut stats, &mut |o| said.push(format!("{o:?}")));
        assert_eq!(
            stats.failures.get("capture_gap"),
            Some(&1),
            "{:?}",
            stats.failures
        );
        assert_eq!(stats.gaps_passed, 1);
        assert!(
            said[before..]
                .iter()
                .any(|o| o.contains("Lost(ClientToServer, 1000000")),
            "{:?}",
            &said[before..]
        );

        // A gap still not passed over when the connection ends: lost, and counted.
        let (mut s, mut stats) = tls13_session(&secret);
        let mut said = Vec::new();
        s.feed(c, &recs[0], &mut stats, &mut |o| {
            said.push(format!("{o:?}"))
        });
        s.gap(c, 100, &mut stats, &mut |o| said.push(format!("{o:?}")));
        s.feed(c, &recs[3][..10], &mut stats, &mut |o| {
            said.push(format!("{o:?}"))
        });
        s.finish(&mut stats, &mut |o| said.push(format!("{o:?}")));
        assert_eq!(
            said.last().map(String::as_str),
            Some("Lost(ClientToServer, 110)")
        );
        assert_eq!(stats.failures.get("capture_gap"), Some(&1));
    }

    #[test]
    fn hellos_give_keys_or_say_why_not_at_every_split() {
        let ch = client_hello();
        let sh13 = server_hello([7; 32], 0x1301, true);
        for cut in 0..sh13.len() + 1 {
            // Keys found: nothing said until a record decrypts, or fails to.
            let (said, _) = run(keylog(true), &ch, &sh13, cut);
            assert!(said.is_empty(), "cut {cut}: {said:?}");
            let (said, stats) = run(keylog(false), &ch, &sh13, cut);
            assert_eq!(said, ["Unreadable(NoKeys)"], "cut {cut}");
            assert_eq!(stats.sessions_without_keys, 1);
        }
        let (said, stats) = run(keylog(true), &ch, &server_hello([7; 32], 0x000A, false), 3);
        assert_eq!(said, ["Unreadable(UnsupportedSuite(Tls12, 10))"]);
        assert_eq!(
            stats.unsupported.keys().collect::<Vec<_>>(),
            ["TLS 1.2 suite 0x000a"]
        );
        let (said, _) = run(keylog(true), &[], &sh13, 0);
        assert_eq!(said, ["Unreadable(NoClientHello)"]);
    }

    #[test]
    fn a_hello_retry_request_is_passed_over_and_a_bad_record_is_a_failure() {
        let ch = client_hello();
        let mut server = server_hello(HELLO_RETRY, 0x1301, true);
        server.extend(server_hello([7; 32], 0x1301, true));
        let (said, _) = run(keylog(true), &ch, &server, 0);
        assert!(said.is_empty(), "{said:?}");
        // The first protected record does not open with the logged keys: unreadable.
        server.extend(record(APPLICATION_DATA, &[0x55; 40]));
        let (said, stats) = run(keylog(true), &ch, &server, 7);
        assert_eq!(said, ["Unreadable(Failed(Open(Auth)))"]);
        assert_eq!(stats.failures.get("authentication"), Some(&1));
        assert_eq!(stats.sessions_failed, 1);
        // Not TLS at all after the SSLRequest.
        let (said, _) = run(keylog(true), b"GET / HTTP/1.1\r\n", &[], 0);
        assert_eq!(said, ["Unreadable(Failed(Record(ContentType(71))))"]);
    }
}
