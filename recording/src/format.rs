//! The `.myrr` file format.
//!
//! ```text
//! file   := MAGIC(8) version(u16 le) header_len(u32 le) header_crc(u32 le) header(bincode)
//!           block*
//! block  := len(u32 le) crc32(u32 le) zstd( count(u32 le) event(bincode)* )
//! ```
//!
//! Blocks are independent: a reader that meets a torn or corrupt block reports where and keeps
//! every event before it. The codec (bincode 2, varint integers) stays behind this module.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bincode::{Decode, Encode};

use crate::event::Event;

pub const MAGIC: &[u8; 8] = b"MYRR\x00REC";
/// Bumped on any incompatible change; readers refuse newer versions with a clear message.
pub const FORMAT_VERSION: u16 = 5;

/// Version 1 had no `Event::Backfill`, version 2 no `Event::Rows`, version 3 no
/// `Event::Label`, version 4 no `Event::Phase`; their events decode
/// unchanged (each variant was appended last).
pub const OLDEST_READABLE: u16 = 1;
/// Uncompressed size at which a block is sealed.
pub const BLOCK_TARGET: usize = 128 * 1024;
/// Largest block a reader accepts (compressed), so a corrupt length cannot make it allocate
/// without bound.
pub const MAX_BLOCK: u32 = 64 * 1024 * 1024;

/// The codec. The limit bounds what one decode may allocate, so a crafted length prefix in a
/// file whose checksums are right cannot make the reader allocate without bound.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum RunKind {
    Capture,
    Replay,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Capture => "capture",
            RunKind::Replay => "replay",
        }
    }
}

/// What a run is: written once at the start of a file.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Header {
    pub kind: RunKind,
    pub tool_version: String,
    /// Where the events came from: pcap file names, an interface, or a target `host:port`
    /// (never a password).
    pub source: String,
    /// µs since the Unix epoch when the run started.
    pub started_us: u64,
    /// Options the run was made with, as `name=value` pairs.
    pub options: Vec<(String, String)>,
}

impl Header {
    /// The header of a run starting now, made by this version of myrr (every crate of the
    /// workspace shares its version). Capture and replay both build theirs here.
    pub fn new(kind: RunKind, source: String, options: Vec<(String, String)>) -> Self {
        Self {
            kind,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            source,
            started_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            options,
        }
    }
}

/// What went wrong reading a recording, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: not a myrr recording (bad magic at byte 0)")]
    BadMagic { path: PathBuf },
    #[error("{path}: format version {found} is newer than this myrr understands ({supported}); upgrade myrr")]
    NewerVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error(
        "{path}: truncated at byte {offset}: {what} needs {needed} bytes, {available} present"
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{path}: corrupt {what} at byte {offset}: {detail}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: &'static str,
        detail: String,
    },
    #[error("{path}: read error at byte {offset}: {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        source: io::Error,
    },
}

impl FormatError {
    /// Byte offset of the damage, where there is one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            FormatError::Truncated { offset, .. }
            | FormatError::Corrupt { offset, .. }
            | FormatError::Io { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("cannot write recording: {0}")]
    Io(#[from] io::Error),
    #[error("cannot encode event: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

enum ToWriter {
    Block(Vec<u8>),
    Flush,
}

/// Streaming writer: memory stays at a few blocks whatever the run's length. Blocks are
/// compressed and written on a thread of their own, so encoding events (the caller's thread)
/// and zstd overlap.
pub struct RecordingWriter<W: Write + Send + 'static> {
    tx: Option<std::sync::mpsc::SyncSender<ToWriter>>,
    worker: Option<std::thread::JoinHandle<Result<W, io::Error>>>,
    /// Emptied block buffers back from the writer thread.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    block: Vec<u8>,
    count: u32,
    last_flush: Instant,
    events: u64,
}

/// zstd level of recordings: captures are kept, so smaller files are worth the CPU.
pub const LEVEL_DEFAULT: i32 = 3;
/// zstd level for a writer that shares the CPU with the load it measures (a replay's output):
/// half the compression CPU of level 3 for files about 5 % larger.
pub const LEVEL_FAST: i32 = 1;

impl RecordingWriter<BufWriter<File>> {
    pub fn create(path: &Path, header: &Header) -> Result<Self, WriteError> {
        Self::create_with_level(path, header, LEVEL_DEFAULT)
    }

