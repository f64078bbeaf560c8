//! Joining two runs exchange by exchange. Both runs are streamed; an exchange waits only until
//! its partner, the exchange with the same (session, seq, clone), turns up on the other side.
//! A replay at `--scale N` against a single baseline holds N clones of each exchange, and all
//! of them join the one baseline exchange. Each joined pair is counted into the totals and its
//! shape (latency, answer comparison); what is still waiting at the end had no partner.
//! [`analyze`] then builds the report from the totals, the shapes and the verdict.

use std::path::PathBuf;

use hdrhistogram::Histogram;
use myrr_recording::{
    Command, Event, Exchange, OrderLabel, Response, RowSample, RunKind, RunReader,
};
use rustc_hash::FxHashMap as HashMap;

use crate::chatter::is_driver_chatter;
use crate::compare::{compare, Mismatch, Outcome};
use crate::ramp::RampTracker;
use crate::report::*;
use crate::reproduction::{self, NotReproduced};
use crate::shapes::{self, Shapes, Side as ExampleSide};
use crate::stats::{new_histogram, ratio, record, Percentiles};
use crate::timeline::{self, RunSeries};
use crate::unreplayed::Tally;
use crate::{verdict, AnalyzeError, Options};

/// (session, seq, clone): how exchanges of two runs join.
pub(crate) type Key = (u64, u64, u32);

/// What is kept of an exchange while it waits for its partner.
struct Slim {
    shape: u32,
    /// An application statement, not driver chatter.
    application: bool,
    timed: bool,
    service_us: u64,
    since_scheduled_us: u64,
    response: Response,
    more: Vec<Response>,
    command: Command,
    /// The answer's first rows, when the run kept them (they follow the exchange).
    sample: Option<RowSample>,
    /// The replay's `OrderLabel` bits (they precede the exchange).
    labels: u8,
}

/// What a run yields to the join: an exchange, or the rows kept of one.
pub(crate) enum Item {
    Exchange(Exchange),
    Rows(RowSample),
    Label(OrderLabel),
}

/// Examples whose rows have not been read yet: (baseline side?, key) → (shape, example index).
type Pending = HashMap<(bool, Key), (u32, usize)>;

/// One run as it is read: its reader, what its headers say, and its overall latency.
pub(crate) struct Side {
    files: Vec<PathBuf>,
    pub(crate) reader: RunReader,
    kind: RunKind,
    source: String,
    server_version: Option<String>,
    sessions: u64,
    pub(crate) exchanges: u64,
    pub(crate) done: bool,
    overall_service: Histogram<u64>,
    overall_sched: Histogram<u64>,
    /// The run over time.
    series: RunSeries,
    /// Exchanges the run did not replay.
    unreplayed: Tally,
    /// A ramp run's steps (`replay --ramp`).
    ramp: Option<RampTracker>,
}

impl Side {
    pub(crate) fn open(files: &[PathBuf]) -> Result<Self, AnalyzeError> {
        let reader = RunReader::open(files)?;
        let h = reader.headers().first().cloned();
        let kind = h.as_ref().map_or(RunKind::Capture, |h| h.kind);
        let server_version = h.as_ref().and_then(|h| {
            h.options
                .iter()
                .find(|(k, _)| k == "server_version")
                .map(|(_, v)| v.clone())
        });
        let ramp = RampTracker::of(reader.headers());
        Ok(Self {
            ramp,
            files: files.to_vec(),
            source: reader
                .headers()
                .iter()
                .map(|h| h.source.clone())
                .collect::<Vec<_>>()
                .join(", "),
            reader,
            kind,
            server_version,
            sessions: 0,
            exchanges: 0,
            done: false,
            overall_service: new_histogram(),
            overall_sched: new_histogram(),
            series: RunSeries::default(),
            unreplayed: Tally::default(),
        })
    }

