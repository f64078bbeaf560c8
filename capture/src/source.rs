//! Packet sources (pcap/pcapng files, live interfaces) and the link layers they carry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{EtherType, LaxSlicedPacket};

/// Link-layer framing of captured frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Linux "cooked" capture v1 (any interface).
    LinuxSll,
    /// Linux "cooked" capture v2.
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in host byte order.
    Null,
    /// OpenBSD loopback: the family in network byte order.
    Loop,
    /// Raw IPv4 or IPv6.
    Raw,
}

impl LinkType {
    /// From a libpcap DLT/LINKTYPE value.
    pub fn from_dlt(dlt: i32) -> Option<Self> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            12 | 14 | 101 | 228 | 229 => LinkType::Raw,
            _ => return None,
        })
    }
}

/// Slices a frame down to its IP and TCP layers; `None` when it is not IP.
pub fn slice(link: LinkType, frame: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(frame).ok(),
        LinkType::LinuxSll => {
            let proto = u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]);
            Some(LaxSlicedPacket::from_ether_type(
                EtherType(proto),
                frame.get(16..)?,
            ))
        }
        LinkType::LinuxSll2 => {
            let proto = u16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
            Some(LaxSlicedPacket::from_ether_type(
                EtherType(proto),
                frame.get(20..)?,
            ))
        }
        LinkType::Null | LinkType::Loop | LinkType::Raw => {
            let ip = if link == LinkType::Raw {
                frame
            } else {
                frame.get(4..)?
            };
            LaxSlicedPacket::from_ip(ip).ok()
        }
    }
}

/// What stopped a packet source, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("{path}: cannot open capture file: {msg}")]
    Open { path: PathBuf, msg: String },
    #[error("{path}: link type {dlt} ({name}) is not supported; supported: Ethernet, Linux SLL v1/v2, BSD NULL/loopback, raw IP")]
    LinkType {
        path: PathBuf,
        dlt: i32,
        name: String,
    },
    #[error("{path}: damaged after packet {packet} (byte {offset} of {size}): {msg}; the {packet} packets before it were decoded")]
    Damaged {
        path: PathBuf,
        packet: u64,
        offset: u64,
        size: u64,
        msg: String,
    },
    #[error("cannot capture on interface {iface}: {msg}{hint}")]
    Live {
        iface: String,
        msg: String,
        hint: &'static str,
    },
}

const PERMISSION_HINT: &str = "\n  live capture needs root or the capabilities to open raw sockets; grant them with\n  sudo setcap cap_net_raw,cap_net_admin=eip $(command -v myrr)\n  or run myrr capture as root";

/// One captured frame; it borrows from its source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, µs since the Unix epoch.
    pub ts_us: u64,
    pub link: LinkType,
    pub frame: &'a [u8],
}

/// What a [`PacketSource`] has next.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(Packet<'a>),
    /// Nothing for now: a live source says so after 100 ms without packets, so the caller
    /// gets to do its timed work (sealing output) on a quiet link.
    Idle,
    /// The source has no more packets.
    End,
}

/// Packets a live source lost, as libpcap counts them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Dropped by the kernel: the capture buffer was full.
    pub kernel: u64,
    /// Dropped by the interface or its driver.
    pub interface: u64,
}

/// Where packets come from: capture files, a live interface, or frames a test builds.
///
/// An error ends the current input, not the source: calling again goes on with the next input
/// (the next file), or says [`Next::End`].
pub trait PacketSource {
    fn next_packet(&mut self) -> Result<Next<'_>, SourceError>;

    /// Whether packets come as they happen, so that output must be sealed as it goes: a crash
    /// of a live capture must not lose more than a second.
    fn is_live(&self) -> bool {
        false
    }

    /// Packets lost before they reached the source; final once it said [`Next::End`].
    fn drops(&self) -> Drops {
        Drops::default()
    }
}

/// pcap or pcapng files, read one after the other (each through `filter`, when there is one).
/// A file that cannot be opened or is damaged is an error at that point; the next call goes
/// on with the next file.
pub struct PcapFiles {
    pending: std::vec::IntoIter<PathBuf>,
    filter: Option<String>,
    current: Option<PcapFile>,
    /// `current` has no more packets: it is closed at the next call.
    finished: bool,
}

/// An open capture file and how far it has been read.
struct PcapFile {
    path: PathBuf,
    cap: pcap::Capture<pcap::Offline>,
    link: LinkType,
    size: u64,
    packets: u64,
    offset: u64,
}

impl PcapFiles {
    pub fn new(paths: impl IntoIterator<Item = PathBuf>, filter: Option<String>) -> Self {
        Self {
            pending: paths.into_iter().collect::<Vec<_>>().into_iter(),
            filter,
            current: None,
            finished: false,
        }
    }
}

