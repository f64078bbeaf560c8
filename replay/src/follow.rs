//! Keeping a session thread on its server thread's CPU (`--sched pair`; why: [`crate::sched`]).
//!
//! Every `CHECK_EVERY` reads, a session compares the CPU it runs on with the CPU that last
//! received data on its socket (`SO_INCOMING_CPU`; over loopback, the CPU the server thread
//! sent its answer from). After `MOVE_AFTER` such checks in a row that differ, the session's
//! thread is kept on that CPU (its affinity becomes that one CPU, within the CPUs the thread
//! was allowed when it started). The server thread may move later; the session follows it.
//! On 2 shared CPUs (oltp_read_only, closed loop, interleaved runs) pairing raised QPS 2–11 %
//! and cut the server's CPU per query 7–11 % against SCHED_BATCH.
//!
//! Only a session alone on its thread does this: a thread that holds several sessions gets
//! its first affinity back.
//!
//! Where pairing cannot happen, the thread runs under SCHED_BATCH, the closed loop's policy
//! otherwise (see [`crate::sched`]): when it holds several sessions, and when `MOVE_AFTER`
//! checks in a row find the server on a CPU the thread may not use (the client was started on
//! CPUs of its own, with `taskset`). Only a thread started under the default policy changes.

use std::cell::Cell;
use std::os::fd::RawFd;

/// Reads between two checks: a `getsockopt` each, so a few per 100 queries.
const CHECK_EVERY: u32 = 16;
/// Checks in a row that must find the server elsewhere before the thread moves.
const MOVE_AFTER: u8 = 2;

/// What this module did to the calling thread.
#[derive(Clone, Copy)]
struct ThreadState {
    /// The affinity before the thread was first moved.
    allowed: libc::cpu_set_t,
    /// The CPU it is kept on now.
    kept: Option<usize>,
    /// Put under SCHED_BATCH.
    batch: bool,
    /// Started under the default policy: the only one this module changes.
    may_batch: bool,
}

thread_local! {
    static THREAD: Cell<Option<ThreadState>> = const { Cell::new(None) };
}

/// One session's side of following its server thread.
#[derive(Debug, Default)]
pub(crate) struct Follow {
    reads: u32,
    misses: u8,
    /// Checks in a row that found the server on a CPU this thread may not use.
    apart: u8,
}

impl Follow {
    /// After a read from the session's socket `fd`.
    pub(crate) fn after_read(&mut self, fd: RawFd) {
        self.reads = self.reads.wrapping_add(1);
        if self.reads % CHECK_EVERY != 0 {
            return;
        }
        let alone = crate::waiting::sessions_on_this_thread() == 1;
        THREAD.with(|t| {
            let Some(mut st) = t.get().or_else(|| {
                Some(ThreadState {
                    allowed: affinity()?,
                    kept: None,
                    batch: false,
                    // SAFETY: sched_getscheduler(0) reads the calling thread's policy.
                    may_batch: unsafe { libc::sched_getscheduler(0) } == libc::SCHED_OTHER,
                })
            }) else {
                return;
            };
            let server = incoming_cpu(fd);
            let next = if alone {
                self.next_cpu(server, current_cpu(), &st.allowed)
                    .or(st.kept)
            } else {
                None
            };
            if next != st.kept && set_affinity(&next.map_or(st.allowed, only)) {
                st.kept = next;
            }
            let batch = self.batch(alone, server, &st.allowed, st.batch);
            if st.may_batch && batch != st.batch && set_batch(batch) {
                st.batch = batch;
            }
            t.set(Some(st));
        });
    }

    /// Whether the thread should run under SCHED_BATCH (it runs under it now if `batch`):
    /// yes with several sessions, no when the server is on a CPU it may use, yes after
    /// `MOVE_AFTER` checks in a row found the server on a CPU it may not.
    fn batch(
        &mut self,
        alone: bool,
        server: Option<usize>,
        allowed: &libc::cpu_set_t,
        batch: bool,
    ) -> bool {
        match server {
            _ if !alone => true,
            None => batch,
            Some(s) if s < libc::CPU_SETSIZE as usize && is_set(s, allowed) => {
                self.apart = 0;
                false
            }
            Some(_) => {
                self.apart = self.apart.saturating_add(1);
                batch || self.apart >= MOVE_AFTER
            }
        }
    }

