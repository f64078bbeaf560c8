//! Precise waits for paced replay.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds every sleep up to the
//! next tick, so by itself it would start each paced exchange up to 1 ms late. A session that
//! must wait uses a timerfd instead, armed with the exact remaining time (ns) and watched by
//! tokio's reactor: it wakes within the kernel's timer slack, tens of µs. Where no timerfd can
//! be had (out of file descriptors), the session falls back to tokio's sleep.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

pub(crate) struct PreciseTimer {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl PreciseTimer {
    pub(crate) fn new() -> Self {
        let fd = timerfd().ok().and_then(|fd| {
            // SAFETY: an `OwnedFd` stays open and names the same timer until it is dropped,
            // which only the `AsyncFd` can do.
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
            // SAFETY: reads at most 8 bytes into a live 8-byte buffer from an open fd.
            let n = unsafe {
                libc::read(
                    fd.get_ref().as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if n < 0 {
                ready.clear_ready(); // not expired yet (EAGAIN): wait again
            }
        }
    }
}

fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is checked and then owned.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms the timer to fire once, `after` from now.
fn arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
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
