//! `run` driven by a source in memory: frames built with etherparse, a clock the test moves.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use etherparse::PacketBuilder;
use myrr_recording::{Command, EndReason, Header, RecordingReader, Response, RunKind, SessionEnd};

use super::*;
use crate::source::{Drops, LinkType, Packet};

const CLIENT_PORT: u16 = 40000;

/// A MySQL packet (sequence id `seq`) in a TCP segment of a connection seen mid-stream:
/// client sequence numbers from 1000, server ones from 5000.
fn segment(to_server: bool, seq: u32, ack: u32, seq_id: u8, payload: &[u8]) -> Vec<u8> {
    let mut data = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    data.push(seq_id);
    data.extend_from_slice(payload);
    let (src, dst, sport, dport) = if to_server {
        ([10, 0, 0, 1], [10, 0, 0, 2], CLIENT_PORT, 3306)
    } else {
        ([10, 0, 0, 2], [10, 0, 0, 1], 3306, CLIENT_PORT)
    };
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 65535)
        .ack(ack)
        .psh();
    let mut out = Vec::with_capacity(b.size(data.len()));
    b.write(&mut out, &data).unwrap();
    out
}

/// One step of a source in memory.
enum Step {
    Frame(u64, Vec<u8>),
    Idle,
    Fail(SourceError),
}

/// The `n`th query of the connection (`SELECT n`, `n` < 10) and its OK: each query is 13
/// bytes of TCP payload, each OK 11.
fn exchange(n: u32, at_us: u64) -> [Step; 2] {
    let sql = format!("SELECT {n}");
    let mut query = vec![0x03];
    query.extend_from_slice(sql.as_bytes());
    let (c, s) = (1000 + 13 * n, 5000 + 11 * n);
    [
        Step::Frame(at_us, segment(true, c, s, 0, &query)),
        Step::Frame(
            at_us + 100,
            segment(false, s, c + 13, 1, &[0, 0, 0, 2, 0, 0, 0]),
        ),
    ]
}

/// A wall clock the test moves: every step of the source takes `step`.
#[derive(Clone)]
struct Clock {
    t0: Instant,
    elapsed: Rc<Cell<Duration>>,
}

impl Clock {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            elapsed: Rc::default(),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed.get()
    }
}

struct Memory {
    steps: std::vec::IntoIter<Step>,
    live: bool,
    clock: Clock,
    step: Duration,
    frame: Vec<u8>,
}

impl Memory {
    fn new(steps: Vec<Step>, live: bool) -> Self {
        Self {
            steps: steps.into_iter(),
            live,
            clock: Clock::new(),
            step: Duration::from_millis(300),
            frame: Vec::new(),
        }
    }
}