    /// The CPU to move to, if this check is the `MOVE_AFTER`th in a row to find the server
    /// on another allowed CPU than `here`.
    fn next_cpu(
        &mut self,
        server: Option<usize>,
        here: Option<usize>,
        allowed: &libc::cpu_set_t,
    ) -> Option<usize> {
        match (server, here) {
            (Some(s), Some(h))
                if s != h && s < libc::CPU_SETSIZE as usize && is_set(s, allowed) =>
            {
                self.misses += 1;
                if self.misses < MOVE_AFTER {
                    return None;
                }
                self.misses = 0;
                Some(s)
            }
            _ => {
                self.misses = 0;
                None
            }
        }
    }
}

fn is_set(cpu: usize, set: &libc::cpu_set_t) -> bool {
    // SAFETY: CPU_ISSET reads the set; `cpu` is below CPU_SETSIZE (checked by the caller).
    unsafe { libc::CPU_ISSET(cpu, set) }
}

/// A set of one CPU.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes within the set; callers pass a CPU below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// The CPU that last received data on `fd`.
fn incoming_cpu(fd: RawFd) -> Option<usize> {
    let mut cpu: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `cpu` and `len` are valid for writes of the sizes given.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&mut cpu as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    (ok && cpu >= 0).then_some(cpu as usize)
}

/// The CPU the calling thread runs on.
fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no arguments.
    let cpu = unsafe { libc::sched_getcpu() };
    (cpu >= 0).then_some(cpu as usize)
}

/// The calling thread's affinity.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is valid, and the call writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    ok.then_some(set)
}

