//! [`run`]: a whole capture, from a [`PacketSource`] through [`Capture`] into an [`EventSink`].
//!
//! This loop owns the output cadence: events go to the sink as soon as they are decoded, and a
//! live source's output is sealed at least once a second ([`SEAL_EVERY`]), so a crash loses at
//! most a second. A source error (a damaged file, a failed interface) does not lose what was
//! read before it: the capture goes on with the source's next input and the error is reported
//! in the [`Summary`]. Only a failing sink stops it.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use myrr_recording::{Event, RecordingWriter, WriteError};

use crate::source::{Next, PacketSource, SourceError};
use crate::{Capture, CaptureConfig, FromServer, Stats};

/// TLS plaintext read inside the server, beside a live packet source (`--tls-probe`).
pub struct PlaintextFeed {
    /// The plaintext and secrets, in time order per connection.
    pub chunks: Receiver<FromServer>,
    /// The server tells the secrets of the sessions it sets up (else every TLS session's
    /// plaintext comes in `chunks`).
    pub secrets: bool,
    /// Called when the packet source has ended: stops whatever sends `chunks` (the senders
    /// are dropped), after which the rest is decoded.
    pub stop: Box<dyn FnOnce() + Send>,
}

/// Plaintext waits this long for the packets of the same time: a connection's SSLRequest must
/// be decoded before its login's plaintext, and its FIN after its last answer.
const PLAINTEXT_HOLD: Duration = Duration::from_millis(200);

/// What the run loop holds of a [`PlaintextFeed`].
struct Feed {
    chunks: Receiver<FromServer>,
    stop: Option<Box<dyn FnOnce() + Send>>,
    held: VecDeque<FromServer>,
    open: bool,
}

impl Feed {
    /// Hands the capture every held chunk that is due: as old as the packets already
    /// decoded, or older than [`PLAINTEXT_HOLD`] (nothing on the wire); all of them at `end`.
    fn release(&mut self, cap: &mut Capture, end: bool) {
        while self.open {
            match self.chunks.try_recv() {
                Ok(c) => self.held.push_back(c),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.open = false,
            }
        }
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let hold = PLAINTEXT_HOLD.as_micros() as u64;
        while let Some(c) = self.held.front() {
            let ts_us = c.ts_us();
            if !(end || ts_us <= cap.now_us() || ts_us + hold <= wall_us) {
                break;
            }
            match self.held.pop_front() {
                Some(FromServer::Plaintext(p)) => cap.plaintext(p),
                Some(FromServer::Secret(s)) => cap.secret(s),
                None => {}
            }
        }
        cap.tick(wall_us.saturating_sub(hold).max(cap.now_us()));
    }

    /// The packets are over: stop the sender, decode the rest.
    fn finish(&mut self, cap: &mut Capture) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        while self.open {
            match self.chunks.recv() {
                Ok(c) => self.held.push_back(c),
                Err(_) => self.open = false,
            }
        }
        self.release(cap, true);
    }
}

/// How long a live capture's events may wait in an unsealed block.
pub const SEAL_EVERY: Duration = Duration::from_secs(1);

/// Where [`run`] puts the events: a [`RecordingWriter`], or what a test keeps them in.
pub trait EventSink {
    fn push(&mut self, event: &Event) -> Result<(), WriteError>;
    /// Seals what was pushed and hands it to the output: a crash after this loses none of it.
    fn seal(&mut self) -> Result<(), WriteError>;
}

impl<W: Write + Send + 'static> EventSink for RecordingWriter<W> {
    fn push(&mut self, event: &Event) -> Result<(), WriteError> {
        RecordingWriter::push(self, event)
    }

    fn seal(&mut self) -> Result<(), WriteError> {
        self.flush_if_older(Duration::ZERO)
    }
}

/// What a capture did.
#[derive(Debug)]
pub struct Summary {
    /// What the capture counted, the source's drops included.
    pub stats: Stats,
    /// Events handed to the sink.
    pub events: u64,
    /// What went wrong in the source, in order; the packets before each error were decoded.
    pub source_errors: Vec<SourceError>,
}

/// What stopped a capture before the end of its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The sink failed: the recording could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Captures every packet of `source` into `sink`, until the source ends (a live source: until
/// its stop flag or duration). Every open flow is ended at the end (`EndReason::EndOfRun`); the
/// sink is left unsealed for its owner to finish.
pub fn run<S, K>(
    config: CaptureConfig,
    source: &mut S,
    sink: &mut K,
) -> Result<Summary, CaptureError>
where
    S: PacketSource + ?Sized,
    K: EventSink + ?Sized,
{
    run_with_clock(config, source, None, sink, Instant::now)
}

/// [`run`], with the TLS plaintext of `feed` decoded in time order with the packets.
pub fn run_with_plaintext<S, K>(
    config: CaptureConfig,
    source: &mut S,
    feed: PlaintextFeed,
    sink: &mut K,
) -> Result<Summary, CaptureError>
where
    S: PacketSource + ?Sized,
    K: EventSink + ?Sized,
{
    run_with_clock(config, source, Some(feed), sink, Instant::now)
}

/// [`run`], reading the time from `now` (tests give it a clock of their own).
fn run_with_clock<S, K>(
    mut config: CaptureConfig,
    source: &mut S,
    feed: Option<PlaintextFeed>,
    sink: &mut K,
    mut now: impl FnMut() -> Instant,
) -> Result<Summary, CaptureError>
where
    S: PacketSource + ?Sized,
    K: EventSink + ?Sized,
{
    config.tls_plaintext |= feed.is_some();
    config.tls_secrets |= feed.as_ref().is_some_and(|f| f.secrets);
    let mut feed = feed.map(|f| Feed {
        chunks: f.chunks,
        stop: Some(f.stop),
        held: VecDeque::new(),
        open: true,
    });
    let mut cap = Capture::new(config);
    let live = source.is_live();
    let mut events = 0u64;
    let mut source_errors = Vec::new();
    let mut sealed_at = now();
    loop {
        match source.next_packet() {
            Ok(Next::Packet(p)) => {
                cap.packet(p.ts_us, p.link, p.frame);
                events += hand_on(&mut cap, sink)?;
            }
            Ok(Next::Idle) => {}
            Ok(Next::End) => break,
            Err(e) => source_errors.push(e),
        }
        if let Some(f) = feed.as_mut() {
            f.release(&mut cap, false);
            events += hand_on(&mut cap, sink)?;
        }
        if live {
            let t = now();
            if t.saturating_duration_since(sealed_at) >= SEAL_EVERY {
                sink.seal()?;
                sealed_at = t;
            }
        }
    }
    if let Some(f) = feed.as_mut() {
        f.finish(&mut cap);
    }
    cap.finish();
    events += hand_on(&mut cap, sink)?;
    let drops = source.drops();
    let mut stats = std::mem::take(cap.stats_mut());
    stats.kernel_drops = drops.kernel;
    stats.interface_drops = drops.interface;
    Ok(Summary {
        stats,
        events,
        source_errors,
    })
}

/// Moves the events decoded so far to the sink; returns how many.
fn hand_on<K: EventSink + ?Sized>(cap: &mut Capture, sink: &mut K) -> Result<u64, WriteError> {
    let mut n = 0;
    for e in cap.drain_events() {
        sink.push(&e)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
