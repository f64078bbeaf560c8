//! myrr-capture: from packets to [`Event`]s.
//!
//! - [`source`]: packet sources behind [`PacketSource`] — pcap/pcapng files
//!   ([`source::PcapFiles`]) and live interfaces through libpcap ([`source::LiveSource`]) —
//!   and the link layers they carry ([`LinkType`]).
//! - [`tcp`]: per-direction TCP reassembly ([`tcp::Reassembler`], [`tcp::SeqNum`]).
//! - [`Capture`]: the pipeline that ties them together: feed it packets, take events out.
//!   Each flow's bytes go to a [`myrr_wire::conn::Conn`], the MySQL decoder shared with replay.
//! - [`tls`]: TLS sessions read with a key log ([`tls::KeyLog`]): where a flow's TLS starts,
//!   records, key schedule, decryption; the plaintext goes to the flow's `Conn`.
//! - [`run`]: a whole capture, source to [`EventSink`] (a `RecordingWriter`): when output is
//!   sealed, what a damaged input leaves; returns a [`Summary`].
//!
//! Direction comes from the server ports the user names, never from addresses: client and
//! server may share an IP. Memory is bounded per flow (reassembly queue, largest packet) and in
//! the number of flows.

pub mod backfill;
mod run;
pub mod source;
pub mod tcp;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use myrr_recording::{Direction, EndReason, Event, SessionId};

use myrr_wire::conn::{Conn, Ctx, ShapeSampler};
use myrr_wire::infer::{InferStats, Inference};
pub use myrr_wire::DecodeStats;
pub use run::{
    run, run_with_plaintext, CaptureError, EventSink, PlaintextFeed, Summary, SEAL_EVERY,
};
pub use source::{LinkType, PacketSource};
use tcp::{Delivery, Reassembler, SeqNum};

/// What a capture counted; printed at the end of `myrr capture`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub non_tcp_packets: u64,
    pub other_port_packets: u64,
    /// Packets of the capture's own connections (`--server`'s monitor), left out.
    pub own_packets: u64,
    pub undecodable_packets: u64,
    pub flows: u64,
    pub flows_evicted: u64,
    pub retransmitted_bytes: u64,
    /// Data segments out of any window of their flow, with no SYN: a new connection on the
    /// same addresses and ports. The old session was ended and a new flow started.
    pub streams_restarted: u64,
    /// What the MySQL decoder counted: sessions, exchanges, gaps, anomalies.
    pub decode: DecodeStats,
    /// EXECUTEs of statements prepared before the capture, decoded from another session's
    /// PREPARE (see [`myrr_wire::infer`]).
    pub inferred: InferStats,
    /// Answers whose first rows were kept (the first of each statement shape), and answers
    /// not kept because too many shapes were (see [`myrr_wire::conn::ShapeSampler`]).
    pub row_samples: u64,
    pub row_sample_shapes_over_limit: u64,
    /// Live capture: packets the kernel or the interface dropped.
    pub kernel_drops: u64,
    pub interface_drops: u64,
    /// TLS sessions read with a key log (all zero without one).
    pub tls: tls::TlsStats,
    /// TLS plaintext read inside the server (`--tls-probe`): chunks and bytes decoded.
    pub tls_plaintext_chunks: u64,
    pub tls_plaintext_bytes: u64,
    /// Plaintext bytes the probe lost (each loss is a gap in its session).
    pub tls_plaintext_lost: u64,
    /// Plaintext of a connection already decoded in the clear or counted encrypted, or held
    /// too long for a handshake that never came: not decoded.
    pub tls_plaintext_unused: u64,
    /// Secrets the server derived (`--tls-probe`) for a connection whose handshake the
    /// capture is reading, and those for one it is not (its SYN was not captured, or it is
    /// not TLS any more): not used.
    pub tls_secrets: u64,
    pub tls_secrets_unused: u64,
}

/// A secret of one TLS connection's handshake, as the server derived it (`--tls-probe`): the
/// connection's packets are read with it.
#[derive(Debug, Clone)]
pub struct Secret {
    /// When the server derived it, µs since the Unix epoch (as packet times).
    pub ts_us: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub kind: tls::SecretKind,
    pub secret: Vec<u8>,
}