/// Puts the calling thread under SCHED_BATCH, or back under the default policy.
fn set_batch(batch: bool) -> bool {
    let policy = if batch {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> libc::cpu_set_t {
        // SAFETY: as in `only`.
        let mut s: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus {
            // SAFETY: as in `only`.
            unsafe { libc::CPU_SET(c, &mut s) };
        }
        s
    }

    #[test]
    fn a_session_moves_after_two_checks_in_a_row_find_its_server_elsewhere() {
        let allowed = set(&[0, 1, 2]);
        let mut f = Follow::default();
        assert_eq!(f.next_cpu(Some(1), Some(0), &allowed), None);
        assert_eq!(f.next_cpu(Some(1), Some(0), &allowed), Some(1));
        // Together: the count starts again.
        assert_eq!(f.next_cpu(Some(1), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(2), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(1), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(2), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(2), Some(1), &allowed), Some(2));
        // Never to a CPU the thread was not allowed, nor on a check that could not tell.
        assert_eq!(f.next_cpu(Some(5), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(5), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(None, Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(2), None, &allowed), None);
        assert_eq!(f.next_cpu(Some(4096), Some(1), &allowed), None);
        assert_eq!(f.next_cpu(Some(4096), Some(1), &allowed), None);
    }

    #[test]
    fn a_thread_runs_batch_where_it_cannot_pair() {
        let allowed = set(&[0, 1]);
        let mut f = Follow::default();
        assert!(f.batch(false, Some(0), &allowed, false), "several sessions");
        assert!(
            !f.batch(true, Some(1), &allowed, true),
            "the server is reachable"
        );
        assert!(!f.batch(true, None, &allowed, false), "unknown: as it was");
        assert!(f.batch(true, None, &allowed, true), "unknown: as it was");
        assert!(!f.batch(true, Some(2), &allowed, false), "once apart");
        assert!(
            f.batch(true, Some(2), &allowed, false),
            "twice apart in a row"
        );
        assert!(!f.batch(true, Some(0), &allowed, true));
        assert!(
            !f.batch(true, Some(7), &allowed, false),
            "the count started again"
        );
    }

    /// Both ends of a loopback connection, on a machine of 2 CPUs or more.
    fn loopback_pair() -> Option<(std::net::TcpStream, std::net::TcpStream)> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return None;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        Some((client, server))
    }

    /// From a thread on CPU 1: `2 * CHECK_EVERY` bytes to `server`'s peer, each acknowledged.
    fn send_from_cpu1(
        mut server: std::net::TcpStream,
    ) -> std::thread::JoinHandle<std::net::TcpStream> {
        use std::io::{Read, Write};
        std::thread::spawn(move || {
            assert!(set_affinity(&only(1)));
            for _ in 0..2 * CHECK_EVERY {
                server.write_all(b"x").unwrap();
                let mut ack = [0u8; 1];
                server.read_exact(&mut ack).unwrap();
            }
            server
        })
    }

    /// The thread is kept on the CPU a loopback peer sends from, and gets its affinity back
    /// (and runs under SCHED_BATCH) when it holds more than one session.
    #[test]
    fn a_thread_alone_with_its_session_follows_the_sending_cpu() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let Some((mut client, server)) = loopback_pair() else {
            return;
        };
        let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let pinned = std::thread::spawn(move || {
            crate::waiting::set_live_counter(live.clone());
            let start = affinity().unwrap();
            // The sender is on CPU 1, this thread on CPU 0.
            assert!(set_affinity(&only(0)));
            THREAD.with(|t| {
                t.set(Some(ThreadState {
                    allowed: start,
                    kept: None,
                    batch: false,
                    may_batch: true,
                }))
            });
            let mut f = Follow::default();
            let mut buf = [0u8; 1];
            let sender = send_from_cpu1(server);
            for _ in 0..2 * CHECK_EVERY {
                client.read_exact(&mut buf).unwrap();
                f.after_read(client.as_raw_fd());
                client.write_all(b"k").unwrap();
            }
            let mut server = sender.join().unwrap();
            let moved = current_cpu();
            let kept = THREAD.with(|t| t.get().unwrap().kept);
            // A second session on the thread: the next check gives the first affinity back.
            live.store(2, std::sync::atomic::Ordering::Relaxed);
            for _ in 0..CHECK_EVERY {
                server.write_all(b"x").unwrap();
                client.read_exact(&mut buf).unwrap();
                f.after_read(client.as_raw_fd());
            }
            let back = affinity().unwrap();
            // SAFETY: reads the calling thread's policy.
            let policy = unsafe { libc::sched_getscheduler(0) };
            (moved, kept, is_set(0, &back) && is_set(1, &back), policy)
        });
        let (moved, kept, restored, policy) = pinned.join().unwrap();
        assert_eq!((moved, kept), (Some(1), Some(1)));
        assert!(
            restored,
            "the first affinity (CPUs 0 and 1 at least) is back"
        );
        assert_eq!(policy, libc::SCHED_BATCH, "several sessions on the thread");
    }

    /// A thread that may not run where its server sends from runs under SCHED_BATCH.
    #[test]
    fn a_thread_kept_apart_from_its_server_runs_batch() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let Some((mut client, server)) = loopback_pair() else {
            return;
        };
        let sender = send_from_cpu1(server);
        let apart = std::thread::spawn(move || {
            crate::waiting::set_live_counter(std::sync::Arc::new(1.into()));
            // As if started with `taskset -c 0`: CPU 1 is not the thread's to use.
            assert!(set_affinity(&only(0)));
            let mut f = Follow::default();
            let mut buf = [0u8; 1];
            let mut policies = Vec::new();
            for _ in 0..2 * CHECK_EVERY {
                client.read_exact(&mut buf).unwrap();
                f.after_read(client.as_raw_fd());
                client.write_all(b"k").unwrap();
                // SAFETY: reads the calling thread's policy.
                policies.push(unsafe { libc::sched_getscheduler(0) });
            }
            (policies, current_cpu())
        });
        sender.join().unwrap();
        let (policies, cpu) = apart.join().unwrap();
        assert_eq!(cpu, Some(0), "never moved out of its CPUs");
        assert_eq!(policies[2 * CHECK_EVERY as usize - 2], libc::SCHED_OTHER);
        assert_eq!(policies.last(), Some(&libc::SCHED_BATCH));
    }
}
