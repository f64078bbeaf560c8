//! Precise waits for paced replay.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds every sleep up to the
//! next tick, so by itself it would start each paced exchange up to 1 ms late. A session that
//! must wait uses a timerfd instead, armed with the exact remaining time (ns) and watched by
//! tokio's reactor: it wakes within the kernel's timer slack, tens of µs. Where no timerfd can
//! be had (out of file descriptors), the session falls back to tokio's sleep.
//!
//! A session alone on its thread sleeps in the thread itself ([`sleep_alone`]), as it waits
//! for its answers in a blocking recv(2): the runtime's park, its timerfd and the task wake-up
//! are work (and a context switch) per exchange that a thread with nothing else to do need
//! not pay. It sleeps with nanosleep in chunks of up to 10 ms (session threads have a timer
//! slack of 1 ns): user CPU per paced exchange fell from 19 to 15.6 µs (16 sessions × 1
//! query/ms, interleaved runs).

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

use crate::pool::ALONE_WAIT;

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

/// Sleeps until `at` in the calling thread, if it runs only the calling session; `false`
/// (early) when another session comes to the thread or `give_up()` turns true (checked every
/// [`ALONE_WAIT`]): the caller then waits in the runtime, or not at all.
pub(crate) fn sleep_alone(at: Instant, give_up: impl Fn() -> bool) -> bool {
    loop {
        if crate::pool::sessions_on_this_thread() != 1 || give_up() {
            return false;
        }
        let now = Instant::now();
        if at <= now {
            return true;
        }
        std::thread::sleep((at - now).min(ALONE_WAIT));
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

    /// A lone session sleeps in its thread to the deadline; it stops sleeping there when it
    /// is asked to, or when another session comes to its thread (which needs the runtime).
    #[test]
    fn a_lone_session_sleeps_in_its_thread_until_another_comes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        // Not a pool thread: no session of its own, no sleep here.
        assert!(!sleep_alone(
            Instant::now() + Duration::from_secs(5),
            || false
        ));
        let live = Arc::new(AtomicUsize::new(1));
        crate::pool::set_live_counter(live.clone());

        let at = Instant::now() + ALONE_WAIT * 3 + Duration::from_micros(300);
        assert!(sleep_alone(at, || false));
        assert!(Instant::now() >= at, "woke early");

        let t = Instant::now();
        assert!(!sleep_alone(t + Duration::from_secs(5), || true));
        assert!(t.elapsed() < Duration::from_secs(1));

        let joins = live.clone();
        let joiner = std::thread::spawn(move || {
            std::thread::sleep(ALONE_WAIT * 5);
            joins.store(2, Ordering::Relaxed);
        });
        let t = Instant::now();
        assert!(!sleep_alone(t + Duration::from_secs(5), || false));
        let waited = t.elapsed();
        assert!(
            waited >= ALONE_WAIT * 5 && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        joiner.join().unwrap();
    }
}