    /// `level`: zstd compression level of the blocks.
    pub fn create_with_level(path: &Path, header: &Header, level: i32) -> Result<Self, WriteError> {
        let f = File::create(path)?;
        Self::with_level(BufWriter::new(f), header, level)
    }
}

/// Where events are encoded: the block in memory, appended to without `io::Write`'s error
/// plumbing and byte counting, which bincode's std writer goes through for every field.
struct BlockBuf<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for BlockBuf<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Compresses blocks into one reused buffer and writes them.
struct BlockCompressor {
    zstd: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl BlockCompressor {
    fn new(level: i32) -> io::Result<Self> {
        Ok(Self {
            zstd: zstd::bulk::Compressor::new(level)?,
            out: Vec::new(),
        })
    }

    fn write(&mut self, to: &mut impl Write, block: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out
            .reserve(zstd::zstd_safe::compress_bound(block.len()));
        self.zstd.compress_to_buffer(block, &mut self.out)?;
        let z = &self.out;
        to.write_all(&(z.len() as u32).to_le_bytes())?;
        to.write_all(&crc32fast::hash(z).to_le_bytes())?;
        to.write_all(z)
    }
}

impl<W: Write + Send + 'static> RecordingWriter<W> {
    pub fn new(out: W, header: &Header) -> Result<Self, WriteError> {
        Self::with_level(out, header, LEVEL_DEFAULT)
    }

    /// `level`: zstd compression level of the blocks.
    pub fn with_level(mut out: W, header: &Header, level: i32) -> Result<Self, WriteError> {
        let h = bincode::encode_to_vec(header, config())?;
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&(h.len() as u32).to_le_bytes())?;
        out.write_all(&crc32fast::hash(&h).to_le_bytes())?;
        out.write_all(&h)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<ToWriter>(2);
        // Written blocks come back to be filled again: a fresh buffer per block, freed on
        // another thread, made the allocator fault in and zero new pages over and over.
        let (spare_tx, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut compressor = BlockCompressor::new(level)?;
        let worker = std::thread::Builder::new()
            .name("myrr-writer".into())
            .spawn(move || -> Result<W, io::Error> {
                for msg in rx {
                    match msg {
                        ToWriter::Block(mut b) => {
                            compressor.write(&mut out, &b)?;
                            b.clear();
                            let _ = spare_tx.send(b);
                        }
                        ToWriter::Flush => out.flush()?,
                    }
                }
                out.flush()?;
                Ok(out)
            })?;
        let mut block = Vec::with_capacity(BLOCK_TARGET + 4096);
        block.extend_from_slice(&0u32.to_le_bytes());
        Ok(Self {
            tx: Some(tx),
            worker: Some(worker),
            spare,
            block,
            count: 0,
            last_flush: Instant::now(),
            events: 0,
        })
    }

    pub fn push(&mut self, event: &Event) -> Result<(), WriteError> {
        bincode::encode_into_writer(event, BlockBuf(&mut self.block), config())?;
        self.count += 1;
        self.events += 1;
        if self.block.len() >= BLOCK_TARGET {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the pending block if it is older than `max_age`; a live writer calls this at least
    /// once a second so a crash loses at most that much.
    pub fn flush_if_older(&mut self, max_age: Duration) -> Result<(), WriteError> {
        if self.last_flush.elapsed() >= max_age {
            self.seal()?;
            self.send(ToWriter::Flush)?;
        }
        Ok(())
    }

    pub fn events_written(&self) -> u64 {
        self.events
    }

    /// Hands a message to the writer thread; if it has stopped, its error comes back.
    fn send(&mut self, msg: ToWriter) -> Result<(), WriteError> {
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(msg).is_ok())
            .unwrap_or(false);
        if sent {
            return Ok(());
        }
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => Err(WriteError::Io(e)),
            _ => Err(WriteError::Io(io::Error::other(
                "recording writer thread stopped",
            ))),
        }
    }