impl PcapFile {
    fn open(path: PathBuf, filter: Option<&str>) -> Result<Self, SourceError> {
        let mut cap = pcap::Capture::from_file(&path).map_err(|e| SourceError::Open {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let dlt = cap.get_datalink();
        let Some(link) = LinkType::from_dlt(dlt.0) else {
            return Err(SourceError::LinkType {
                path,
                dlt: dlt.0,
                name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
            });
        };
        if let Some(f) = filter {
            cap.filter(f, true).map_err(|e| SourceError::Open {
                path: path.clone(),
                msg: format!("bad filter {f:?}: {e}"),
            })?;
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path,
            cap,
            link,
            size,
            packets: 0,
            offset: 24,
        })
    }
}

impl PacketSource for PcapFiles {
    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        // The file that ended (or broke) on the last call is closed now, before anything is
        // lent: the frame handed out below borrows the open file, so a call cannot both lend
        // one and move on to the next file (it says `Idle` at a file's end instead).
        if self.finished {
            self.finished = false;
            self.current = None;
        }
        if self.current.is_none() {
            let Some(path) = self.pending.next() else {
                return Ok(Next::End);
            };
            self.current = Some(PcapFile::open(path, self.filter.as_deref())?);
        }
        let Some(file) = &mut self.current else {
            return Ok(Next::End);
        };
        match file.cap.next_packet() {
            Ok(p) => {
                file.packets += 1;
                file.offset += 16 + p.header.caplen as u64;
                Ok(Next::Packet(Packet {
                    ts_us: ts_us(p.header),
                    link: file.link,
                    frame: p.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => {
                self.finished = true;
                Ok(Next::Idle)
            }
            Err(e) => {
                self.finished = true;
                Err(SourceError::Damaged {
                    path: file.path.clone(),
                    packet: file.packets,
                    offset: file.offset,
                    size: file.size,
                    msg: e.to_string(),
                })
            }
        }
    }
}

/// Reads a pcap or pcapng file and hands every frame to `each(ts_us, link, frame)`.
/// Returns the number of packets read; a damaged file reports where, after every packet before
/// the damage was handed on.
pub fn read_file(
    path: &Path,
    filter: Option<&str>,
    mut each: impl FnMut(u64, LinkType, &[u8]),
) -> Result<u64, SourceError> {
    let mut file = PcapFiles::new([path.to_owned()], filter.map(str::to_owned));
    let mut n = 0;
    loop {
        match file.next_packet()? {
            Next::Packet(p) => {
                n += 1;
                each(p.ts_us, p.link, p.frame);
            }
            Next::Idle => {}
            Next::End => return Ok(n),
        }
    }
}

/// Capture timestamp in µs since the epoch (`time_t` is not i64 everywhere).
#[allow(clippy::unnecessary_cast)]
fn ts_us(h: &pcap::PacketHeader) -> u64 {
    let us = h.ts.tv_sec as i64 * 1_000_000 + h.ts.tv_usec as i64;
    us.max(0) as u64
}

/// Live capture settings.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub iface: String,
    pub filter: String,
    /// Kernel buffer in bytes.
    pub buffer: i32,
    pub duration: Option<Duration>,
}

/// Frames read together by the capture thread, handed to the decoding thread at once.
struct Batch {
    data: Vec<u8>,
    frames: Vec<(u64, usize, usize)>,
}

impl Batch {
    fn new() -> Self {
        Self {
            data: Vec::with_capacity(1 << 20),
            frames: Vec::with_capacity(1024),
        }
    }
}

/// A live capture on an interface, through libpcap.
///
/// A thread of its own only moves frames out of the kernel ring into batches, so decoding (on
/// the caller's thread) never makes the kernel drop packets; the batch queue is bounded. The
/// thread starts at the first read and stops when the caller's `stop` flag is set or the
/// duration is over; the source then says [`Next::End`] once the batches read are handed on.
pub struct LiveSource {
    iface: String,
    link: LinkType,
    duration: Option<Duration>,
    stop: Arc<AtomicBool>,
    /// The open capture, until the first read hands it to the reader thread.
    cap: Option<pcap::Capture<pcap::Active>>,
    reader: Option<Reader>,
    /// Set when the source is dropped before the end: the reader thread stops too.
    dropped: Arc<AtomicBool>,
    batch: Batch,
    /// The next frame of `batch` to hand on.
    at: usize,
    drops: Drops,
}

/// The thread reading the kernel ring, and its batches.
struct Reader {
    batches: std::sync::mpsc::Receiver<Batch>,
    thread: std::thread::JoinHandle<Result<pcap::Stat, pcap::Error>>,
}

fn live_err(iface: &str, msg: String) -> SourceError {
    let denied = msg.contains("ermission") || msg.contains("not permitted");
    SourceError::Live {
        iface: iface.to_string(),
        msg,
        hint: if denied { PERMISSION_HINT } else { "" },
    }
}

/// Opens the interface (this is where missing rights show), so a caller can fail before it
/// creates any output. Reading starts at the first [`PacketSource::next_packet`] and stops
/// once `stop` is set or `opts.duration` is over.
pub fn open_live(opts: &LiveOptions, stop: Arc<AtomicBool>) -> Result<LiveSource, SourceError> {
    let live_err = |msg: String| live_err(&opts.iface, msg);
    let inactive =
        pcap::Capture::from_device(opts.iface.as_str()).map_err(|e| live_err(e.to_string()))?;
    // Not immediate mode: on Linux, libpcap then uses TPACKET_V2, whose ring has one
    // snaplen-sized slot per packet (a 64 MiB buffer holds only 256 frames of 256 KiB), and
    // loopback bursts overflow it. TPACKET_V3 packs frames into blocks handed over at least
    // every `timeout` ms: the same buffer holds tens of thousands of packets, and 100 ms of
    // delivery latency does not matter here since timestamps come from the kernel.
    // Non-blocking: libpcap's read timeout does not wake a reader that sees no packets at
    // all, and we must notice Ctrl-C and the duration limit on an idle link.
    let mut cap = inactive
        .snaplen(262_144)
        .buffer_size(opts.buffer)
        .promisc(false)
        .timeout(100)
        .open()
        .and_then(|c| c.setnonblock())
        .map_err(|e| live_err(e.to_string()))?;
    cap.filter(&opts.filter, true)
        .map_err(|e| live_err(format!("bad filter {:?}: {e}", opts.filter)))?;
    let dlt = cap.get_datalink();
    let link = LinkType::from_dlt(dlt.0)
        .ok_or_else(|| live_err(format!("link type {} is not supported", dlt.0)))?;
    Ok(LiveSource {
        iface: opts.iface.clone(),
        link,
        duration: opts.duration,
        stop,
        cap: Some(cap),
        reader: None,
        dropped: Arc::new(AtomicBool::new(false)),
        batch: Batch::new(),
        at: 0,
        drops: Drops::default(),
    })
}

impl LiveSource {
    fn start_reader(&self, mut cap: pcap::Capture<pcap::Active>) -> Result<Reader, SourceError> {
        let started = Instant::now();
        let duration = self.duration;
        let stop = self.stop.clone();
        let dropped = self.dropped.clone();
        let (tx, batches) = std::sync::mpsc::sync_channel::<Batch>(256);
        let read = move || -> Result<pcap::Stat, pcap::Error> {
            let mut batch = Batch::new();
            let mut last_send = Instant::now();
            loop {
                if stop.load(Ordering::Relaxed)
                    || dropped.load(Ordering::Relaxed)
                    || duration.is_some_and(|d| started.elapsed() >= d)
                {
                    break;
                }
                let idle = match cap.next_packet() {
                    Ok(p) => {
                        let at = batch.data.len();
                        batch.data.extend_from_slice(p.data);
                        batch.frames.push((ts_us(p.header), at, p.data.len()));
                        false
                    }
                    Err(pcap::Error::TimeoutExpired) => true,
                    Err(e) => return Err(e),
                };
                let full = batch.frames.len() >= 1024 || batch.data.len() >= (1 << 20);
                if full
                    || (!batch.frames.is_empty()
                        && (idle || last_send.elapsed() >= Duration::from_millis(50)))
                {
                    if tx
                        .send(std::mem::replace(&mut batch, Batch::new()))
                        .is_err()
                    {
                        break;
                    }
                    last_send = Instant::now();
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if !batch.frames.is_empty() {
                let _ = tx.send(batch);
            }
            cap.stats()
        };
        let thread = std::thread::Builder::new()
            .name("myrr-pcap".into())
            .spawn(read)
            .map_err(|e| live_err(&self.iface, format!("cannot start the capture thread: {e}")))?;
        Ok(Reader { batches, thread })
    }

    /// The reader thread has stopped: its counters, or what stopped it.
    fn join_reader(&mut self, reader: Reader) -> Result<(), SourceError> {
        drop(reader.batches);
        let s = reader
            .thread
            .join()
            .map_err(|_| live_err(&self.iface, "capture thread failed".into()))?
            .map_err(|e| live_err(&self.iface, e.to_string()))?;
        self.drops = Drops {
            kernel: s.dropped as u64,
            interface: s.if_dropped as u64,
        };
        Ok(())
    }
}

impl PacketSource for LiveSource {
    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        if self.at >= self.batch.frames.len() {
            if let Some(cap) = self.cap.take() {
                self.reader = Some(self.start_reader(cap)?);
            }
            let got = match &self.reader {
                Some(r) => r.batches.recv_timeout(Duration::from_millis(100)),
                None => return Ok(Next::End),
            };
            match got {
                Ok(b) => {
                    self.batch = b;
                    self.at = 0;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(Next::Idle),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(r) = self.reader.take() {
                        self.join_reader(r)?;
                    }
                    return Ok(Next::End);
                }
            }
        }
        let Some(&(ts_us, at, len)) = self.batch.frames.get(self.at) else {
            return Ok(Next::Idle);
        };
        self.at += 1;
        Ok(Next::Packet(Packet {
            ts_us,
            link: self.link,
            frame: self.batch.data.get(at..at + len).unwrap_or_default(),
        }))
    }

    fn is_live(&self) -> bool {
        true
    }

    fn drops(&self) -> Drops {
        self.drops
    }
}

impl Drop for LiveSource {
    /// Stopped before the end (the output failed): the reader thread stops too.
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            self.dropped.store(true, Ordering::Relaxed);
            drop(r.batches);
            let _ = r.thread.join();
        }
    }
}
