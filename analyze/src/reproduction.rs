//! Production as the reference: which exchanges the baseline did not reproduce.
//!
//! A baseline is a replay on a copy of the old server; where its answer differs from the one
//! production gave (`--reference prod.myrr`, the capture), the replay did not recreate what
//! production saw — writes that ran in another order, an id or a time it could not pin — and
//! the candidate's answer to that exchange says nothing about the candidate. Such an exchange
//! is *not reproduced*: [`not_reproduced`] finds them by joining the reference with the
//! baseline before the analysis, and the analysis keeps them out of the comparison and the
//! verdict, counted by the class of the reference/baseline difference (its cause, as far as
//! the runs know it: they carry no per-exchange labels of how the replay ordered them). One
//! whose baseline matches production while the candidate does not is a real difference.
//!
//! A transaction production lost to a deadlock has no recorded order with the transactions
//! that survived it: which statements ran before the deadlock detector chose its victim, and
//! which of the survivors' waited for the victim's rollback, is not on the wire (a victim is no
//! commit point for the replay's order either). Its exchanges are labelled lock-conflict from
//! the reference ([`NotReproduced::lost_to_deadlock`]): a difference there is reported apart,
//! as the replay's own lock-conflict labels are, not counted.
//!
//! Memory: the keys of the exchanges not reproduced, at most [`MAX_NOT_REPRODUCED`] (a
//! baseline further from production than that is refused: it reproduces too little to judge a
//! candidate by), and those of transactions production lost to a deadlock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use myrr_recording::{Exchange, OrderLabel, Response};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::compare::{compare, Mismatch, Outcome};
use crate::join::{Item, Key, Side};
use crate::report::{Reproduction, RunInfo};
use crate::shapes::Shapes;
use crate::{AnalyzeError, Options};

/// Exchanges not reproduced that an analysis keeps track of.
pub const MAX_NOT_REPRODUCED: usize = 1_000_000;

/// InnoDB chose the transaction as a deadlock's victim and rolled it back.
const ER_LOCK_DEADLOCK: u16 = 1213;

/// The server's status flag: a transaction is open after this answer.
const SERVER_STATUS_IN_TRANS: u16 = 0x0001;

/// Most statements of one open transaction kept to label it if production loses it (a longer
/// transaction keeps its last ones).
const MAX_TXN_KEPT: usize = 4_096;

/// The exchanges of the baseline whose answers differ from the reference's.
pub(crate) struct NotReproduced {
    /// By the baseline's key; its cause: the baseline's order label, or else the class of
    /// the difference (and whether it was a label).
    keys: HashMap<Key, (&'static str, bool)>,
    compared: u64,
    reference: RunInfo,
    /// Joined pairs of the analysis kept out because their exchange was not reproduced.
    pub(crate) excluded: u64,
    /// The reference's exchanges (clone 0) of transactions production lost to a deadlock.
    lost: HashSet<Key>,
}

/// The reference's transactions, read in each session's order: which production lost to a
/// deadlock.
#[derive(Default)]
struct Deadlocks {
    /// Per session: its open transaction's exchanges.
    open: HashMap<u64, Vec<Key>>,
    lost: HashSet<Key>,
}

impl Deadlocks {
    fn read(&mut self, x: &Exchange) {
        let key = (x.session, x.seq, 0);
        if matches!(&x.response, Response::Err(e) if e.code == ER_LOCK_DEADLOCK) {
            self.lost
                .extend(self.open.remove(&x.session).unwrap_or_default());
            self.lost.insert(key);
            return;
        }
        let status = match x.more.last().unwrap_or(&x.response) {
            Response::Ok(ok) => Some(ok.status),
            Response::Rows(rs) => Some(rs.status),
            _ => None,
        };
        match status {
            Some(s) if s & SERVER_STATUS_IN_TRANS == 0 => {
                self.open.remove(&x.session);
            }
            // In a transaction, or an error inside one (it stays open).
            Some(_) | None => {
                let open = self.open.entry(x.session).or_default();
                if status.is_some() || !open.is_empty() {
                    if open.len() >= MAX_TXN_KEPT {
                        open.remove(0);
                    }
                    open.push(key);
                }
            }
        }
    }
}

impl NotReproduced {
    /// Whether the baseline's exchange `key` was not reproduced (it is then counted).
    pub(crate) fn exclude(&mut self, key: &Key) -> bool {
        let hit = self.keys.contains_key(key);
        self.excluded += u64::from(hit);
        hit
    }

    /// Whether the exchange (a baseline's key: any clone) belongs to a transaction production
    /// lost to a deadlock.
    pub(crate) fn lost_to_deadlock(&self, key: &Key) -> bool {
        self.lost.contains(&(key.0, key.1, 0))
    }

