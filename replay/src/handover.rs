//! The dispatcher's end of the session queues: exchanges go over in batches.
//!
//! One channel operation per exchange cost the session threads as much as decoding an
//! answer's metadata: each reads a queue slot the dispatcher's CPU has just written. In a
//! closed loop the dispatcher therefore collects each session's exchanges and sends them
//! together: when a batch is full, and whenever the dispatcher is about to wait (it calls
//! [`Handover::send_unsent`]), so no exchange is held back while its session could run it.
//! A dispatcher that never waits (it is the bottleneck: permits keep coming back) sends the
//! partial batches every `flush_every` exchanges handed, so a quiet session's few exchanges
//! do not wait for the end of the recording.

use std::collections::HashMap;

use smallvec::SmallVec;
use tokio::sync::mpsc;

use crate::dispatch::Work;

/// A session's exchanges as the dispatcher hands them over, in order. One is held inline:
/// a paced replay hands them over one by one, without an allocation each.
pub(crate) type Batch = SmallVec<[Work; 1]>;

/// An exchange a session task did not take (it had ended), with its clone number.
pub(crate) type Refused = (u32, Work);

/// One session task's queue and what is collected for it.
struct Queue {
    tx: mpsc::UnboundedSender<Batch>,
    batch: Batch,
}

pub(crate) struct Handover {
    /// Per session, a queue per clone.
    queues: HashMap<u64, Vec<Queue>>,
    /// Sessions with a batch not yet sent (possibly listed twice, or already sent).
    unsent: Vec<u64>,
    /// Exchanges per batch.
    max: usize,
    /// Partial batches are sent after this many exchanges handed over since the last send.
    flush_every: usize,
    /// Exchanges handed over since partial batches were last sent.
    handed: usize,
}

impl Handover {
    /// `max`: exchanges per batch (1: each is sent at once); partial batches are sent at the
    /// latest every `flush_every` exchanges handed over.
    pub(crate) fn new(max: usize, flush_every: usize) -> Self {
        Self {
            queues: HashMap::new(),
            unsent: Vec::new(),
            max: max.max(1),
            flush_every: flush_every.max(1),
            handed: 0,
        }
    }

    /// A session starts: the queues of its clones, in clone order.
    pub(crate) fn open(&mut self, session: u64, txs: Vec<mpsc::UnboundedSender<Batch>>) {
        let queues = txs
            .into_iter()
            .map(|tx| Queue {
                tx,
                batch: Batch::with_capacity(self.max),
            })
            .collect();
        self.queues.insert(session, queues);
    }

    pub(crate) fn is_open(&self, session: u64) -> bool {
        self.queues.contains_key(&session)
    }

    /// Open sessions.
    pub(crate) fn sessions(&self) -> usize {
        self.queues.len()
    }

    /// Collects `work` for a clone of `session`, and sends the batch once full. `false` when
    /// there is no such queue (the work is dropped).
    pub(crate) fn hand(
        &mut self,
        session: u64,
        clone: usize,
        work: Work,
        refused: &mut Vec<Refused>,
    ) -> bool {
        let Some(q) = self
            .queues
            .get_mut(&session)
            .and_then(|qs| qs.get_mut(clone))
        else {
            return false;
        };
        q.batch.push(work);
        if q.batch.len() >= self.max {
            send(q, self.max, clone, refused);
        } else if q.batch.len() == 1 {
            // Whatever the clone: a wait between two clones of one exchange sends only the
            // batches of the clones before it.
            self.unsent.push(session);
        }
        self.handed += 1;
        if self.handed >= self.flush_every {
            self.send_unsent(refused);
        }
        true
    }

    /// Sends every batch collected so far.
    pub(crate) fn send_unsent(&mut self, refused: &mut Vec<Refused>) {
        self.handed = 0;
        for session in self.unsent.drain(..) {
            if let Some(qs) = self.queues.get_mut(&session) {
                send_clones(qs, self.max, refused);
            }
        }
    }

    /// A session ends: its batches are sent and its queues closed.
    pub(crate) fn close(&mut self, session: u64, refused: &mut Vec<Refused>) {
        if let Some(mut qs) = self.queues.remove(&session) {
            send_clones(&mut qs, self.max, refused);
        }
    }

    /// The reading is over: every open session gets what was collected for it.
    pub(crate) fn send_all(&mut self, refused: &mut Vec<Refused>) {
        self.unsent.clear();
        for qs in self.queues.values_mut() {
            send_clones(qs, self.max, refused);
        }
    }
}

/// Sends the batches of every clone of a session.
fn send_clones(qs: &mut [Queue], max: usize, refused: &mut Vec<Refused>) {
    for (clone, q) in qs.iter_mut().enumerate() {
        send(q, max, clone, refused);
    }
}