    fn seal(&mut self) -> Result<(), WriteError> {
        self.last_flush = Instant::now();
        if self.count == 0 {
            return Ok(());
        }
        self.block[..4].copy_from_slice(&self.count.to_le_bytes());
        let mut next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK_TARGET + 4096));
        next.extend_from_slice(&0u32.to_le_bytes());
        let full = std::mem::replace(&mut self.block, next);
        self.count = 0;
        self.send(ToWriter::Block(full))
    }

    /// Seals the last block, waits for everything to be written and returns the inner writer.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.seal()?;
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => Ok(r?),
            _ => Err(WriteError::Io(io::Error::other(
                "recording writer thread panicked",
            ))),
        }
    }
}

/// What [`RecordingReader::skim`] found.
#[derive(Debug, Default)]
pub struct Skim {
    /// The events of the first block.
    pub first: Vec<Event>,
    /// The events of the last block (empty when the file has one block).
    pub last: Vec<Event>,
    /// The damage that stopped the pass, if any.
    pub damage: Option<FormatError>,
}

/// Streaming reader: one block in memory at a time. Yields events, then at most one error
/// (the damage that stopped it), then nothing.
pub struct RecordingReader<R: Read> {
    input: R,
    path: PathBuf,
    header: Header,
    offset: u64,
    block: Vec<u8>,
    pos: usize,
    left_in_block: u32,
    block_offset: u64,
    done: bool,
    /// One decompression context for the whole file.
    dctx: Option<zstd::bulk::Decompressor<'static>>,
    /// The compressed bytes of the current block (reused: a fresh buffer per block made the
    /// allocator fault in and zero new pages over and over).
    compressed: Vec<u8>,
}

impl RecordingReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        let f = File::open(path).map_err(|source| FormatError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::new(BufReader::with_capacity(256 * 1024, f), path)
    }
}

