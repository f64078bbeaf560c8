//! Session threads: each runs its own single-threaded tokio runtime and owns the sessions
//! handed to it. A session never moves between threads, so its socket's wake-ups stay on one
//! thread and one epoll set, and no work stealing runs per query.
//!
//! Why not one thread for all sessions: a single event loop answers each server reply only
//! after the other ready sessions, so the server's thread has gone to sleep by then, and each
//! query pays a wake-up on both sides. With a thread per session the client reacts the way
//! sysbench's blocking threads do. Measured on 2 cores (sysbench oltp_read_only recording, 16
//! sessions, closed loop): 40–42k QPS on one thread, 44–48k with one thread per session.
//!
//! Threads are started as sessions arrive, up to the limit; a new session goes to the thread
//! with the fewest live sessions.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct Thread {
    handle: Handle,
    live: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

pub(crate) struct Pool {
    max: usize,
    threads: Vec<Thread>,
}

impl Pool {
    /// Up to `max` threads; 0 or 1 runs every session on the caller's runtime.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            threads: Vec::new(),
        }
    }

    /// Runs `f` on a session thread (or the caller's runtime, when the pool has one thread,
    /// or no thread could be started).
    pub(crate) fn spawn<F>(&mut self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let least = self
            .threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.live.load(Ordering::Relaxed))
            .map(|(i, t)| (i, t.live.load(Ordering::Relaxed)));
        let i = match least {
            Some((i, 0)) => Some(i),
            _ if self.threads.len() < self.max && self.max > 1 => match self.start() {
                Ok(()) => Some(self.threads.len() - 1),
                Err(_) => least.map(|(i, _)| i),
            },
            _ => least.map(|(i, _)| i),
        };
        let Some(t) = i.map(|i| &self.threads[i]) else {
            return tokio::spawn(f);
        };
        let live = t.live.clone();
        live.fetch_add(1, Ordering::Relaxed);
        t.handle.spawn(async move {
            let out = f.await;
            live.fetch_sub(1, Ordering::Relaxed);
            out
        })
    }

    fn start(&mut self) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let live = Arc::new(AtomicUsize::new(0));
        let counter = live.clone();
        let thread = std::thread::Builder::new()
            .name(format!("myrr-s{}", self.threads.len()))
            .spawn(move || {
                crate::waiting::set_live_counter(counter);
                // Paced waits end at their deadline, not up to the default 50 µs later.
                // SAFETY: PR_SET_TIMERSLACK takes a value and touches no memory of ours.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                let _ = rt.block_on(stopped);
            })?;
        self.threads.push(Thread {
            handle,
            live,
            stop,
            thread,
        });
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.stop.send(());
            let _ = t.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that stays live until `hold` gives it a permit, then says where it ran.
    fn thread_of(
        pool: &mut Pool,
        hold: &Arc<tokio::sync::Semaphore>,
    ) -> tokio::task::JoinHandle<String> {
        let hold = hold.clone();
        pool.spawn(async move {
            let _ = hold.acquire().await;
            std::thread::current().name().unwrap_or("").to_string()
        })
    }

    #[tokio::test]
    async fn a_thread_per_session_up_to_the_limit_then_the_least_busy() {
        let mut pool = Pool::new(3);
        let hold = Arc::new(tokio::sync::Semaphore::new(0));
        let tasks: Vec<_> = (0..5).map(|_| thread_of(&mut pool, &hold)).collect();
        assert_eq!(pool.threads.len(), 3);
        let live: Vec<_> = pool
            .threads
            .iter()
            .map(|t| t.live.load(Ordering::Relaxed))
            .collect();
        assert_eq!(live, [2, 2, 1]);
        hold.add_permits(5);
        let mut names = Vec::new();
        for t in tasks {
            names.push(t.await.unwrap());
        }
        // Sessions 4 and 5 share the threads of sessions 1 and 2.
        assert_eq!(
            names,
            ["myrr-s0", "myrr-s1", "myrr-s2", "myrr-s0", "myrr-s1"]
        );
        let live: Vec<_> = pool
            .threads
            .iter()
            .map(|t| t.live.load(Ordering::Relaxed))
            .collect();
        assert_eq!(live, [0, 0, 0]);
    }

    #[tokio::test]
    async fn one_thread_means_the_callers_runtime() {
        let mut pool = Pool::new(1);
        let name = pool
            .spawn(async { std::thread::current().name().map(String::from) })
            .await
            .unwrap();
        assert!(pool.threads.is_empty());
        assert_ne!(name.as_deref().unwrap_or(""), "myrr-s0");
    }
}