/// Sends a queue's batch, if any; a session task that has ended gives it back in `refused`.
fn send(q: &mut Queue, max: usize, clone: usize, refused: &mut Vec<Refused>) {
    if q.batch.is_empty() {
        return;
    }
    let batch = std::mem::replace(&mut q.batch, Batch::with_capacity(max));
    if let Err(mpsc::error::SendError(batch)) = q.tx.send(batch) {
        refused.extend(batch.into_iter().map(|w| (clone as u32, w)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{Handed, Recorded};
    use myrr_recording::Command;

    fn work(seq: u64) -> Work {
        Work {
            x: Handed::Own(Recorded {
                seq,
                start_us: seq,
                end_us: seq,
                recorded_err: false,
                recorded_code: 0,
                affected: 0,
                command: Command::Ping,
                prepared_id: None,
                insert_id: 0,
                rows_digest: None,
                backfill: None,
            }),
            keys: Default::default(),
            class: Default::default(),
            wait: false,
            survivors: None,
        }
    }

    fn seqs(rx: &mut mpsc::UnboundedReceiver<Batch>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend(b.iter().map(|w| w.x.seq));
        }
        out
    }

    fn session(h: &mut Handover, id: u64, clones: usize) -> Vec<mpsc::UnboundedReceiver<Batch>> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..clones).map(|_| mpsc::unbounded_channel()).unzip();
        h.open(id, txs);
        rxs
    }

    #[test]
    fn batches_go_when_full_or_when_asked() {
        let mut h = Handover::new(3, 100);
        let mut refused = Vec::new();
        let mut rx = session(&mut h, 7, 1);
        for seq in 0..4 {
            assert!(h.hand(7, 0, work(seq), &mut refused));
        }
        assert_eq!(seqs(&mut rx[0]), [0, 1, 2], "the full batch went");
        h.send_unsent(&mut refused);
        assert_eq!(seqs(&mut rx[0]), [3], "the partial one goes before a wait");
        assert!(!h.hand(8, 0, work(9), &mut refused), "no such session");
        assert!(refused.is_empty());
    }

    /// The dispatcher waits for permits between two clones of one exchange: the clones after
    /// the wait must still be sent at the next wait (they once were only at the session's
    /// next exchange, or never).
    #[test]
    fn a_clone_handed_after_a_wait_is_sent_at_the_next() {
        let mut h = Handover::new(32, 100);
        let mut refused = Vec::new();
        let mut rx = session(&mut h, 1, 3);
        assert!(h.hand(1, 0, work(0), &mut refused));
        h.send_unsent(&mut refused);
        assert!(h.hand(1, 1, work(0), &mut refused));
        assert!(h.hand(1, 2, work(0), &mut refused));
        h.send_unsent(&mut refused);
        for (clone, rx) in rx.iter_mut().enumerate() {
            assert_eq!(seqs(rx), [0], "clone {clone}");
        }
        // And when the reading ends before the next wait.
        assert!(h.hand(1, 1, work(1), &mut refused));
        h.send_all(&mut refused);
        assert_eq!(seqs(&mut rx[1]), [1]);
        assert!(refused.is_empty());
    }

    #[test]
    fn an_ended_session_gives_its_batch_back_and_close_sends_the_rest() {
        let mut h = Handover::new(32, 100);
        let mut refused = Vec::new();
        let mut rx = session(&mut h, 1, 2);
        drop(rx.remove(1));
        assert!(h.hand(1, 0, work(5), &mut refused));
        assert!(h.hand(1, 1, work(5), &mut refused));
        h.close(1, &mut refused);
        assert_eq!(seqs(&mut rx[0]), [5]);
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].0, refused[0].1.x.seq), (1, 5));
        assert!(!h.is_open(1));
        assert_eq!(h.sessions(), 0);
    }

    /// A dispatcher that never waits sends a quiet session's partial batch once `flush_every`
    /// exchanges have been handed over, whichever sessions they were for.
    #[test]
    fn a_quiet_sessions_partial_batch_goes_after_flush_every_exchanges() {
        let mut h = Handover::new(32, 10);
        let mut refused = Vec::new();
        let mut quiet = session(&mut h, 1, 1);
        let mut busy = session(&mut h, 2, 1);
        assert!(h.hand(1, 0, work(0), &mut refused));
        for seq in 0..8 {
            assert!(h.hand(2, 0, work(seq), &mut refused));
        }
        assert_eq!(seqs(&mut quiet[0]), [] as [u64; 0], "9 handed: not yet");
        assert!(h.hand(2, 0, work(8), &mut refused));
        assert_eq!(seqs(&mut quiet[0]), [0], "the 10th sends it");
        assert_eq!(seqs(&mut busy[0]), (0..9).collect::<Vec<_>>());
        // The count starts again after each send, whatever caused it.
        assert!(h.hand(1, 0, work(1), &mut refused));
        h.send_unsent(&mut refused);
        assert_eq!(seqs(&mut quiet[0]), [1]);
        for seq in 9..18 {
            assert!(h.hand(2, 0, work(seq), &mut refused));
        }
        assert_eq!(
            seqs(&mut busy[0]),
            [] as [u64; 0],
            "9 handed since the last send"
        );
        assert!(refused.is_empty());
    }
}
