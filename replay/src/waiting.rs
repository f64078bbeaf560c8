//! How a session waits — for its answers and for its next exchange's time: in its thread's
//! tokio runtime, or, while it is the only session on its thread, in the thread itself.
//!
//! A session alone on its thread waits for an answer in a blocking recv(2) (its socket
//! switched to blocking, with a [`BLOCK_FOR`] receive timeout), as sysbench's threads do, and
//! sleeps to its next exchange's time with nanosleep ([`sleep_alone`]). Waiting through the
//! runtime (its park, I/O driver and task wake-up) cost about 3 % of a session thread's CPU per
//! query. A first version waited in an epoll set of the session's own and then read: a syscall
//! more per query; the blocking read cut client CPU per query by 8 % at 16 sessions and
//! 13–17 % at 64 in interleaved closed-loop runs (`benches/replay-ab.sh`). Sleeping in the
//! thread rather than on a timerfd in the runtime cut user CPU per paced exchange from 19 to
//! 15.6 µs (16 sessions × 1 query/ms).
//!
//! When another session comes to the thread, or the replay abandons the answers still due
//! (it can drop a session only while it waits in the runtime), the socket is made
//! non-blocking again and the session waits in the runtime; [`BLOCK_FOR`] is how often it
//! looks. The pool tells each of its threads how many sessions it runs
//! ([`set_live_counter`]); the connection ([`crate::wire::WireConn`]) only asks its
//! [`Waiting`] whether to read for it.
//!
//! Under `--sched pair`, the same [`Waiting`] keeps the session's thread on its server
//! thread's CPU after each read ([`crate::follow`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::follow::Follow;

/// How long a session alone on its thread blocks (in recv(2), send(2) or a paced sleep)
/// before it looks whether it should stop waiting there: another session came to its thread
/// (which needs the runtime), or the replay is stopping.
pub(crate) const BLOCK_FOR: Duration = Duration::from_millis(10);

thread_local! {
    /// On a pool thread: how many sessions it runs.
    static LIVE: std::cell::RefCell<Option<Arc<AtomicUsize>>> = const { std::cell::RefCell::new(None) };
}

/// Makes `live` the count [`sessions_on_this_thread`] reads on the calling thread.
pub(crate) fn set_live_counter(live: Arc<AtomicUsize>) {
    LIVE.with(|l| *l.borrow_mut() = Some(live));
}

/// Sessions running on the calling thread, if it is a pool thread (0 otherwise).
pub(crate) fn sessions_on_this_thread() -> usize {
    LIVE.with(|l| l.borrow().as_ref().map_or(0, |n| n.load(Ordering::Relaxed)))
}

/// One session's way of waiting for its answers (on a plain TCP connection).
pub(crate) struct Waiting {
    /// Set: give up waiting in the thread.
    abandon: Arc<AtomicBool>,
    /// The socket is in blocking mode now (the runtime needs it non-blocking again before it
    /// waits on it).
    blocking: bool,
    /// The socket could not be made blocking: always wait in the runtime.
    runtime_only: bool,
    /// `--sched pair`: this session's thread follows its server thread's CPU.
    follow: Option<Follow>,
}

impl Waiting {
    pub(crate) fn new(abandon: Arc<AtomicBool>, follow_server_cpu: bool) -> Self {
        Self {
            abandon,
            blocking: false,
            runtime_only: false,
            follow: follow_server_cpu.then(Follow::default),
        }
    }

    fn alone(&self) -> bool {
        !self.abandon.load(Ordering::Relaxed) && sessions_on_this_thread() == 1
    }

    /// Reads `socket` into `buf` blocking in recv(2) while the session is alone on its thread;
    /// `None` when it must wait in the runtime instead (the socket is then non-blocking).
    pub(crate) fn read(&mut self, socket: impl AsFd, buf: &mut [u8]) -> Option<io::Result<usize>> {
        use rustix::net::{recv, sockopt, RecvFlags};
        if self.runtime_only {
            return None;
        }
        let s = socket.as_fd();
        if !self.blocking {
            if !self.alone() {
                return None;
            }
            let set = sockopt::set_socket_timeout(s, sockopt::Timeout::Recv, Some(BLOCK_FOR))
                .and_then(|()| {
                    sockopt::set_socket_timeout(s, sockopt::Timeout::Send, Some(BLOCK_FOR))
                })
                .and_then(|()| rustix::io::ioctl_fionbio(s, false));
            if set.is_err() {
                // Still non-blocking (or, had FIONBIO failed half-way, nothing changed).
                self.runtime_only = true;
                return None;
            }
            self.blocking = true;
        }
        while self.alone() {
            // Waits up to BLOCK_FOR for the first byte.
            match recv(s, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => return Some(Ok(n)),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
        // Another session has come to this thread, or the replay gives up on this answer
        // (it will drop the session once the wait is back in the runtime).
        match rustix::io::ioctl_fionbio(s, true) {
            Ok(()) => {
                self.blocking = false;
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// After each read from `socket`, however it was waited for.
    pub(crate) fn after_read(&mut self, socket: impl AsFd) {
        if let Some(f) = &mut self.follow {
            f.after_read(socket.as_fd().as_raw_fd());
        }
    }
}

/// Sleeps until `at` in the calling thread, if it runs only the calling session; `false`
/// (early) when another session comes to the thread or `give_up()` turns true (checked every
/// [`BLOCK_FOR`]): the caller then waits in the runtime, or not at all.
pub(crate) fn sleep_alone(at: tokio::time::Instant, give_up: impl Fn() -> bool) -> bool {
    let at: Instant = at.into_std();
    loop {
        if sessions_on_this_thread() != 1 || give_up() {
            return false;
        }
        let now = Instant::now();
        if at <= now {
            return true;
        }
        std::thread::sleep((at - now).min(BLOCK_FOR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone session sleeps in its thread to the deadline; it stops sleeping there when it
    /// is asked to, or when another session comes to its thread (which needs the runtime).
    #[test]
    fn a_lone_session_sleeps_in_its_thread_until_another_comes() {
        // Not a pool thread: no session of its own, no sleep here.
        assert!(!sleep_alone(
            tokio::time::Instant::now() + Duration::from_secs(5),
            || false
        ));
        let live = Arc::new(AtomicUsize::new(1));
        set_live_counter(live.clone());

        let at = tokio::time::Instant::now() + BLOCK_FOR * 3 + Duration::from_micros(300);
        assert!(sleep_alone(at, || false));
        assert!(tokio::time::Instant::now() >= at, "woke early");

        let t = tokio::time::Instant::now();
        assert!(!sleep_alone(t + Duration::from_secs(5), || true));
        assert!(t.elapsed() < Duration::from_secs(1));

        let joins = live.clone();
        let joiner = std::thread::spawn(move || {
            std::thread::sleep(BLOCK_FOR * 5);
            joins.store(2, Ordering::Relaxed);
        });
        let t = tokio::time::Instant::now();
        assert!(!sleep_alone(t + Duration::from_secs(5), || false));
        let waited = t.elapsed();
        assert!(
            waited >= BLOCK_FOR * 5 && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        joiner.join().unwrap();
    }
}
