//! Small helpers shared by every layer.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Locks a mutex, ignoring poisoning: every critical section in snapwal leaves its
/// data consistent before anything in it can panic.
///
/// With the `testing` feature, a thread under the simulated file system's
/// deterministic scheduler that would block here waits at a scheduling point instead
/// (and tries again once another thread has had its turn), so that which thread gets
/// a contended lock follows the schedule, not the kernel.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(feature = "testing")]
    if crate::testing::sim::scheduled() {
        loop {
            match m.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => crate::testing::sim::blocked(),
            }
        }
    }
    lock_raw(m)
}

/// [`lock`] without the scheduler (for the simulated file system's own locks).
pub(crate) fn lock_raw<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv`, whose mutex `m` this thread holds as `guard`, until notified or
/// `timeout` (if any) passes; may also return early (a spurious wake-up), so callers
/// wait in a loop on their condition. With the `testing` feature, a thread under the
/// deterministic scheduler waits at a scheduling point instead of in the kernel (see
/// [`lock`]).
pub(crate) fn wait_on<'a, T>(
    cv: &Condvar,
    m: &'a Mutex<T>,
    guard: MutexGuard<'a, T>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, T> {
    #[cfg(feature = "testing")]
    if crate::testing::sim::scheduled() {
        drop(guard);
        crate::testing::sim::blocked();
        return lock(m);
    }
    let _ = m;
    match timeout {
        None => cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
        Some(d) => {
            cv.wait_timeout(guard, d)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    }
}

/// The longest wait snapwal computes a deadline for: about a century. A longer
/// duration (up to [`Duration::MAX`]) means "no deadline in practice" and is
/// saturated to this, so that no deadline arithmetic can overflow.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `d` after `now`, saturating: a duration too long for [`Instant`]
/// (for example [`Duration::MAX`]) gives a deadline far in the future instead of a
/// panic. Never earlier than `now`.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    let mut d = d.min(FAR_FUTURE);
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        if d.is_zero() {
            return now;
        }
        d /= 2;
    }
}

/// Time left until `deadline`: zero once it has passed.
pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A duration in whole milliseconds for a log field, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The message of a caught panic, for a log field or an error.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) >= now + Duration::from_secs(3600));
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(deadline_after(now, Duration::ZERO), now);
        assert_eq!(remaining(now), Duration::ZERO);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