    /// The next exchange or row sample, or None at the end.
    pub(crate) fn next_item(&mut self) -> Option<Item> {
        for e in self.reader.by_ref() {
            match e {
                Event::Exchange(x) => {
                    self.exchanges += 1;
                    self.unreplayed.count(&x.response);
                    return Some(Item::Exchange(x));
                }
                Event::Rows(r) => return Some(Item::Rows(r)),
                Event::Label(l) => return Some(Item::Label(l)),
                Event::Phase(p) => {
                    if let Some(r) = &mut self.ramp {
                        r.phase(&p);
                    }
                }
                Event::SessionStart(_) => self.sessions += 1,
                _ => {}
            }
        }
        self.done = true;
        None
    }

    pub(crate) fn info(&self) -> RunInfo {
        RunInfo {
            files: self.files.iter().map(|p| p.display().to_string()).collect(),
            kind: self.kind.name().to_string(),
            source: self.source.clone(),
            server_version: self.server_version.clone(),
            sessions: self.sessions,
            exchanges: self.exchanges,
        }
    }
}

/// Overall latency of both runs, and the candidate's over the baseline's.
fn side_by_side(b: &Histogram<u64>, c: &Histogram<u64>) -> SideBySide {
    let (pb, pc) = (Percentiles::of(b), Percentiles::of(c));
    SideBySide {
        p50_ratio: ratio(pb.p50_us, pc.p50_us),
        p95_ratio: ratio(pb.p95_us, pc.p95_us),
        p99_ratio: ratio(pb.p99_us, pc.p99_us),
        baseline: pb,
        candidate: pc,
    }
}