impl PacketSource for Memory {
    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        let Some(step) = self.steps.next() else {
            return Ok(Next::End);
        };
        self.clock.elapsed.set(self.clock.elapsed.get() + self.step);
        match step {
            Step::Frame(ts_us, frame) => {
                self.frame = frame;
                Ok(Next::Packet(Packet {
                    ts_us,
                    link: LinkType::Ethernet,
                    frame: &self.frame,
                }))
            }
            Step::Idle => Ok(Next::Idle),
            Step::Fail(e) => Err(e),
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn drops(&self) -> Drops {
        Drops {
            kernel: 7,
            interface: 1,
        }
    }
}

/// Runs `source` into a recording in memory; returns the summary and the events read back.
fn record(mut source: Memory) -> (Summary, Vec<Event>) {
    let header = Header::new(RunKind::Capture, "memory".into(), vec![]);
    let mut writer = RecordingWriter::new(Vec::new(), &header).unwrap();
    let summary = run(CaptureConfig::default(), &mut source, &mut writer).unwrap();
    let bytes = writer.finish().unwrap();
    let reader = RecordingReader::new(&bytes[..], Path::new("memory.myrr")).unwrap();
    assert_eq!(reader.header(), &header);
    let events = reader.collect::<Result<Vec<_>, _>>().unwrap();
    (summary, events)
}

fn queries(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Exchange(x) => match (&x.command, &x.response) {
                (Command::Query { sql, .. }, Response::Ok(_)) => {
                    Some(String::from_utf8_lossy(sql).into_owned())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn damage() -> SourceError {
    SourceError::Damaged {
        path: PathBuf::from("first.pcap"),
        packet: 2,
        offset: 1234,
        size: 2000,
        msg: "truncated dump file".into(),
    }
}

#[test]
fn frames_from_memory_come_back_from_the_recording() {
    let steps = [exchange(0, 1_000_000), exchange(1, 2_000_000)]
        .into_iter()
        .flatten()
        .collect();
    let (summary, events) = record(Memory::new(steps, false));
    assert_eq!(queries(&events), ["SELECT 0", "SELECT 1"]);
    assert!(matches!(&events[0], Event::SessionStart(s) if s.mid_stream));
    assert!(matches!(
        events.last(),
        Some(Event::SessionEnd(SessionEnd {
            reason: EndReason::EndOfRun,
            ..
        }))
    ));
    assert_eq!(summary.events, events.len() as u64);
    assert_eq!((summary.stats.packets, summary.stats.flows), (4, 1));
    assert_eq!(summary.stats.decode.exchanges, 2);
    // The source's drops are the capture's.
    assert_eq!(
        (summary.stats.kernel_drops, summary.stats.interface_drops),
        (7, 1)
    );
    assert!(summary.source_errors.is_empty());
}

/// A damaged input (a truncated file) is reported with its place; what was read before it is
/// kept, and the capture goes on with the source's next input.
#[test]
fn a_source_error_keeps_what_came_before_and_is_reported() {
    let mut steps: Vec<Step> = exchange(0, 1_000_000).into();
    steps.push(Step::Fail(damage()));
    steps.extend(exchange(1, 2_000_000));
    let (summary, events) = record(Memory::new(steps, false));
    assert_eq!(queries(&events), ["SELECT 0", "SELECT 1"]);
    let [err] = &summary.source_errors[..] else {
        panic!("{:?}", summary.source_errors);
    };
    let msg = err.to_string();
    assert!(
        msg.contains("first.pcap") && msg.contains("byte 1234 of 2000"),
        "{msg}"
    );
}

/// What a sink saw, on the test's clock.
struct Log {
    clock: Clock,
    /// When each event was pushed.
    pushed: Vec<Duration>,
    /// When each seal came, and how many events had been pushed by then.
    seals: Vec<(Duration, usize)>,
}

impl EventSink for Log {
    fn push(&mut self, _: &Event) -> Result<(), WriteError> {
        self.pushed.push(self.clock.elapsed.get());
        Ok(())
    }

    fn seal(&mut self) -> Result<(), WriteError> {
        self.seals
            .push((self.clock.elapsed.get(), self.pushed.len()));
        Ok(())
    }
}

/// Queries, then 3 s of silence, then more: every event reaches a seal at most a second (and
/// one step of the source) after it was decoded, quiet link or not.
fn sealed(live: bool) -> Log {
    let mut steps: Vec<Step> = exchange(0, 1_000_000).into();
    steps.extend((0..10).map(|_| Step::Idle));
    steps.extend(exchange(1, 5_000_000));
    steps.extend((0..10).map(|_| Step::Idle));
    let mut source = Memory::new(steps, live);
    let clock = source.clock.clone();
    let mut log = Log {
        clock: clock.clone(),
        pushed: Vec::new(),
        seals: Vec::new(),
    };
    run_with_clock(
        CaptureConfig::default(),
        &mut source,
        None,
        &mut log,
        || clock.now(),
    )
    .unwrap();
    log
}

#[test]
fn a_live_capture_seals_its_output_at_least_once_a_second() {
    let step = Duration::from_millis(300);
    let log = sealed(true);
    assert!(!log.seals.is_empty());
    let mut last = Duration::ZERO;
    for &(at, _) in &log.seals {
        let gap = at - last;
        assert!(
            gap >= SEAL_EVERY && gap <= SEAL_EVERY + step,
            "{:?}",
            log.seals
        );
        last = at;
    }
    // Every event decoded before the last second was sealed within a second of it.
    let end = log.seals.last().unwrap().0;
    for (i, &pushed) in log.pushed.iter().enumerate() {
        if pushed + SEAL_EVERY + step <= end {
            let (sealed_at, _) = log.seals.iter().find(|(_, n)| *n > i).unwrap();
            assert!(*sealed_at <= pushed + SEAL_EVERY + step, "{:?}", log.seals);
        }
    }
}

/// Files are not sealed by the clock: their blocks are cut by size alone, so a capture of the
/// same file gives the same bytes however fast it ran.
#[test]
fn a_capture_from_files_is_not_sealed_by_the_clock() {
    let log = sealed(false);
    assert!(log.seals.is_empty(), "{:?}", log.seals);
    assert!(!log.pushed.is_empty());
}
