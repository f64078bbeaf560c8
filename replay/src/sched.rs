//! The scheduling policy of the replay's threads.
//!
//! In a closed loop every answer the server sends wakes a replay thread. Under Linux's default
//! policy (SCHED_OTHER) a woken thread may preempt whatever runs on its CPU: when the replay
//! shares the machine with the candidate, that is often a server thread in the middle of a
//! query, stopped by a rescheduling interrupt. SCHED_BATCH threads are scheduled as fairly,
//! but never preempt on wake-up, so the server finishes what it is doing first.
//!
//! Measured on 2 shared CPUs (oltp_read_only recordings, `--speed max`, interleaved runs):
//! rescheduling interrupts fell from 105–163 to 3–33 per 1000 queries; the replay's CPU per
//! query fell 14–28 %, the server's 1–7 %, and QPS rose 4–19 % at 16 sessions, 5 % at 64.
//!
//! A paced replay keeps the default: there a session must send on time, and a thread that
//! waits for the running one to yield could start late.
//!
//! When the candidate runs on this machine (a loopback target), a closed loop does better
//! still under the default policy with each session thread kept on the CPU its server thread
//! answers from ([`crate::follow`]): the answer then wakes the session on the server's own CPU,
//! where it runs at once and sends the next command before the server thread looks for it,
//! as a blocking client such as sysbench does. Under SCHED_BATCH the server thread looked
//! first, found nothing and slept in poll(2), once per query; with session threads free to
//! run on either CPU, about 15 % of wake-ups crossed CPUs (sysbench's: 1 %), each an
//! interrupt to a CPU running another query.

use std::io;

use crate::Speed;

/// `--sched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sched {
    /// In a closed loop (`--speed max`): `Pair` against a loopback target, `Batch` against
    /// another machine; paced, the policy the replay was started with. A policy other than
    /// the default that the replay was started under is always kept.
    #[default]
    Auto,
    /// Leave the policy the replay was started with.
    Normal,
    /// SCHED_BATCH whatever the pace.
    Batch,
    /// The policy the replay was started with, each session thread kept on its server
    /// thread's CPU while it runs one session alone.
    Pair,
}

/// What the replay's threads do, as decided by [`Sched::policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Normal,
    Batch,
    Pair,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Normal => "normal",
            Policy::Batch => "batch",
            Policy::Pair => "pair",
        }
    }
}

impl Sched {
    /// The replay threads' policy, given the pace, the policy the replay was started with
    /// (`Auto` keeps one the user chose, other than the default) and whether the target is
    /// on this machine.
    pub fn policy(self, speed: Speed, started_under: libc::c_int, local_target: bool) -> Policy {
        match self {
            Sched::Auto if speed == Speed::Max && started_under == libc::SCHED_OTHER => {
                if local_target {
                    Policy::Pair
                } else {
                    Policy::Batch
                }
            }
            Sched::Auto | Sched::Normal => Policy::Normal,
            Sched::Batch => Policy::Batch,
            Sched::Pair => Policy::Pair,
        }
    }

    /// Decides the policy and puts the calling thread under SCHED_BATCH when it is `Batch`.
    /// Where SCHED_BATCH cannot be set (a sandbox may forbid it), the policy is `Normal`.
    pub(crate) fn enter(self, speed: Speed, local_target: bool) -> (Policy, Option<BatchGuard>) {
        match self.policy(speed, current_policy(), local_target) {
            Policy::Batch => match BatchGuard::enter() {
                Ok(g) => (Policy::Batch, Some(g)),
                Err(_) => (Policy::Normal, None),
            },
            p => (p, None),
        }
    }
}

/// While it lives, the thread that made it runs under SCHED_BATCH, and so does every thread
/// it starts meanwhile (Linux threads inherit their creator's policy). Dropped, it gives that
/// thread (not whichever drops it) its previous policy and priority back.
pub(crate) struct BatchGuard {
    tid: libc::pid_t,
    policy: libc::c_int,
    param: libc::sched_param,
}