/// Joins and compares two runs. Either may be several files (the shards of one replay).
pub fn analyze(
    baseline: &[PathBuf],
    candidate: &[PathBuf],
    opts: &Options,
) -> Result<Report, AnalyzeError> {
    let mut reference = match &opts.reference {
        Some(r) => Some(reproduction::not_reproduced(r, baseline, opts)?),
        None => None,
    };
    let mut b = Side::open(baseline)?;
    let mut c = Side::open(candidate)?;
    if let Some(w) = opts.bucket_s {
        b.series = RunSeries::starting_at(w);
        c.series = RunSeries::starting_at(w);
    }
    let mut shapes = Shapes::default();
    let mut totals = Totals::default();
    let latency_of = |x: &Exchange| -> (u64, u64) {
        let service = x.end_us.saturating_sub(x.start_us);
        let sched = x
            .end_us
            .saturating_sub(x.scheduled_us.unwrap_or(x.start_us));
        (service, sched)
    };
    // A capture holds each exchange once; a replay with --scale N holds N clones of it. Then
    // every clone joins the baseline's single exchange.
    let scale = |s: &Side| {
        s.reader
            .headers()
            .first()
            .and_then(|h| h.options.iter().find(|(k, _)| k == "scale"))
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1)
    };
    let (scale_b, scale_c) = (scale(&b), scale(&c));
    let fanout = if scale_b == 1 && scale_c > 1 {
        scale_c
    } else {
        1
    };
    // Baseline exchanges waiting for (the rest of) their partners, and candidate exchanges
    // waiting for theirs.
    let mut wait_b: HashMap<Key, (Slim, u32)> = HashMap::default();
    let mut wait_c: HashMap<Key, Slim> = HashMap::default();
    let mut pending = Pending::default();
    // Order labels read, waiting for their exchanges (which follow them).
    let (mut labels_b, mut labels_c): (HashMap<Key, u8>, HashMap<Key, u8>) = Default::default();
    // Read alternately, favouring the side that is behind (fewer exchanges waiting), so what
    // waits for a partner stays as small as the two runs' orders allow.
    loop {
        let read_base = match (b.done, c.done) {
            (true, true) => break,
            (false, true) => true,
            (true, false) => false,
            (false, false) => wait_b.len() <= wait_c.len(),
        };
        let this = if read_base { &mut b } else { &mut c };
        let x = match this.next_item() {
            None => continue,
            Some(Item::Exchange(x)) => x,
            Some(Item::Label(l)) => {
                let labels = if read_base {
                    &mut labels_b
                } else {
                    &mut labels_c
                };
                labels.insert((l.session, l.seq, l.clone), l.labels);
                continue;
            }
            Some(Item::Rows(r)) => {
                let key = (r.session, r.seq, r.clone);
                let waiting = if read_base {
                    wait_b.get_mut(&key).map(|(s, _)| s)
                } else {
                    wait_c.get_mut(&key)
                };
                match waiting {
                    Some(s) => s.sample = Some(r),
                    None => {
                        if let Some((shape, i)) = pending.remove(&(read_base, key)) {
                            shapes.attach(shape, i, read_base, key, r);
                        }
                    }
                }
                continue;
            }
        };
        let shape = shapes.of(&x);
        let application = !is_driver_chatter(&x.command, shapes.fingerprint(shape));
        let (service, sched) = latency_of(&x);
        // Commands with no answer (close, quit, send_long_data) have no latency to compare.
        let timed = x.command.expects_response();
        let measured = timed && !matches!(x.response, Response::Skipped(_) | Response::Missing(_));
        if measured {
            record(&mut this.overall_service, service);
            record(&mut this.overall_sched, sched);
            let measure = if opts.since_scheduled { sched } else { service };
            this.series.record(&x, shape, (service, sched, measure));
        }
        if let Some(r) = &mut this.ramp {
            r.exchange(&x, measured.then_some((service, sched)));
        }
        let key = (x.session, x.seq, x.clone);
        let slim = Slim {
            shape,
            application,
            timed,
            service_us: service,
            since_scheduled_us: sched,
            response: x.response,
            more: x.more,
            command: x.command,
            sample: None,
            labels: if read_base {
                &mut labels_b
            } else {
                &mut labels_c
            }
            .remove(&key)
            .unwrap_or(0),
        };
        let mut join = |ck: Key, bk: Key, b: Slim, c: Slim| {
            join(
                &mut shapes,
                &mut totals,
                &mut pending,
                reference.as_mut(),
                opts,
                (ck, bk),
                b,
                c,
            )
        };
        if read_base && fanout == 1 {
            match wait_c.remove(&key) {
                Some(cs) => join(key, key, slim, cs),
                None => {
                    wait_b.insert(key, (slim, 1));
                }
            }
        } else if read_base {
            let mut left = fanout;
            for k in 0..fanout {
                let ck = if fanout > 1 { (key.0, key.1, k) } else { key };
                if let Some(cs) = wait_c.remove(&ck) {
                    join(ck, key, clone_slim(&slim), cs);
                    left -= 1;
                }
            }
            if left > 0 {
                wait_b.insert(key, (slim, left));
            }
        } else {
            let bk = if fanout > 1 { (key.0, key.1, 0) } else { key };
            if fanout == 1 {
                match wait_b.remove(&bk) {
                    Some((bs, _)) => join(key, bk, bs, slim),
                    None => {
                        wait_c.insert(key, slim);
                    }
                }
                continue;
            }
            match wait_b.get_mut(&bk) {
                Some((bs, left)) => {
                    join(key, bk, clone_slim(bs), slim);
                    *left -= 1;
                    if *left == 0 {
                        wait_b.remove(&bk);
                    }
                }
                None => {
                    wait_c.insert(key, slim);
                }
            }
        }
    }
    for side in [&mut b, &mut c] {
        if let Some(d) = side.reader.take_damage() {
            if !opts.ignore_damage {
                return Err(AnalyzeError::Damaged(d));
            }
        }
    }
    if b.exchanges == 0 {
        return Err(AnalyzeError::Empty {
            side: "the baseline",
            files: b.info().files.join(", "),
        });
    }
    if c.exchanges == 0 {
        return Err(AnalyzeError::Empty {
            side: "the candidate",
            files: c.info().files.join(", "),
        });
    }
    let differing = totals
        .not_compared
        .get("different_command")
        .copied()
        .unwrap_or(0);
    if totals.joined == 0 || differing > totals.joined {
        return Err(AnalyzeError::NothingJoins {
            baseline: b.exchanges,
            candidate: c.exchanges,
        });
    }
    // What is left waiting had no partner.
    let ramp_stopped = c.ramp.as_ref().is_some_and(RampTracker::stopped);
    for (_, (s, left)) in wait_b.drain() {
        let reason = match s.response {
            Response::Missing(_) => "missing_answer_in_baseline",
            // The clones of the steps a ramp did not run (or cut short).
            _ if ramp_stopped => "ramp_stopped",
            _ => "not_in_candidate",
        };
        *totals.only_baseline.entry(reason.into()).or_default() += left as u64;
    }
    for (_, s) in wait_c.drain() {
        let reason = match s.response {
            Response::Skipped(_) => "skipped_not_in_baseline",
            _ => "not_in_baseline",
        };
        *totals.only_candidate.entry(reason.into()).or_default() += 1;
    }
    let reproduction = match reference {
        Some(r) => r.into_report(),
        None => reproduction::without_reference(),
    };
    Ok(finish(b, c, shapes, totals, reproduction, opts))
}

