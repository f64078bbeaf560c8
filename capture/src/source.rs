//! Packet sources (pcap/pcapng files, live interfaces) and the link layers they carry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Reads a pcap or pcapng file and hands every frame to `each(ts_us, link, frame)`.
/// Returns the number of packets read; a damaged file reports where, after every packet before
/// the damage was handed on.
pub fn read_file(
    path: &Path,
    filter: Option<&str>,
    mut each: impl FnMut(u64, LinkType, &[u8]),
) -> Result<u64, SourceError> {
    let mut cap = pcap::Capture::from_file(path).map_err(|e| SourceError::Open {
        path: path.to_owned(),
        msg: e.to_string(),
    })?;
    let dlt = cap.get_datalink();
    let link = LinkType::from_dlt(dlt.0).ok_or_else(|| SourceError::LinkType {
        path: path.to_owned(),
        dlt: dlt.0,
        name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
    })?;
    if let Some(f) = filter {
        cap.filter(f, true).map_err(|e| SourceError::Open {
            path: path.to_owned(),
            msg: format!("bad filter {f:?}: {e}"),
        })?;
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut n = 0u64;
    let mut offset = 24u64;
    loop {
        match cap.next_packet() {
            Ok(p) => {
                n += 1;
                offset += 16 + p.header.caplen as u64;
                each(ts_us(p.header), link, p.data);
            }
            Err(pcap::Error::NoMorePackets) => return Ok(n),
            Err(e) => {
                return Err(SourceError::Damaged {
                    path: path.to_owned(),
                    packet: n,
                    offset,
                    size,
                    msg: e.to_string(),
                })
            }
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

/// Live counters reported at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveStats {
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
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

/// A live capture, open and filtered, not reading yet.
pub struct LiveSource {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
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
/// creates any output.
pub fn open_live(opts: &LiveOptions) -> Result<LiveSource, SourceError> {
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
    Ok(LiveSource { cap, link })
}

/// Captures on an opened interface until `stop` is set or the duration is over. `each` gets
/// every frame; `tick` runs at least every 100 ms (to flush output).
///
/// A dedicated thread only moves frames out of the kernel ring into batches, so decoding
/// (on the calling thread) never makes the kernel drop packets; the batch queue is bounded.
pub fn capture_live(
    source: LiveSource,
    opts: &LiveOptions,
    stop: &AtomicBool,
    mut each: impl FnMut(u64, LinkType, &[u8]),
    mut tick: impl FnMut(),
) -> Result<LiveStats, SourceError> {
    let live_err = |msg: String| live_err(&opts.iface, msg);
    let LiveSource { mut cap, link } = source;
    let started = Instant::now();
    let duration = opts.duration;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(256);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<pcap::Stat, pcap::Error> {
            let mut batch = Batch::new();
            let mut last_send = Instant::now();
            loop {
                if stop.load(Ordering::Relaxed) || duration.is_some_and(|d| started.elapsed() >= d)
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
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => {
                    for &(ts, at, len) in &b.frames {
                        each(ts, link, &b.data[at..at + len]);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            tick();
        }
        let s = reader
            .join()
            .map_err(|_| live_err("capture thread failed".into()))?
            .map_err(|e| live_err(e.to_string()))?;
        Ok(LiveStats {
            received: s.received as u64,
            dropped: s.dropped as u64,
            if_dropped: s.if_dropped as u64,
        })
    })
}