/// What the server's TLS library told (`--tls-probe`).
#[derive(Debug, Clone)]
pub enum FromServer {
    /// Plaintext of a session whose handshake was not seen.
    Plaintext(Plaintext),
    /// A secret of a session whose handshake was seen.
    Secret(Secret),
}

impl FromServer {
    /// When the server had it.
    pub fn ts_us(&self) -> u64 {
        match self {
            FromServer::Plaintext(p) => p.ts_us,
            FromServer::Secret(s) => s.ts_us,
        }
    }
}

/// Plaintext of one TLS connection, read inside the server (`--tls-probe`).
#[derive(Debug, Clone)]
pub struct Plaintext {
    /// When the server had it, µs since the Unix epoch (as packet times).
    pub ts_us: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub direction: Direction,
    pub data: Vec<u8>,
    /// Bytes of this connection and direction lost just before these.
    pub lost_before: u64,
}

/// Limits and choices of a capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Server ports: a packet to or from one of them is MySQL traffic.
    pub server_ports: Vec<u16>,
    /// Out-of-order bytes queued per flow direction before the missing ones count as lost.
    pub reorder_limit: usize,
    /// Largest logical MySQL packet kept (bigger ones are skipped and counted).
    pub max_packet: usize,
    /// Flows tracked at once; the longest idle are ended beyond it.
    pub max_flows: usize,
    /// A flow with no packet for this long (capture time) is ended.
    pub idle_timeout_us: u64,
    /// Asked once per flow that starts without a handshake (`--server`, `--backfill`).
    pub server_view: Option<Arc<Mutex<dyn backfill::ServerView>>>,
    /// Client addresses (as the server sees them) of connections the capture made itself:
    /// their packets are left out.
    pub own_clients: Vec<SocketAddr>,
    /// Keep the first rows of the first answers of each statement shape (`RowSample`
    /// events), so that reports can show differing rows.
    pub row_samples: bool,
    /// TLS sessions' plaintext comes from inside the server ([`Capture::plaintext`]): a
    /// connection's SSLRequest waits for it instead of counting the session encrypted.
    pub tls_plaintext: bool,
    /// The server tells the secrets of the TLS sessions it sets up ([`Capture::secret`]): a
    /// new connection's TLS is read from its packets with them.
    pub tls_secrets: bool,
    /// Secrets to read TLS sessions with (`--keylog`, pcapng secrets blocks). Without it, TLS
    /// sessions are counted encrypted and no TLS code runs.
    pub keylog: Option<Arc<tls::KeyLog>>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            server_ports: vec![3306],
            reorder_limit: 4 << 20,
            max_packet: 64 << 20,
            max_flows: 100_000,
            idle_timeout_us: 15 * 60 * 1_000_000,
            server_view: None,
            own_clients: Vec::new(),
            row_samples: true,
            tls_plaintext: false,
            tls_secrets: false,
            keylog: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    client: SocketAddr,
    server: SocketAddr,
}

struct Flow {
    conn: Conn,
    c2s: Reassembler,
    s2c: Reassembler,
    last_us: u64,
    fin_c2s: bool,
    fin_s2c: bool,
    client_isn: Option<u32>,
    /// Its TLS plaintext comes from the server ([`Capture::plaintext`]): packets' payloads
    /// (TLS records) are not decoded.
    probed: bool,
    /// Plaintext that came before the packets' SSLRequest was decoded.
    early: Vec<Plaintext>,
    /// A mid-stream probed flow's client plaintext, waiting for the server's answer: a
    /// server reads a command in pieces (header, then body), and the decoder attaches only
    /// at a piece that is a whole plausible command.
    unattached_c2s: Option<Plaintext>,
    /// FIN or RST seen on a probed flow: it ends once its last plaintext had time to come.
    ending: Option<(EndReason, u64)>,
    /// With a key log: this flow's TLS reading.
    tls: Option<Box<tls::TlsFlow>>,
}

/// How long a probed flow waits after its FIN/RST for the plaintext still on its way.
const PLAINTEXT_LATE_US: u64 = 1_000_000;
/// Plaintext held per flow waiting for its SSLRequest, at most.
const EARLY_MAX: usize = 1 << 20;