fn clone_slim(s: &Slim) -> Slim {
    Slim {
        shape: s.shape,
        application: s.application,
        timed: s.timed,
        service_us: s.service_us,
        since_scheduled_us: s.since_scheduled_us,
        response: s.response.clone(),
        more: s.more.clone(),
        command: s.command.clone(),
        sample: s.sample.clone(),
        labels: s.labels,
    }
}

/// One joined pair: its latency and answers, counted into the totals and its shape. `keys`:
/// the candidate's and the baseline's (they differ with a fan-out); an example whose rows are
/// still to come is noted in `pending`.
#[allow(clippy::too_many_arguments)]
fn join(
    shapes: &mut Shapes,
    totals: &mut Totals,
    pending: &mut Pending,
    reference: Option<&mut NotReproduced>,
    opts: &Options,
    (key, bkey): (Key, Key),
    b: Slim,
    c: Slim,
) {
    if b.shape != c.shape {
        // Same session and position, another statement: not the same workload.
        *totals
            .not_compared
            .entry("different_command".into())
            .or_default() += 1;
        return;
    }
    totals.joined += 1;
    let sh = shapes.get_mut(b.shape);
    let measured = |s: &Slim| !matches!(s.response, Response::Skipped(_) | Response::Missing(_));
    if b.timed && measured(&b) && measured(&c) {
        let (lb, lc) = if opts.since_scheduled {
            (b.since_scheduled_us, c.since_scheduled_us)
        } else {
            (b.service_us, c.service_us)
        };
        sh.record_latency(lb, lc);
    }
    // Production lost this exchange's transaction to a deadlock: its order with the
    // survivors is not recorded (see `reproduction`).
    let lost = reference
        .as_deref()
        .is_some_and(|r| r.lost_to_deadlock(&bkey));
    // The baseline did not reproduce production here: the candidate cannot be judged by it.
    if reference.is_some_and(|r| r.exclude(&bkey)) {
        *totals
            .not_compared
            .entry("not_reproduced".into())
            .or_default() += 1;
        return;
    }
    let mut outcome = compare(&b.response, &c.response, sh.ordered);
    if outcome == Outcome::Same {
        if b.more.len() != c.more.len() {
            outcome = Outcome::Differs(Mismatch::ResponseKind);
        } else {
            for (x, y) in b.more.iter().zip(&c.more) {
                let o = compare(x, y, sh.ordered);
                if o != Outcome::Same {
                    outcome = o;
                    break;
                }
            }
        }
    }
    // Skipped or missing answers are not compared (`Outcome::NotCompared`): never mismatches.
    if !matches!(outcome, Outcome::NotCompared(_)) {
        totals.compared += 1;
        totals.application_compared += u64::from(b.application);
    }
    match outcome {
        Outcome::Same => totals.same += 1,
        Outcome::OrderUnspecified => {
            totals.same += 1;
            totals.order_unspecified += 1;
        }
        Outcome::NotCompared(why) => *totals.not_compared.entry(why.into()).or_default() += 1,
        Outcome::Differs(_) if b.labels | c.labels != 0 || lost => {
            // By the first label (one count per exchange).
            let labels = b.labels | c.labels | if lost { OrderLabel::LOCK_CONFLICT } else { 0 };
            let name = OrderLabel::names(labels)[0];
            *totals.order_dependent.entry(name.into()).or_default() += 1;
        }
        Outcome::Differs(m) => {
            if sh.nondeterministic && m.time_can_explain() {
                totals.nondeterministic_differences += 1;
            } else {
                totals.mismatched += 1;
                totals.application_mismatched += u64::from(b.application);
            }
            let statement = shapes.statement(key.0, &c.command);
            let (shape, base_kept, cand_kept) = (b.shape, b.sample.is_some(), c.sample.is_some());
            let kept = shapes.get_mut(shape).record_difference(
                m,
                key,
                statement,
                (&b.response, ExampleSide::of(&b.response, b.sample.clone())),
                (&c.response, ExampleSide::of(&c.response, c.sample.clone())),
                opts.examples,
            );
            if let Some(i) = kept {
                if !base_kept {
                    pending.insert((true, bkey), (shape, i));
                }
                if !cand_kept {
                    pending.insert((false, key), (shape, i));
                }
            }
        }
    }
}

