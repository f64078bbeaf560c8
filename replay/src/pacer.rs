//! Precise waits for paced replay.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds every sleep up to the
//! next tick, so by itself it would start each paced exchange up to 1 ms late. A session that
//! must wait uses a timerfd instead, armed with the exact remaining time (ns) and watched by
//! tokio's reactor: it wakes within the kernel's timer slack, tens of µs. Where no timerfd can
//! be had (out of file descriptors), the session falls back to tokio's sleep.
//!
//! A session alone on its thread does not need this: it sleeps in the thread itself
//! ([`crate::waiting::sleep_alone`]).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

pub(crate) struct PreciseTimer {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl PreciseTimer {
    pub(crate) fn new() -> Self {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .ok()
        .and_then(|fd| {
            // SAFETY: tokio's only non-deprecated registration is `unsafe`: the descriptor must
            // stay open and name the same timer while registered. An `OwnedFd` moved into the
            // `AsyncFd` is closed only when the `AsyncFd` drops it.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
        });
        Self { fd }
    }

    /// Returns at `at`, not before.
    pub(crate) async fn sleep_until(&self, at: Instant) {
        let Some(fd) = &self.fd else {
            return tokio::time::sleep_until(at).await;
        };
        loop {
            let now = Instant::now();
            if at <= now {
                return;
            }
            if arm(fd.get_ref(), at - now).is_err() {
                return tokio::time::sleep_until(at).await;
            }
            let Ok(mut ready) = fd.readable().await else {
                return tokio::time::sleep_until(at).await;
            };
            let mut expirations = [0u8; 8];
            if rustix::io::read(fd.get_ref(), &mut expirations).is_err() {
                ready.clear_ready(); // not expired yet (EAGAIN): wait again
            }
        }
    }
}

/// Arms the timer to fire once, `after` from now.
fn arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: after.as_secs() as _,
            tv_nsec: after.subsec_nanos() as _,
        },
    };
    timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits end at their deadline, not at the next millisecond tick.
    #[tokio::test(flavor = "current_thread")]
    async fn wakes_within_a_fraction_of_a_millisecond() {
        let t = PreciseTimer::new();
        assert!(t.fd.is_some(), "timerfd available on Linux");
        let mut late = Vec::new();
        for i in 0..200u64 {
            let at = Instant::now() + Duration::from_micros(150 + (i * 37) % 900);
            t.sleep_until(at).await;
            let now = Instant::now();
            assert!(now >= at, "woke early");
            late.push((now - at).as_micros());
        }
        late.sort_unstable();
        let p50 = late[late.len() / 2];
        // tokio's own sleep would be ~500 µs late at the median on these deadlines.
        assert!(p50 < 300, "median lateness {p50} µs: {late:?}");
    }
}
