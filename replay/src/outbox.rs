//! Events from the session tasks to the output recording.
//!
//! Sessions may run on several threads. Sending an event never wakes the writer: it drains the
//! queue on its own clock, every few milliseconds, on a thread of its own. A cross-thread
//! wake-up per event (a tokio channel to a writer task) cost more than the rest of the
//! bookkeeping of an exchange. When the queue is full, the sending session waits for room.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use myrr_recording::{Event, RecordingWriter, WriteError};

/// How long a sender waits for room.
const TICK: Duration = Duration::from_millis(1);
/// How long the writer sleeps once it has emptied the queue. Each wake-up of this thread
/// preempts a session or the server on a busy machine: at 1 ms (about 900 wake-ups a second
/// in a closed loop) they cost a fifth of its CPU. The queue holds 16 Ki events, so senders
/// still do not wait at a million events a second.
const IDLE: Duration = Duration::from_millis(8);
/// A block older than this is flushed, so a crash loses at most about this much.
const MAX_BLOCK_AGE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Outbox {
    tx: SyncSender<Event>,
}

impl Outbox {
    /// Starts the writer thread. It ends, finishing the recording, when every `Outbox` clone
    /// has been dropped and the queue is empty.
    pub(crate) fn start<W: Write + Send + 'static>(
        writer: RecordingWriter<W>,
        capacity: usize,
    ) -> std::io::Result<(Self, JoinHandle<Result<(), WriteError>>)> {
        let (tx, rx) = sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("myrr-output".into())
            .spawn(move || drain(writer, rx))?;
        Ok((Self { tx }, thread))
    }

    /// Queues an event if there is room, without waiting (for code that cannot wait).
    pub(crate) fn try_send(&self, event: Event) {
        let _ = self.tx.try_send(event);
    }

    /// Queues an event; waits while the queue is full. After a writer failure events are
    /// dropped: the failure is reported when the writer thread is joined.
    pub(crate) async fn send(&self, mut event: Event) {
        loop {
            match self.tx.try_send(event) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => {
                    event = back;
                    tokio::time::sleep(TICK).await;
                }
            }
        }
    }
}

fn drain<W: Write + Send + 'static>(
    mut writer: RecordingWriter<W>,
    rx: Receiver<Event>,
) -> Result<(), WriteError> {
    let mut last_flush_check = Instant::now();
    let mut pushed = 0u32;
    loop {
        match rx.try_recv() {
            Ok(e) => {
                writer.push(&e)?;
                pushed = pushed.wrapping_add(1);
                if pushed % 1024 != 0 {
                    continue;
                }
            }
            Err(TryRecvError::Empty) => std::thread::sleep(IDLE),
            Err(TryRecvError::Disconnected) => break,
        }
        // When idle, and every 1024 events under a load that never empties the queue.
        if last_flush_check.elapsed() >= MAX_BLOCK_AGE / 2 {
            writer.flush_if_older(MAX_BLOCK_AGE)?;
            last_flush_check = Instant::now();
        }
    }
    writer.finish()?;
    Ok(())
}
