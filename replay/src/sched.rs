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

use std::io;

use crate::Speed;

/// `--sched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sched {
    /// SCHED_BATCH in a closed loop (`--speed max`), the default policy when paced; a policy
    /// other than the default that the replay was started under is kept.
    #[default]
    Auto,
    /// Leave the policy the replay was started with.
    Normal,
    /// SCHED_BATCH whatever the pace.
    Batch,
}

impl Sched {
    /// Whether the replay's threads run under SCHED_BATCH, given the pace and the policy the
    /// replay was started with: `Auto` keeps a policy the user chose (other than the default).
    pub fn batch(self, speed: Speed, started_under: libc::c_int) -> bool {
        match self {
            Sched::Auto => speed == Speed::Max && started_under == libc::SCHED_OTHER,
            Sched::Normal => false,
            Sched::Batch => true,
        }
    }

    /// Puts the calling thread under SCHED_BATCH when [`Sched::batch`] says so. `None`: the
    /// policy is left as it is (or could not be set: a sandbox may forbid it).
    pub(crate) fn enter(self, speed: Speed) -> Option<BatchGuard> {
        self.batch(speed, current_policy())
            .then(BatchGuard::enter)
            .and_then(Result::ok)
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
    fn auto_is_batch_only_in_a_closed_loop_started_under_the_default_policy() {
        let other = libc::SCHED_OTHER;
        assert!(Sched::Auto.batch(Speed::Max, other));
        assert!(!Sched::Auto.batch(Speed::Factor(1.0), other));
        assert!(!Sched::Auto.batch(Speed::Max, libc::SCHED_IDLE));
        assert!(!Sched::Auto.batch(Speed::Max, libc::SCHED_FIFO));
        assert!(!Sched::Normal.batch(Speed::Max, other));
        assert!(Sched::Batch.batch(Speed::Factor(4.0), other));
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