/// The report, once both runs are read and what never joined is counted.
fn finish(
    mut b: Side,
    mut c: Side,
    mut shapes: Shapes,
    mut totals: Totals,
    reproduction: crate::report::Reproduction,
    opts: &Options,
) -> Report {
    let unreplayed_of = |s: &mut Side| {
        std::mem::take(&mut s.unreplayed).into_report(s.exchanges, s.kind == RunKind::Replay)
    };
    let unreplayed = Unreplayed {
        baseline: unreplayed_of(&mut b),
        candidate: unreplayed_of(&mut c),
    };
    let rate = |part: u64, all: u64| {
        if all > 0 {
            part as f64 / all as f64
        } else {
            0.0
        }
    };
    totals.mismatch_rate = rate(totals.mismatched, totals.compared);
    totals.application_mismatch_rate =
        rate(totals.application_mismatched, totals.application_compared);
    let index = shapes.take_index();
    let mut out_shapes = shapes.into_report(opts, (b.kind, c.kind));
    let mismatches = shapes::mismatch_totals(&out_shapes);
    let (hb, hc) = if opts.since_scheduled {
        (&b.overall_sched, &c.overall_sched)
    } else {
        (&b.overall_service, &c.overall_service)
    };
    let service = side_by_side(&b.overall_service, &c.overall_service);
    let since_scheduled = side_by_side(&b.overall_sched, &c.overall_sched);
    let overall = if opts.since_scheduled {
        &since_scheduled
    } else {
        &service
    };
    // Judged on the shapes in the order they were first seen: that orders the reasons.
    let verdict = verdict::verdict(&out_shapes, overall, &totals, &unreplayed, opts);
    out_shapes.sort_by(|a, b| b.added_us.cmp(&a.added_us).then_with(|| a.id.cmp(&b.id)));
    let timeline = timeline::timeline(
        std::mem::take(&mut b.series),
        std::mem::take(&mut c.series),
        &out_shapes,
        |s| index.get(&s.fingerprint).copied(),
    );
    let curve = [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
    ]
    .iter()
    .map(|&q| CurvePoint {
        percentile: q,
        baseline_us: hb.value_at_quantile(q / 100.0),
        candidate_us: hc.value_at_quantile(q / 100.0),
    })
    .collect();
    let kind = format!("{}_vs_{}", b.kind.name(), c.kind.name());
    let note = match (b.kind, c.kind) {
        (RunKind::Capture, RunKind::Replay) => "baseline latency was seen on the production wire, candidate latency from the replay client: network position differs; replay the baseline server too for a like-for-like comparison",
        (RunKind::Replay, RunKind::Replay) => "both sides replayed by myrr from the same position: latencies compare like for like",
        _ => "runs of the same kind",
    }
    .to_string();
    let ramp = c.ramp.take().map(|r| r.into_report(opts));
    Report {
        ramp,
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        unreplayed,
        reproduction,
        comparison: Comparison {
            kind,
            note,
            baseline: b.info(),
            candidate: c.info(),
            latency_measure: if opts.since_scheduled {
                "since_scheduled"
            } else {
                "service"
            }
            .into(),
        },
        totals,
        latency: Latency {
            service,
            since_scheduled,
            curve,
        },
        timeline,
        shapes: out_shapes,
        mismatches,
        verdict,
    }
}