/// Reads up to `buf.len()` bytes; returns how many (short only at end of input).
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> RecordingReader<R> {
    /// `path` is only used to name the file in errors.
    pub fn new(mut input: R, path: &Path) -> Result<Self, FormatError> {
        let path = path.to_owned();
        let io_err = |offset, source| FormatError::Io {
            path: path.clone(),
            offset,
            source,
        };
        let mut fixed = [0u8; 18];
        let n = read_full(&mut input, &mut fixed).map_err(|e| io_err(0, e))?;
        let magic_ok = if n >= 8 {
            &fixed[..8] == MAGIC
        } else {
            n > 0 && MAGIC.starts_with(&fixed[..n])
        };
        if !magic_ok {
            return Err(FormatError::BadMagic { path });
        }
        if n < 18 {
            return Err(FormatError::Truncated {
                path,
                offset: n as u64,
                what: "file header",
                needed: 18,
                available: n as u64,
            });
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version > FORMAT_VERSION {
            return Err(FormatError::NewerVersion {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version < OLDEST_READABLE {
            return Err(FormatError::Corrupt {
                path,
                offset: 8,
                what: "format version",
                detail: format!("version {version} was never written by myrr"),
            });
        }
        let hlen = u32::from_le_bytes(fixed[10..14].try_into().unwrap());
        let hcrc = u32::from_le_bytes(fixed[14..18].try_into().unwrap());
        if hlen > 1024 * 1024 {
            return Err(FormatError::Corrupt {
                path,
                offset: 10,
                what: "header length",
                detail: format!("{hlen} bytes is more than any header"),
            });
        }
        let mut h = vec![0u8; hlen as usize];
        let got = read_full(&mut input, &mut h).map_err(|e| io_err(18, e))?;
        if got < h.len() {
            return Err(FormatError::Truncated {
                path,
                offset: 18 + got as u64,
                what: "run header",
                needed: hlen as u64,
                available: got as u64,
            });
        }
        if crc32fast::hash(&h) != hcrc {
            return Err(FormatError::Corrupt {
                path,
                offset: 18,
                what: "run header",
                detail: "checksum mismatch".into(),
            });
        }
        let (header, _): (Header, usize) =
            bincode::decode_from_slice(&h, config()).map_err(|e| FormatError::Corrupt {
                path: path.clone(),
                offset: 18,
                what: "run header",
                detail: e.to_string(),
            })?;
        Ok(Self {
            input,
            path,
            header,
            offset: 18 + hlen as u64,
            block: Vec::new(),
            pos: 0,
            left_in_block: 0,
            block_offset: 0,
            done: false,
            dctx: None,
            compressed: Vec::new(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn next_block(&mut self) -> Result<bool, FormatError> {
        let Some(at) = self.read_block()? else {
            return Ok(false);
        };
        self.unpack_block(at)?;
        Ok(true)
    }

    /// Reads the next block's compressed bytes into `compressed` and checks its length and
    /// checksum; its offset, or `None` at the end of the file.
    fn read_block(&mut self) -> Result<Option<u64>, FormatError> {
        let at = self.offset;
        let mut fixed = [0u8; 8];
        let n = read_full(&mut self.input, &mut fixed).map_err(|source| FormatError::Io {
            path: self.path.clone(),
            offset: at,
            source,
        })?;
        if n == 0 {
            return Ok(None);
        }
        if n < 8 {
            return Err(FormatError::Truncated {
                path: self.path.clone(),
                offset: at,
                what: "block header",
                needed: 8,
                available: n as u64,
            });
        }
        let len = u32::from_le_bytes(fixed[..4].try_into().unwrap());
        let crc = u32::from_le_bytes(fixed[4..].try_into().unwrap());
        if len == 0 || len > MAX_BLOCK {
            return Err(FormatError::Corrupt {
                path: self.path.clone(),
                offset: at,
                what: "block length",
                detail: format!("{len} bytes is outside 1..={MAX_BLOCK}"),
            });
        }
        let mut z = std::mem::take(&mut self.compressed);
        z.resize(len as usize, 0);
        let got = read_full(&mut self.input, &mut z).map_err(|source| FormatError::Io {
            path: self.path.clone(),
            offset: at + 8,
            source,
        })?;
        if got < z.len() {
            return Err(FormatError::Truncated {
                path: self.path.clone(),
                offset: at,
                what: "block",
                needed: len as u64 + 8,
                available: got as u64 + 8,
            });
        }
        if crc32fast::hash(&z) != crc {
            return Err(FormatError::Corrupt {
                path: self.path.clone(),
                offset: at,
                what: "block",
                detail: "checksum mismatch".into(),
            });
        }
        self.offset = at + 8 + len as u64;
        self.compressed = z;
        Ok(Some(at))
    }

    /// Decompresses `compressed`, the block at offset `at`, into `block`.
    fn unpack_block(&mut self, at: u64) -> Result<(), FormatError> {
        let z = std::mem::take(&mut self.compressed);
        let corrupt = |detail: String| FormatError::Corrupt {
            path: self.path.clone(),
            offset: at,
            what: "block",
            detail,
        };
        // A block decompresses to at most BLOCK_TARGET plus one event; cap well above that.
        if self.dctx.is_none() {
            self.dctx =
                Some(zstd::bulk::Decompressor::new().map_err(|e| corrupt(format!("zstd: {e}")))?);
        }
        // The frame says its content size; reuse the block buffer at that size.
        let size = match zstd::zstd_safe::get_frame_content_size(&z) {
            Ok(Some(n)) if n <= MAX_BLOCK as u64 => n as usize,
            Ok(Some(n)) => {
                return Err(corrupt(format!(
                    "block of {n} bytes is larger than {MAX_BLOCK}"
                )))
            }
            _ => return Err(corrupt("block without a valid zstd frame header".into())),
        };
        let dctx = self.dctx.as_mut().expect("just set");
        self.block.clear();
        self.block.reserve(size);
        let n = dctx
            .decompress_to_buffer(&z, &mut self.block)
            .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
        if n != size {
            return Err(corrupt(format!(
                "decompressed to {n} bytes, header says {size}"
            )));
        }
        if self.block.len() < 4 {
            return Err(corrupt("block shorter than its event count".into()));
        }
        self.left_in_block = u32::from_le_bytes(self.block[..4].try_into().unwrap());
        self.pos = 4;
        self.block_offset = at;
        self.compressed = z;
        Ok(())
    }

    /// A quick pass over the rest of the file: every block's length and checksum are checked,
    /// but only the first and the last block are decompressed and decoded (what a replay needs
    /// before it starts: where the recording begins and ends, and whether it is damaged).
    /// Decompressing every block here cost a replay's dispatcher as much as its own reading.
    pub fn skim(mut self) -> Skim {
        let mut skim = Skim::default();
        // The last block seen after the first: its compressed bytes and offset.
        let mut last: Option<(Vec<u8>, u64)> = None;
        let mut blocks = 0u64;
        loop {
            let at = match self.read_block() {
                Ok(Some(at)) => at,
                Ok(None) => break,
                Err(e) => {
                    skim.damage = Some(e);
                    break;
                }
            };
            blocks += 1;
            if blocks == 1 {
                match self.decode_block(at) {
                    Ok(evs) => skim.first = evs,
                    Err(e) => {
                        skim.damage = Some(e);
                        return skim;
                    }
                }
            } else {
                let mut keep = last.take().map(|l| l.0).unwrap_or_default();
                std::mem::swap(&mut keep, &mut self.compressed);
                last = Some((keep, at));
            }
        }
        if let Some((bytes, at)) = last {
            self.compressed = bytes;
            match self.decode_block(at) {
                Ok(evs) => skim.last = evs,
                Err(e) => skim.damage = skim.damage.or(Some(e)),
            }
        }
        skim
    }

    /// Decompresses and decodes every event of the block just read (at offset `at`).
    fn decode_block(&mut self, at: u64) -> Result<Vec<Event>, FormatError> {
        self.unpack_block(at)?;
        self.block_events(&self.block, self.left_in_block, self.block_offset)
    }

    /// Decodes the `count` events of a decompressed block.
    fn block_events(
        &self,
        block: &[u8],
        count: u32,
        offset: u64,
    ) -> Result<Vec<Event>, FormatError> {
        let mut pos = 4;
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (ev, used): (Event, usize) =
                bincode::borrow_decode_from_slice(&block[pos..], config()).map_err(|e| {
                    FormatError::Corrupt {
                        path: self.path.clone(),
                        offset,
                        what: "event",
                        detail: format!("at byte {pos} of the block: {e}"),
                    }
                })?;
            pos += used;
            out.push(ev);
        }
        Ok(out)
    }

    fn next_event(&mut self) -> Result<Option<Event>, FormatError> {
        while self.left_in_block == 0 {
            if self.pos != self.block.len() && !self.block.is_empty() {
                return Err(FormatError::Corrupt {
                    path: self.path.clone(),
                    offset: self.block_offset,
                    what: "block",
                    detail: format!("{} bytes after its last event", self.block.len() - self.pos),
                });
            }
            self.block.clear();
            self.pos = 0;
            if !self.next_block()? {
                return Ok(None);
            }
        }
        let (ev, used): (Event, usize) =
            bincode::borrow_decode_from_slice(&self.block[self.pos..], config()).map_err(|e| {
                FormatError::Corrupt {
                    path: self.path.clone(),
                    offset: self.block_offset,
                    what: "event",
                    detail: format!("at byte {} of the block: {e}", self.pos),
                }
            })?;
        self.pos += used;
        self.left_in_block -= 1;
        Ok(Some(ev))
    }
}

impl<R: Read> Iterator for RecordingReader<R> {
    type Item = Result<Event, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_event() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Byte offsets of the blocks of a whole file held in memory, read from the block headers
/// alone (nothing is checked): for tests and tools that damage a block on purpose.
pub fn block_offsets(file: &[u8]) -> Vec<usize> {
    let fixed = MAGIC.len() + 2 + 4 + 4;
    let Some(len) = file.get(fixed - 8..fixed - 4) else {
        return Vec::new();
    };
    let mut at = fixed + u32::from_le_bytes(len.try_into().unwrap()) as usize;
    let mut out = Vec::new();
    while let Some(len) = file.get(at..at + 4) {
        out.push(at);
        at += 8 + u32::from_le_bytes(len.try_into().unwrap()) as usize;
    }
    out
}

/// Session ids of a run made of several capture files: each file numbers its sessions from 1,
/// so the file's position in the run goes into the high bits. Replay runs already carry
/// run-wide ids and keep them. Replay and analyze both use this, so their joins agree.
pub fn run_session_id(kind: RunKind, file_index: usize, session: u64) -> u64 {
    match kind {
        RunKind::Capture => ((file_index as u64) << 40) | session,
        RunKind::Replay => session,
    }
}
