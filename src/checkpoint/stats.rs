//! Checkpoint statistics: the last 512 durations in a ring buffer, and counters.

use std::sync::Mutex;
use std::time::Duration;

use super::{CheckpointOutcome, CheckpointReport};
use crate::error::Result;
use crate::util::lock;

const WINDOW: usize = 512;

/// Checkpoint statistics: the last 512 durations in a ring buffer, and counters.
#[derive(Debug)]
pub(crate) struct Stats {
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    durations: [Duration; WINDOW],
    next: usize,
    len: usize,
    total: u64,
    failures: u64,
    cleanup_failures: u64,
    busy: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ring: Mutex::new(Ring {
                durations: [Duration::ZERO; WINDOW],
                next: 0,
                len: 0,
                total: 0,
                failures: 0,
                cleanup_failures: 0,
                busy: 0,
            }),
        }
    }
}

/// Aggregate checkpoint statistics over the last 512 checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints in the window.
    pub n: usize,
    /// Median duration in the window.
    pub p50: Duration,
    /// 95th percentile duration in the window.
    pub p95: Duration,
    /// Longest duration in the window.
    pub max: Duration,
    /// Checkpoints completed since open (all time).
    pub total: u64,
    /// Checkpoints that failed since open.
    pub failures: u64,
    /// Cleanup steps that failed since open.
    pub cleanup_failures: u64,
    /// Requests answered "busy" since open.
    pub busy: u64,
}

impl Stats {
    pub(crate) fn record(&self, r: &Result<CheckpointReport>) {
        let mut g = lock(&self.ring);
        match r {
            Ok(rep) if rep.outcome == CheckpointOutcome::Busy => g.busy += 1,
            Ok(rep) => {
                let i = g.next;
                if let Some(slot) = g.durations.get_mut(i) {
                    *slot = rep.elapsed;
                }
                g.next = (i + 1) % WINDOW;
                g.len = (g.len + 1).min(WINDOW);
                g.total += 1;
                g.cleanup_failures += rep.cleanup_failures.len() as u64;
            }
            Err(_) => g.failures += 1,
        }
    }

    pub(crate) fn snapshot(&self) -> CheckpointStats {
        let g = lock(&self.ring);
        let mut d: Vec<Duration> = g.durations.iter().take(g.len).copied().collect();
        d.sort_unstable();
        let pick = |q: f64| -> Duration {
            let idx = ((d.len() as f64 - 1.0) * q).round() as usize;
            d.get(idx).copied().unwrap_or_default()
        };
        CheckpointStats {
            n: d.len(),
            p50: pick(0.50),
            p95: pick(0.95),
            max: d.last().copied().unwrap_or_default(),
            total: g.total,
            failures: g.failures,
            cleanup_failures: g.cleanup_failures,
            busy: g.busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointMode;

    fn ok(ms: u64) -> Result<CheckpointReport> {
        let mut r = CheckpointReport::new(CheckpointMode::Manual, CheckpointOutcome::Written, 1);
        r.elapsed = Duration::from_millis(ms);
        Ok(r)
    }

    #[test]
    fn percentiles_are_exact_over_the_last_512() {
        let s = Stats::default();
        // 100 slow ones that must fall out of the window, then 1..=600 ms.
        for _ in 0..100 {
            s.record(&ok(10_000));
        }
        for ms in 1..=600 {
            s.record(&ok(ms));
        }
        s.record(&Err(crate::Error::Cancelled));
        let st = s.snapshot();
        // The window holds 89..=600 ms.
        assert_eq!(st.n, 512);
        assert_eq!(st.total, 700);
        assert_eq!(st.failures, 1);
        assert_eq!(st.max, Duration::from_millis(600));
        // Sorted window index round(511 * q): 256 -> 345 ms, 485 -> 574 ms.
        assert_eq!(st.p50, Duration::from_millis(345));
        assert_eq!(st.p95, Duration::from_millis(574));
    }
}
