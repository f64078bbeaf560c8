//! A run made of several files (the shards of a replay, or captures from several hosts), read
//! as one stream of events ordered by time, with run-wide session ids.

use std::fs::File;
use std::io::BufReader;
use std::iter::Peekable;
use std::path::PathBuf;

use crate::event::Event;
use crate::format::{run_session_id, FormatError, Header, RecordingReader};

/// Time of an event on the run's timeline.
pub fn event_time(e: &Event) -> u64 {
    match e {
        Event::SessionStart(s) => s.start_us,
        Event::Exchange(x) => x.start_us,
        Event::Gap(g) => g.at_us,
        Event::SessionEnd(e) => e.end_us,
        Event::Backfill(b) => b.at_us,
        Event::Rows(r) => r.at_us,
        Event::Label(l) => l.at_us,
        Event::Phase(p) => p.at_us,
    }
}

type FileReader = Peekable<RecordingReader<BufReader<File>>>;

/// Merges the files of a run by event time; each file is read in order. Session ids are made
/// run-wide with [`run_session_id`]. The first damage met ends that file's stream and is kept
/// in [`RunReader::damage`].
pub struct RunReader {
    readers: Vec<(usize, crate::format::RunKind, FileReader)>,
    headers: Vec<Header>,
    damage: Option<FormatError>,
}

impl RunReader {
    pub fn open(paths: &[PathBuf]) -> Result<Self, FormatError> {
        let mut readers = Vec::new();
        let mut headers = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let r = RecordingReader::open(p)?;
            headers.push(r.header().clone());
            readers.push((i, r.header().kind, r.peekable()));
        }
        Ok(Self {
            readers,
            headers,
            damage: None,
        })
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The damage that ended a file early, once the stream has been read past it.
    pub fn damage(&self) -> Option<&FormatError> {
        self.damage.as_ref()
    }

    pub fn take_damage(&mut self) -> Option<FormatError> {
        self.damage.take()
    }
}

impl Iterator for RunReader {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let mut best: Option<(usize, u64)> = None;
            let mut damaged: Option<usize> = None;
            for (slot, (_, _, r)) in self.readers.iter_mut().enumerate() {
                match r.peek() {
                    Some(Ok(e)) => {
                        let t = event_time(e);
                        if best.is_none_or(|(_, bt)| t < bt) {
                            best = Some((slot, t));
                        }
                    }
                    Some(Err(_)) => damaged = Some(slot),
                    None => {}
                }
            }
            if let Some(slot) = damaged {
                if let Some(Err(e)) = self.readers[slot].2.next() {
                    self.damage.get_or_insert(e);
                }
                continue;
            }
            let (slot, _) = best?;
            let (i, kind, r) = &mut self.readers[slot];
            let (i, kind) = (*i, *kind);
            let Some(Ok(mut e)) = r.next() else { continue };
            match &mut e {
                Event::SessionStart(s) => s.session = run_session_id(kind, i, s.session),
                Event::Exchange(x) => x.session = run_session_id(kind, i, x.session),
                Event::Gap(g) => g.session = run_session_id(kind, i, g.session),
                Event::SessionEnd(s) => s.session = run_session_id(kind, i, s.session),
                Event::Rows(r) => r.session = run_session_id(kind, i, r.session),
                Event::Label(l) => l.session = run_session_id(kind, i, l.session),
                Event::Phase(_) => {}
                Event::Backfill(b) => {
                    b.session = run_session_id(kind, i, b.session);
                    if let crate::BackfillSource::Inferred { from_session } = &mut b.source {
                        *from_session = run_session_id(kind, i, *from_session);
                    }
                }
            }
            return Some(e);
        }
    }
}