    pub(crate) fn into_report(self) -> Reproduction {
        let mut causes: BTreeMap<String, u64> = BTreeMap::new();
        for (key, (cause, labelled)) in &self.keys {
            // Known once the reference's transaction has been read to its end.
            let cause = if !labelled && self.lost_to_deadlock(key) {
                OrderLabel::names(OrderLabel::LOCK_CONFLICT)[0]
            } else {
                cause
            };
            *causes.entry(cause.to_string()).or_default() += 1;
        }
        let n = self.keys.len() as u64;
        Reproduction {
            reference: Some(self.reference),
            compared: self.compared,
            not_reproduced: n,
            not_reproduced_share: if self.compared > 0 {
                n as f64 / self.compared as f64
            } else {
                0.0
            },
            causes,
            excluded: self.excluded,
            note: "exchanges whose baseline answer differs from the reference's (production) \
                   were not reproduced by the baseline replay: they are kept out of the \
                   comparison and the verdict; a cause is the baseline replay's order label \
                   for the exchange (order-ambiguous, out-of-order, unpinned, lock-conflict, \
                   after-divergence), lock-conflict in a transaction production lost to a \
                   deadlock, or else the class of the difference"
                .into(),
        }
    }
}

/// What the report says when there is no reference.
pub(crate) fn without_reference() -> Reproduction {
    Reproduction {
        reference: None,
        compared: 0,
        not_reproduced: 0,
        not_reproduced_share: 0.0,
        causes: BTreeMap::new(),
        excluded: 0,
        note: "no --reference: answers that differ because the replays ran writes in another \
               order than production (or could not pin its ids and times) cannot be told apart \
               from real differences; analyze with --reference PROD.myrr to keep them out"
            .into(),
    }
}

/// An exchange waiting for its partner: its shape and answers.
type Waiting = HashMap<Key, (u32, Response, Vec<Response>, u8)>;

/// Joins `reference` (production's run) with `baseline` and returns the baseline's exchanges
/// whose answers differ. A reference holds each exchange once: it joins the baseline's clone 0.
pub(crate) fn not_reproduced(
    reference: &[PathBuf],
    baseline: &[PathBuf],
    opts: &Options,
) -> Result<NotReproduced, AnalyzeError> {
    let mut r = Side::open(reference)?;
    let mut b = Side::open(baseline)?;
    let mut shapes = Shapes::default();
    let (mut wait_r, mut wait_b) = (Waiting::default(), Waiting::default());
    let mut keys: HashMap<Key, (&'static str, bool)> = HashMap::default();
    // The baseline's order labels, waiting for their exchanges (which follow them).
    let mut labels: HashMap<Key, u8> = HashMap::default();
    let mut compared = 0u64;
    let mut deadlocks = Deadlocks::default();
    loop {
        let read_ref = match (r.done, b.done) {
            (true, true) => break,
            (false, true) => true,
            (true, false) => false,
            (false, false) => wait_r.len() <= wait_b.len(),
        };
        let this = if read_ref { &mut r } else { &mut b };
        let x = match this.next_item() {
            Some(Item::Exchange(x)) => x,
            Some(Item::Label(l)) => {
                if !read_ref {
                    labels.insert((l.session, l.seq, l.clone), l.labels);
                }
                continue;
            }
            Some(Item::Rows(_)) | None => continue,
        };
        let shape = shapes.of(&x);
        if read_ref {
            deadlocks.read(&x);
        }
        let key = (x.session, x.seq, if read_ref { 0 } else { x.clone });
        let label = if read_ref {
            0
        } else {
            labels.remove(&key).unwrap_or(0)
        };
        let (mine, other) = if read_ref {
            (&mut wait_r, &mut wait_b)
        } else {
            (&mut wait_b, &mut wait_r)
        };
        let Some(o) = other.remove(&key) else {
            mine.insert(key, (shape, x.response, x.more, label));
            continue;
        };
        let (rx, bx) = if read_ref {
            ((shape, x.response, x.more, label), o)
        } else {
            (o, (shape, x.response, x.more, label))
        };
        if rx.0 != bx.0 {
            // Another statement at the same place: not the same workload there.
            continue;
        }
        let sh = shapes.get_mut(shape);
        let mut outcome = compare(&rx.1, &bx.1, sh.ordered);
        if outcome == Outcome::Same && rx.2.len() != bx.2.len() {
            outcome = Outcome::Differs(Mismatch::ResponseKind);
        }
        if outcome == Outcome::Same {
            if let Some(o) =
                rx.2.iter()
                    .zip(&bx.2)
                    .map(|(x, y)| compare(x, y, sh.ordered))
                    .find(|o| *o != Outcome::Same)
            {
                outcome = o;
            }
        }
        match outcome {
            Outcome::NotCompared(_) => {}
            Outcome::Same | Outcome::OrderUnspecified => compared += 1,
            Outcome::Differs(m) => {
                compared += 1;
                // A time function's answer may differ: not a failure of the reproduction.
                if sh.nondeterministic && m.time_can_explain() {
                    continue;
                }
                if keys.len() >= MAX_NOT_REPRODUCED {
                    return Err(AnalyzeError::NotReproducible {
                        limit: MAX_NOT_REPRODUCED,
                    });
                }
                let cause = match bx.3 {
                    0 => (m.name(), false),
                    l => (OrderLabel::names(l)[0], true),
                };
                keys.insert(key, cause);
            }
        }
    }
    for side in [&mut r, &mut b] {
        if let Some(d) = side.reader.take_damage() {
            if !opts.ignore_damage {
                return Err(AnalyzeError::Damaged(d));
            }
        }
    }
    if r.exchanges == 0 {
        return Err(AnalyzeError::Empty {
            side: "the reference",
            files: r.info().files.join(", "),
        });
    }
    Ok(NotReproduced {
        keys,
        compared,
        reference: r.info(),
        excluded: 0,
        lost: deadlocks.lost,
    })
}