impl Flow {
    /// In-order bytes of `dir`: to the MySQL decoder, through the TLS reader when there is one.
    #[inline]
    fn data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        at_us: u64,
        ctx: &mut Ctx<'_>,
        tls_stats: &mut tls::TlsStats,
    ) {
        match &mut self.tls {
            None => self.conn.data(dir, bytes, at_us, ctx),
            Some(t) => t.data(&mut self.conn, dir, bytes, at_us, ctx, tls_stats),
        }
    }

    /// `bytes` of `dir` lost in the capture.
    fn gap(
        &mut self,
        dir: Direction,
        bytes: u64,
        at_us: u64,
        ctx: &mut Ctx<'_>,
        tls_stats: &mut tls::TlsStats,
    ) {
        match &mut self.tls {
            None => self.conn.gap(dir, bytes, at_us, ctx),
            Some(t) => t.gap(&mut self.conn, dir, bytes, at_us, ctx, tls_stats),
        }
    }

    /// Whether a segment with data cannot belong to this flow: its sequence number is out of
    /// its direction's window, and so is its acknowledgement of the other direction, when
    /// that one has started. Only a new connection on the same addresses and ports does
    /// that — or a capture that lost more than a window of both directions, after which the
    /// old session could not be followed anyway. Less far, a jump is a loss, and a gap.
    fn new_stream(&self, dir: Direction, seq: SeqNum, ack: Option<SeqNum>) -> bool {
        let (this, other) = match dir {
            Direction::ClientToServer => (&self.c2s, &self.s2c),
            Direction::ServerToClient => (&self.s2c, &self.c2s),
        };
        this.out_of_window(seq)
            && ack.is_none_or(|a| other.next_seq().is_none() || other.out_of_window(a))
    }
}

/// The capture pipeline: packets in, events out.
pub struct Capture {
    config: CaptureConfig,
    /// foldhash, seeded per process: SipHash was 4 % of a text-protocol capture, and flow keys
    /// come from the network (FxHash would let crafted ports collide).
    flows: HashMap<FlowKey, Flow, foldhash::fast::RandomState>,
    stats: Stats,
    events: Vec<Event>,
    next_session: SessionId,
    last_sweep_us: u64,
    last_tick_us: u64,
    now_us: u64,
    deliveries: Vec<(Direction, DeliveryOwned)>,
    inference: Inference,
    samples: Option<ShapeSampler>,
}

enum DeliveryOwned {
    /// Bytes and the capture time (µs) of the segment that brought them.
    Data(Vec<u8>, u64),
    Gap(u64),
}

