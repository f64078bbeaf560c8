//! Events from the session tasks to the output recording.
//!
//! Every thread that sends events fills a queue of its own (a shard), which the writer thread
//! empties on its own clock, every few milliseconds. Sending never wakes the writer: a
//! cross-thread wake-up per event (a tokio channel to a writer task) cost more than the rest
//! of the bookkeeping of an exchange. Nor do the senders share a queue: with one channel for
//! all, each event's slot and the channel's tail went from CPU to CPU, a few percent of a
//! session thread's time. A session runs on one thread, so its events stay in order. When its
//! thread's shard is full, the sending session waits for room.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use myrr_recording::{Event, RecordingWriter, WriteError};

/// How long a sender waits for room.
const TICK: Duration = Duration::from_millis(1);
/// How long the writer sleeps between passes over the shards. Each wake-up of this thread
/// preempts a session or the server on a busy machine: at 1 ms (about 900 wake-ups a second
/// in a closed loop) they cost a fifth of its CPU. A shard holds `capacity` events, so a
/// thread can send `capacity / IDLE` events a second without waiting (256 Ki at 2 Ki).
const IDLE: Duration = Duration::from_millis(8);
/// A block older than this is flushed, so a crash loses at most about this much.
const MAX_BLOCK_AGE: Duration = Duration::from_secs(1);

/// One sending thread's queue.
#[derive(Default)]
struct Shard {
    events: Mutex<Vec<Event>>,
}

struct Inner {
    shards: Mutex<Vec<Arc<Shard>>>,
    /// Events one shard holds before its senders wait.
    capacity: usize,
    /// The writer has stopped (it failed): events are dropped.
    stopped: AtomicBool,
}

thread_local! {
    /// This thread's shard of each live outbox (one, unless tests run several replays).
    static SHARDS: RefCell<Vec<(Weak<Inner>, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone)]
pub(crate) struct Outbox {
    inner: Arc<Inner>,
}

impl Outbox {
    /// Starts the writer thread. It ends, finishing the recording, when every `Outbox` clone
    /// has been dropped and the shards are empty.
    pub(crate) fn start<W: Write + Send + 'static>(
        writer: RecordingWriter<W>,
        capacity: usize,
    ) -> std::io::Result<(Self, JoinHandle<Result<(), WriteError>>)> {
        let inner = Arc::new(Inner {
            shards: Mutex::default(),
            capacity: capacity.max(1),
            stopped: AtomicBool::new(false),
        });
        let drained = inner.clone();
        let thread = std::thread::Builder::new()
            .name("myrr-output".into())
            .spawn(move || {
                let r = drain(writer, &drained);
                drained.stopped.store(true, Ordering::Relaxed);
                r
            })?;
        Ok((Self { inner }, thread))
    }

    /// Queues an event if there is room, without waiting (for code that cannot wait).
    pub(crate) fn try_send(&self, event: Event) {
        self.push(&mut Some(event));
    }

    /// Queues an event; waits while this thread's shard is full. After a writer failure
    /// events are dropped: the failure is reported when the writer thread is joined.
    pub(crate) async fn send(&self, event: Event) {
        let mut event = Some(event);
        while !self.push(&mut event) {
            tokio::time::sleep(TICK).await;
        }
    }

    /// Takes the event unless this thread's shard is full (false: it is left in `event`).
    /// After a writer failure it is taken and dropped.
    fn push(&self, event: &mut Option<Event>) -> bool {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Relaxed) {
            *event = None;
            return true;
        }
        SHARDS.with(|shards| {
            let mut shards = shards.borrow_mut();
            let mine = Arc::as_ptr(inner);
            let i = match shards.iter().position(|(o, _)| o.as_ptr() == mine) {
                Some(i) => i,
                None => {
                    // Outboxes that ended leave their shards behind on threads that outlive
                    // them (a pool thread of a test running several replays).
                    shards.retain(|(o, _)| o.strong_count() > 0);
                    let s = Arc::new(Shard::default());
                    inner
                        .shards
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(s.clone());
                    shards.push((Arc::downgrade(inner), s));
                    shards.len() - 1
                }
            };
            let mut q = shards[i].1.events.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= inner.capacity {
                return false;
            }
            q.extend(event.take());
            true
        })
    }
}

/// Empties every shard into the writer, one pass. True when a shard was full (its senders
/// are waiting: no sleep before the next pass).
fn pass<W: Write + Send + 'static>(
    writer: &mut RecordingWriter<W>,
    inner: &Inner,
    spare: &mut Vec<Event>,
) -> Result<bool, WriteError> {
    let shards = inner
        .shards
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut full = false;
    for shard in shards {
        {
            let mut q = shard.events.lock().unwrap_or_else(|p| p.into_inner());
            full |= q.len() >= inner.capacity;
            std::mem::swap(&mut *q, spare);
        }
        for e in spare.drain(..) {
            writer.push(&e)?;
        }
    }
    Ok(full)
}

fn drain<W: Write + Send + 'static>(
    mut writer: RecordingWriter<W>,
    inner: &Arc<Inner>,
) -> Result<(), WriteError> {
    let mut spare = Vec::new();
    loop {
        let began = Instant::now();
        // Checked before the pass: once only this thread holds the outbox, no event can come
        // after the pass.
        let last = Arc::strong_count(inner) == 1;
        let full = pass(&mut writer, inner, &mut spare)?;
        if last {
            break;
        }
        writer.flush_if_older(MAX_BLOCK_AGE)?;
        if !full {
            std::thread::sleep(IDLE.saturating_sub(began.elapsed()));
        }
    }
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::{Direction, Gap, Header, RecordingReader, RunKind};
    use std::path::Path;

    /// A file in memory that the test keeps a handle on.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn gap(session: u64, at_us: u64) -> Event {
        Event::Gap(Gap {
            session,
            direction: Direction::ClientToServer,
            at_us,
            bytes: 1,
        })
    }

    /// Events sent from several threads all reach the file, each thread's in its order, with
    /// shards small enough that the senders wait for room.
    #[test]
    fn every_event_of_every_thread_is_written_in_its_threads_order() {
        let file = Shared::default();
        let header = Header {
            kind: RunKind::Replay,
            tool_version: "test".into(),
            source: "test".into(),
            started_us: 0,
            options: vec![],
        };
        let writer = RecordingWriter::new(file.clone(), &header).unwrap();
        let (outbox, thread) = Outbox::start(writer, 8).unwrap();
        let senders: Vec<_> = (0..4u64)
            .map(|t| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for i in 0..200 {
                            outbox.send(gap(t, i)).await;
                        }
                    });
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        drop(outbox);
        thread.join().unwrap().unwrap();
        let bytes = file.0.lock().unwrap().clone();
        let reader = RecordingReader::new(&bytes[..], Path::new("mem")).unwrap();
        let mut next = [0u64; 4];
        for e in reader {
            let Event::Gap(g) = e.unwrap() else {
                panic!("not a gap")
            };
            assert_eq!(g.at_us, next[g.session as usize], "thread {}", g.session);
            next[g.session as usize] += 1;
        }
        assert_eq!(next, [200; 4]);
    }
}