impl BatchGuard {
    pub(crate) fn enter() -> io::Result<Self> {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        // SAFETY: sched_getscheduler takes a thread id and touches no memory of ours.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        if policy < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, writable sched_param for the call's duration.
        if unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        set_policy(
            tid,
            libc::SCHED_BATCH,
            &libc::sched_param { sched_priority: 0 },
        )?;
        Ok(Self { tid, policy, param })
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        let _ = set_policy(self.tid, self.policy, &self.param);
    }
}

/// Sets a thread's policy; the nice value is left as it is.
fn set_policy(tid: libc::pid_t, policy: libc::c_int, param: &libc::sched_param) -> io::Result<()> {
    // SAFETY: `param` is a valid sched_param that outlives the call.
    if unsafe { libc::sched_setscheduler(tid, policy, param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's policy.
fn current_policy() -> libc::c_int {
    // SAFETY: as in `BatchGuard::enter`.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_changes_the_policy_only_in_a_closed_loop_started_under_the_default_one() {
        let other = libc::SCHED_OTHER;
        let (max, paced) = (Speed::Max, Speed::Factor(1.0));
        assert_eq!(Sched::Auto.policy(max, other, false), Policy::Batch);
        assert_eq!(Sched::Auto.policy(max, other, true), Policy::Pair);
        assert_eq!(Sched::Auto.policy(paced, other, true), Policy::Normal);
        assert_eq!(Sched::Auto.policy(paced, other, false), Policy::Normal);
        assert_eq!(
            Sched::Auto.policy(max, libc::SCHED_IDLE, true),
            Policy::Normal
        );
        assert_eq!(
            Sched::Auto.policy(max, libc::SCHED_FIFO, false),
            Policy::Normal
        );
        assert_eq!(Sched::Normal.policy(max, other, true), Policy::Normal);
        assert_eq!(Sched::Batch.policy(paced, other, true), Policy::Batch);
        assert_eq!(Sched::Pair.policy(paced, other, false), Policy::Pair);
    }

    /// Threads started under the guard inherit SCHED_BATCH, and the thread gets its policy
    /// back when the guard goes.
    #[test]
    fn threads_started_under_the_guard_run_batch() {
        std::thread::spawn(|| {
            let before = current_policy();
            assert_eq!(before, libc::SCHED_OTHER);
            let guard = BatchGuard::enter().expect("SCHED_BATCH needs no privilege");
            assert_eq!(current_policy(), libc::SCHED_BATCH);
            let child = std::thread::spawn(current_policy).join().unwrap();
            assert_eq!(child, libc::SCHED_BATCH);
            drop(guard);
            assert_eq!(current_policy(), before);
            let later = std::thread::spawn(current_policy).join().unwrap();
            assert_eq!(later, before);
        })
        .join()
        .unwrap();
    }

    /// Dropped on another thread (an async run moved between threads), the guard restores the
    /// thread that made it, to the policy it had (here SCHED_IDLE, which needs no privilege).
    #[test]
    fn the_guard_restores_its_own_thread_wherever_it_is_dropped() {
        let (to_main, from_worker) = std::sync::mpsc::channel();
        let (to_worker, from_main) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            set_policy(
                0,
                libc::SCHED_IDLE,
                &libc::sched_param { sched_priority: 0 },
            )
            .unwrap();
            let guard = BatchGuard::enter().unwrap();
            assert_eq!(current_policy(), libc::SCHED_BATCH);
            to_main.send(guard).unwrap();
            from_main.recv().unwrap();
            current_policy()
        });
        drop(from_worker.recv().unwrap());
        to_worker.send(()).unwrap();
        assert_eq!(worker.join().unwrap(), libc::SCHED_IDLE);
        assert_eq!(current_policy(), libc::SCHED_OTHER);
    }
}