impl Capture {
    pub fn new(config: CaptureConfig) -> Self {
        Self {
            flows: HashMap::default(),
            stats: Stats::default(),
            events: Vec::new(),
            next_session: 1,
            last_sweep_us: 0,
            last_tick_us: 0,
            now_us: 0,
            deliveries: Vec::new(),
            inference: Inference::default(),
            samples: config.row_samples.then(ShapeSampler::new),
            config,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Events produced so far, in order; the caller writes them out.
    /// The events decoded so far, in order; final (inference has seen them).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.infer();
        self.events.drain(..)
    }

    /// EXECUTEs of statements their session never prepared in the capture: decoded from
    /// another session's PREPARE where the evidence allows only that one (a `Backfill` of
    /// source `Inferred` goes before the first); every event teaches the inference.
    fn infer(&mut self) {
        let mut i = 0;
        while i < self.events.len() {
            if let Event::Exchange(x) = &mut self.events[i] {
                let found = match self.inference.infer(x) {
                    Some(found) => {
                        self.stats.decode.executes_unprepared =
                            self.stats.decode.executes_unprepared.saturating_sub(1);
                        Some(found)
                    }
                    None => self.inference.retype(x),
                };
                if let Some(found) = found {
                    let session = x.session;
                    // Later EXECUTEs of the statement decode in the session itself.
                    if let Some(f) = self
                        .flows
                        .values_mut()
                        .find(|f| f.conn.session == Some(session))
                    {
                        f.conn.know_statement(
                            found.stmt_id,
                            found.params,
                            found.types,
                            found.columns,
                        );
                    }
                    if let Some(b) = found.backfill {
                        self.events.insert(i, Event::Backfill(b));
                        i += 1;
                    }
                }
            }
            self.inference.observe(&self.events[i]);
            i += 1;
        }
        self.stats.inferred = self.inference.stats.clone();
        if let Some(s) = &self.samples {
            self.stats.row_samples = s.samples;
            self.stats.row_sample_shapes_over_limit = s.shapes_over_limit;
        }
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Feeds one captured frame.
    pub fn packet(&mut self, ts_us: u64, link: LinkType, frame: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += frame.len() as u64;
        self.now_us = self.now_us.max(ts_us);
        let Some(pkt) = source::slice(link, frame) else {
            self.stats.undecodable_packets += 1;
            return;
        };
        self.ip_packet(ts_us, &pkt);
        if self.now_us.saturating_sub(self.last_sweep_us) > 1_000_000 {
            self.last_sweep_us = self.now_us;
            self.sweep_idle();
            if self.config.tls_plaintext {
                self.end_closing(self.now_us);
            }
            if self.config.tls_secrets {
                self.expire_key_waits(self.now_us);
            }
        }
    }

    /// The capture's clock moved without a packet (a live capture with nothing on the wire):
    /// probed flows that closed long enough ago end.
    pub fn tick(&mut self, now_us: u64) {
        if self.config.tls_plaintext && now_us.saturating_sub(self.last_tick_us) >= 100_000 {
            self.last_tick_us = now_us;
            self.end_closing(now_us);
            if self.config.tls_secrets {
                self.expire_key_waits(now_us);
            }
        }
    }

    /// The latest packet time seen (µs).
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    fn ip_packet(&mut self, ts_us: u64, pkt: &LaxSlicedPacket<'_>) {
        let (src_ip, dst_ip): (IpAddr, IpAddr) = match &pkt.net {
            Some(LaxNetSlice::Ipv4(v4)) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            Some(LaxNetSlice::Ipv6(v6)) => (
                v6.header().source_addr().into(),
                v6.header().destination_addr().into(),
            ),
            _ => {
                self.stats.non_tcp_packets += 1;
                return;
            }
        };
        let Some(TransportSlice::Tcp(tcp)) = &pkt.transport else {
            self.stats.non_tcp_packets += 1;
            return;
        };
        let src = SocketAddr::new(src_ip, tcp.source_port());
        let dst = SocketAddr::new(dst_ip, tcp.destination_port());
        let dir = if self.config.server_ports.contains(&dst.port()) {
            Direction::ClientToServer
        } else if self.config.server_ports.contains(&src.port()) {
            Direction::ServerToClient
        } else {
            self.stats.other_port_packets += 1;
            return;
        };
        let key = match dir {
            Direction::ClientToServer => FlowKey {
                client: src,
                server: dst,
            },
            Direction::ServerToClient => FlowKey {
                client: dst,
                server: src,
            },
        };
        if !self.config.own_clients.is_empty() && self.config.own_clients.contains(&key.client) {
            self.stats.own_packets += 1;
            return;
        }
        let syn = tcp.syn();
        let seq = SeqNum(tcp.sequence_number());
        let payload = tcp.payload();

        // One lookup of the flow for the common case (a known flow going on); two cases end
        // it first. A new SYN on a known flow with another ISN: the client port was reused.
        // Data that cannot continue the flow: a new connection on the same ports, without a
        // SYN in the capture. Taken for a retransmission, it would be dropped and the new
        // connection's answers given to the old one's commands.
        let known = match self.flows.get(&key) {
            None => false,
            Some(f) if syn && !tcp.ack() && dir == Direction::ClientToServer => {
                if f.client_isn != Some(seq.0) {
                    self.end_flow(key, EndReason::Closed, ts_us);
                    false
                } else {
                    true
                }
            }
            Some(f) if !syn && !payload.is_empty() => {
                let ack = tcp.ack().then(|| SeqNum(tcp.acknowledgment_number()));
                if f.new_stream(dir, seq, ack) {
                    let last_us = f.last_us;
                    self.stats.streams_restarted += 1;
                    self.end_flow(key, EndReason::Closed, last_us);
                    false
                } else {
                    true
                }
            }
            Some(_) => true,
        };
        if !known {
            if payload.is_empty() && !syn {
                return; // a stray ACK/FIN/RST of a connection we never saw
            }
            if self.flows.len() >= self.config.max_flows {
                self.evict_oldest(ts_us);
            }
            self.new_flow(key, ts_us, syn);
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        flow.last_us = ts_us;
        let (this, other) = match dir {
            Direction::ClientToServer => (&mut flow.c2s, &mut flow.s2c),
            Direction::ServerToClient => (&mut flow.s2c, &mut flow.c2s),
        };
        if syn {
            this.syn(seq);
            if dir == Direction::ClientToServer && !tcp.ack() {
                flow.client_isn = Some(seq.0);
            }
        }
        let mut out: Vec<Delivery<'_>> = Vec::new();
        // The peer's acknowledgement first: it speaks of bytes sent before this segment.
        if tcp.ack() {
            other.acked(SeqNum(tcp.acknowledgment_number()), &mut out);
        }
        let other_dir = match dir {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        };
        self.deliveries.clear();
        for d in out.drain(..) {
            self.deliveries.push((other_dir, own(d, ts_us)));
        }
        let before = this.retransmitted_bytes;
        this.segment(seq.advance(syn as usize), payload, ts_us, &mut out);
        self.stats.retransmitted_bytes += this.retransmitted_bytes - before;
        if tcp.fin() {
            this.fin(seq.advance(syn as usize + payload.len()));
        }
        let fin = tcp.fin();
        let rst = tcp.rst();
        let mut ctx = Ctx {
            events: &mut self.events,
            stats: &mut self.stats.decode,
            next_session: &mut self.next_session,
            samples: self.samples.as_mut(),
        };
        // A probed connection's packets carry TLS records: its bytes come from the server.
        let ciphertext = flow.probed && flow.conn.reads_tls();
        let tls_stats = &mut self.stats.tls;
        if !ciphertext {
            for (d, del) in self.deliveries.drain(..) {
                match del {
                    DeliveryOwned::Data(b, at_us) => flow.data(d, &b, at_us, &mut ctx, tls_stats),
                    DeliveryOwned::Gap(n) => flow.gap(d, n, ts_us, &mut ctx, tls_stats),
                }
            }
            for del in out {
                match del {
                    Delivery::Data(b) => flow.data(dir, b, ts_us, &mut ctx, tls_stats),
                    Delivery::Queued { bytes, at_us } => {
                        flow.data(dir, &bytes, at_us, &mut ctx, tls_stats)
                    }
                    Delivery::Gap(n) => flow.gap(dir, n, ts_us, &mut ctx, tls_stats),
                }
            }
        }
        match dir {
            Direction::ClientToServer => flow.fin_c2s |= fin,
            Direction::ServerToClient => flow.fin_s2c |= fin,
        }
        let early = if !flow.early.is_empty() && flow.conn.awaits_tls() {
            std::mem::take(&mut flow.early)
        } else {
            Vec::new()
        };
        let ends = if rst {
            Some(EndReason::Reset)
        } else if flow.fin_c2s && flow.fin_s2c {
            Some(EndReason::Closed)
        } else {
            None
        };
        // The plaintext of a TLS connection may still be on its way when its FIN is seen.
        let defer = self.config.tls_plaintext && (flow.probed || flow.conn.awaits_tls());
        if let (Some(r), true) = (&ends, defer) {
            flow.ending.get_or_insert((*r, ts_us));
        }
        for p in early {
            self.plaintext(p);
        }
        match ends {
            Some(r) if !defer => self.end_flow(key, r, ts_us),
            _ => {}
        }
    }

    fn new_flow(&mut self, key: FlowKey, ts_us: u64, syn: bool) {
        self.stats.flows += 1;
        let mut conn = Conn::new(
            key.client.to_string(),
            key.server.to_string(),
            ts_us,
            syn,
            self.config.max_packet,
        );
        if self.config.tls_plaintext {
            conn.expect_tls_plaintext();
        }
        let tls = match &self.config.keylog {
            Some(k) if syn => Some(Box::new(tls::TlsFlow::new(k.clone(), &mut conn))),
            None if syn && self.config.tls_secrets => Some(Box::new(tls::TlsFlow::live(&mut conn))),
            _ => None,
        };
        if !syn {
            // Its start is not in the capture: what does the server know of it?
            if let Some(view) = &self.config.server_view {
                let found = match view.lock() {
                    Ok(mut v) => v.lookup(key.client, key.server),
                    Err(poisoned) => poisoned.into_inner().lookup(key.client, key.server),
                };
                if let Some(b) = found {
                    conn.backfill(b);
                }
            }
        }
        self.flows.insert(
            key,
            Flow {
                conn,
                c2s: Reassembler::new(self.config.reorder_limit),
                s2c: Reassembler::new(self.config.reorder_limit),
                last_us: ts_us,
                fin_c2s: false,
                fin_s2c: false,
                client_isn: None,
                probed: false,
                early: Vec::new(),
                unattached_c2s: None,
                ending: None,
                tls,
            },
        );
    }

    /// Plaintext of a TLS connection, read inside the server: decoded as that connection's
    /// bytes (the login onwards after its SSLRequest, or from its next command for one that
    /// began before the capture). Give it in time order with the packets, as
    /// [`run_with_plaintext`] does.
    pub fn plaintext(&mut self, p: Plaintext) {
        let key = FlowKey {
            client: p.client,
            server: p.server,
        };
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.config.max_flows {
                self.evict_oldest(p.ts_us);
            }
            // A connection the packets have not shown (yet): it began before the capture.
            self.new_flow(key, p.ts_us, false);
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        if flow.tls.as_ref().is_some_and(|t| t.takes_secrets()) {
            // Read from its packets with its secrets.
            self.stats.tls_plaintext_unused += p.data.len() as u64;
            return;
        }
        flow.probed = true;
        flow.last_us = flow.last_us.max(p.ts_us);
        let mut ctx = Ctx {
            events: &mut self.events,
            stats: &mut self.stats.decode,
            next_session: &mut self.next_session,
            samples: self.samples.as_mut(),
        };
        if !flow.conn.reads_tls() && !flow.conn.tls_plaintext() {
            if flow.conn.in_handshake()
                && flow.early.iter().map(|e| e.data.len()).sum::<usize>() + p.data.len()
                    <= EARLY_MAX
            {
                // The packets' SSLRequest is not decoded yet.
                flow.early.push(p);
            } else {
                self.stats.tls_plaintext_unused += p.data.len() as u64;
            }
            return;
        }
        self.stats.tls_plaintext_chunks += 1;
        self.stats.tls_plaintext_bytes += p.data.len() as u64;
        let p = if flow.conn.unattached() {
            match p.direction {
                Direction::ClientToServer => {
                    match &mut flow.unattached_c2s {
                        Some(held) if held.data.len() + p.data.len() <= EARLY_MAX => {
                            held.data.extend_from_slice(&p.data);
                            held.lost_before += p.lost_before;
                        }
                        held => {
                            if let Some(h) = held.take() {
                                flow.conn.data(h.direction, &h.data, h.ts_us, &mut ctx);
                            }
                            *held = Some(p);
                        }
                    }
                    return;
                }
                Direction::ServerToClient => {
                    // The answer: the command before it is whole.
                    if let Some(h) = flow.unattached_c2s.take() {
                        if h.lost_before > 0 {
                            flow.conn.gap(h.direction, h.lost_before, h.ts_us, &mut ctx);
                        }
                        flow.conn.data(h.direction, &h.data, h.ts_us, &mut ctx);
                    }
                    p
                }
            }
        } else {
            p
        };
        if p.lost_before > 0 {
            self.stats.tls_plaintext_lost += p.lost_before;
            flow.conn.gap(p.direction, p.lost_before, p.ts_us, &mut ctx);
        }
        flow.conn.data(p.direction, &p.data, p.ts_us, &mut ctx);
    }

    /// A secret the server derived for one of its TLS sessions: read with it, as
    /// [`Capture::plaintext`] (give it in time order with the packets).
    pub fn secret(&mut self, s: Secret) {
        let key = FlowKey {
            client: s.client,
            server: s.server,
        };
        let Some(flow) = self.flows.get_mut(&key) else {
            self.stats.tls_secrets_unused += 1;
            return;
        };
        let Some(t) = flow.tls.as_mut().filter(|t| t.wants_secrets()) else {
            self.stats.tls_secrets_unused += 1;
            return;
        };
        self.stats.tls_secrets += 1;
        let mut ctx = Ctx {
            events: &mut self.events,
            stats: &mut self.stats.decode,
            next_session: &mut self.next_session,
            samples: self.samples.as_mut(),
        };
        t.secret(
            s.kind,
            &s.secret,
            &mut flow.conn,
            &mut ctx,
            &mut self.stats.tls,
        );
    }

    /// TLS sessions whose bytes waited [`tls::KEYS_WAIT_US`] for their secrets are read with
    /// what came.
    fn expire_key_waits(&mut self, now: u64) {
        let mut ctx = Ctx {
            events: &mut self.events,
            stats: &mut self.stats.decode,
            next_session: &mut self.next_session,
            samples: self.samples.as_mut(),
        };
        for flow in self.flows.values_mut() {
            if let Some(t) = flow.tls.as_mut().filter(|t| t.waiting()) {
                t.expire(now, &mut flow.conn, &mut ctx, &mut self.stats.tls);
            }
        }
    }

    /// Probed flows whose FIN/RST is older than [`PLAINTEXT_LATE_US`] end now.
    fn end_closing(&mut self, now: u64) {
        let due: Vec<(FlowKey, EndReason, u64)> = self
            .flows
            .iter()
            .filter_map(|(k, f)| match &f.ending {
                Some((r, at)) if now.saturating_sub(*at) >= PLAINTEXT_LATE_US => {
                    Some((*k, *r, *at))
                }
                _ => None,
            })
            .collect();
        for (k, r, at) in due {
            self.end_flow(k, r, at);
        }
    }

    fn end_flow(&mut self, key: FlowKey, reason: EndReason, now: u64) {
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        let mut ctx = Ctx {
            events: &mut self.events,
            stats: &mut self.stats.decode,
            next_session: &mut self.next_session,
            samples: self.samples.as_mut(),
        };
        for (dir, r) in [
            (Direction::ClientToServer, Direction::ClientToServer),
            (Direction::ServerToClient, Direction::ServerToClient),
        ] {
            let r = match r {
                Direction::ClientToServer => &mut flow.c2s,
                Direction::ServerToClient => &mut flow.s2c,
            };
            let mut out = Vec::new();
            r.finish(&mut out);
            for del in out {
                match del {
                    Delivery::Data(b) => flow.data(dir, b, now, &mut ctx, &mut self.stats.tls),
                    Delivery::Queued { bytes, at_us } => {
                        flow.data(dir, &bytes, at_us, &mut ctx, &mut self.stats.tls)
                    }
                    Delivery::Gap(n) => flow.gap(dir, n, now, &mut ctx, &mut self.stats.tls),
                }
            }
        }
        if let Some(t) = &mut flow.tls {
            t.finish(&mut flow.conn, now, &mut ctx, &mut self.stats.tls);
        }
        flow.conn.end(reason, now, &mut ctx);
    }

    fn sweep_idle(&mut self) {
        let limit = self.config.idle_timeout_us;
        let now = self.now_us;
        let idle: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| now.saturating_sub(f.last_us) > limit)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            self.end_flow(k, EndReason::Idle, now);
        }
    }

    fn evict_oldest(&mut self, now: u64) {
        if let Some(k) = self
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_us)
            .map(|(k, _)| *k)
        {
            self.stats.flows_evicted += 1;
            self.end_flow(k, EndReason::Idle, now);
        }
    }

    /// Ends every open flow (the capture is over).
    pub fn finish(&mut self) {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        let mut keys = keys;
        keys.sort_by_key(|k| {
            self.flows
                .get(k)
                .map(|f| f.conn.session.unwrap_or(u64::MAX))
        });
        let now = self.now_us;
        for k in keys {
            match self.flows.get(&k).and_then(|f| f.ending) {
                Some((reason, at)) => self.end_flow(k, reason, at),
                None => self.end_flow(k, EndReason::EndOfRun, now),
            }
        }
    }
}

/// `d`, owned; `ts_us` is the time of the segment being handled.
fn own(d: Delivery<'_>, ts_us: u64) -> DeliveryOwned {
    match d {
        Delivery::Data(b) => DeliveryOwned::Data(b.to_vec(), ts_us),
        Delivery::Queued { bytes, at_us } => DeliveryOwned::Data(bytes, at_us),
        Delivery::Gap(n) => DeliveryOwned::Gap(n),
    }
}
