//! [`run`]: a whole capture, from a [`PacketSource`] through [`Capture`] into an [`EventSink`].
//!
//! This loop owns the output cadence: events go to the sink as soon as they are decoded, and a
//! live source's output is sealed at least once a second ([`SEAL_EVERY`]), so a crash loses at
//! most a second. A source error (a damaged file, a failed interface) does not lose what was
//! read before it: the capture goes on with the source's next input and the error is reported
//! in the [`Summary`]. Only a failing sink stops it.

use std::io::Write;
use std::time::{Duration, Instant};

use myrr_recording::{Event, RecordingWriter, WriteError};

use crate::source::{Next, PacketSource, SourceError};
use crate::{Capture, CaptureConfig, Stats};

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
    run_with_clock(config, source, sink, Instant::now)
}

/// [`run`], reading the time from `now` (tests give it a clock of their own).
fn run_with_clock<S, K>(
    config: CaptureConfig,
    source: &mut S,
    sink: &mut K,
    mut now: impl FnMut() -> Instant,
) -> Result<Summary, CaptureError>
where
    S: PacketSource + ?Sized,
    K: EventSink + ?Sized,
{
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
        if live {
            let t = now();
            if t.saturating_duration_since(sealed_at) >= SEAL_EVERY {
                sink.seal()?;
                sealed_at = t;
            }
        }
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
