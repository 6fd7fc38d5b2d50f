//! Options of a [`Store`](crate::Store): how it opens ([`Options`]) and how it closes
//! ([`CloseOptions`]).

use std::sync::Arc;
use std::time::Duration;

use crate::fs::{Fs, RealFs};

/// When an append is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `append` returns once its record is durable. Concurrent appenders share one
    /// `fdatasync` (group commit).
    Always,
    /// A background thread makes everything appended durable every interval; appends
    /// return once their record is in the OS page cache. A crash of the process loses
    /// nothing, except appends that returned while another appender was rotating to a
    /// new segment (at most [`Options::max_staged_bytes`] of them: see
    /// [`SyncPolicy::Never`]); a power loss loses at most about one interval. Each
    /// background sync covers what was appended when it started, so it ends in
    /// bounded time however busy the writers are.
    Interval(Duration),
    /// Appends return once their record is in the OS page cache, or, while another
    /// appender rotates to a new segment, once it is queued in memory (the next write
    /// or sync writes it). The bytes queued that way are bounded by
    /// [`Options::max_staged_bytes`]: past it, appenders wait for the rotation
    /// (back-pressure), so a crash of the process loses at most that much. Only
    /// [`Store::sync`](crate::Store::sync), checkpoints and `close` sync.
    Never,
}

/// What recovery does with damaged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryPolicy {
    /// Any damage is an error, including a torn record at the end of the last segment.
    Strict,
    /// A torn record at the end of the last segment is cut, with a warning giving the
    /// segment, offset and byte count (a crash during a write leaves one). Any other
    /// damage is an error naming the file and offset.
    #[default]
    TolerateTornTail,
    /// Recover the longest valid prefix whatever the damage: later segments are
    /// renamed to `<name>.corrupt` or, if that exists, `<name>.<n>.corrupt` (kept for inspection, never read again) and the
    /// damage is logged at ERROR. Records after the damage are lost; use it to bring a
    /// store back after a disk fault, not as a default.
    SalvagePrefix,
}

/// Options of a [`Store`](crate::Store). Start from [`Options::default`] and change
/// what you need with the builder methods.
///
/// ```
/// use snapwal::{Options, SyncPolicy};
/// let opts = Options::default()
///     .sync(SyncPolicy::Always)
///     .segment_bytes(16 << 20)
///     .keep_snapshots(3);
/// assert_eq!(opts.keep_snapshots, 3);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// When appends are durable. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Rotate to a new segment past this size. Default: 64 MiB.
    pub segment_bytes: u64,
    /// Reserve each segment's full size when it is created (`fallocate`). Default: on.
    ///
    /// A failed reservation (for example `ENOSPC`) is not an error: the new segment is
    /// still empty, so nothing is lost; it is logged at WARN with the file and the
    /// error, and the segment is used without a reservation. Only a failed create,
    /// write or sync of the log makes the store read-only.
    pub preallocate: bool,
    /// The most bytes of appended records held in memory before they are handed to the
    /// OS (staged while another appender rotates to a new segment). Past it, appenders
    /// wait for the rotation instead of returning: back-pressure, not growth. It can be
    /// passed by at most one batch per appending thread. Under
    /// [`SyncPolicy::Never`] and [`SyncPolicy::Interval`] it bounds what a crash of the
    /// process (not only a power loss) can lose. Default: 1 MiB; at least 4096.
    pub max_staged_bytes: u64,
    /// Snapshots kept on disk. The WAL is kept back to the oldest of them, so a corrupt
    /// newest snapshot loses nothing. Default: 2; at least 1.
    pub keep_snapshots: usize,
    /// What recovery does with damaged bytes. Default:
    /// [`RecoveryPolicy::TolerateTornTail`].
    pub recovery: RecoveryPolicy,
    /// The file system. Default: [`RealFs`].
    pub fs: Arc<dyn Fs>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            segment_bytes: 64 << 20,
            preallocate: true,
            max_staged_bytes: crate::wal::DEFAULT_MAX_STAGED_BYTES,
            keep_snapshots: 2,
            recovery: RecoveryPolicy::default(),
            fs: Arc::new(RealFs),
        }
    }
}

impl Options {
    /// Sets [`Options::sync`].
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }
    /// Sets [`Options::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
    /// Sets [`Options::preallocate`].
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }
    /// Sets [`Options::max_staged_bytes`].
    pub fn max_staged_bytes(mut self, bytes: u64) -> Self {
        self.max_staged_bytes = bytes;
        self
    }
    /// Sets [`Options::keep_snapshots`].
    pub fn keep_snapshots(mut self, n: usize) -> Self {
        self.keep_snapshots = n;
        self
    }
    /// Sets [`Options::recovery`].
    pub fn recovery(mut self, policy: RecoveryPolicy) -> Self {
        self.recovery = policy;
        self
    }
    /// Sets [`Options::fs`].
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.segment_bytes < 4096 {
            return Err(crate::Error::InvalidOptions(
                "segment_bytes must be at least 4096",
            ));
        }
        if self.max_staged_bytes < 4096 {
            return Err(crate::Error::InvalidOptions(
                "max_staged_bytes must be at least 4096",
            ));
        }
        if self.keep_snapshots == 0 {
            return Err(crate::Error::InvalidOptions(
                "keep_snapshots must be at least 1",
            ));
        }
        if let SyncPolicy::Interval(d) = self.sync {
            if d.is_zero() {
                return Err(crate::Error::InvalidOptions(
                    "SyncPolicy::Interval needs a non-zero interval",
                ));
            }
        }
        Ok(())
    }
}

/// How [`Store::close_with`](crate::Store::close_with) shuts down.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CloseOptions {
    /// How long to wait for background threads (the checkpointer, cancelled first)
    /// to stop, and again for a final checkpoint cancelled at its deadline. Default
    /// 5 s. Any duration is accepted: one too long for the clock ([`Duration::MAX`])
    /// means "about a century", never a panic. Something still running at this bound
    /// is left to finish and reported
    /// ([`CloseReport::still_closing`](crate::CloseReport::still_closing)).
    pub thread_timeout: Duration,
    /// Run a final checkpoint, waiting at most this long for it (including the wait
    /// for a cancelled checkpoint still running to end); `None` (the default) for
    /// none. One that did not run is reported in
    /// [`CloseReport::final_checkpoint_missed`](crate::CloseReport::final_checkpoint_missed).
    /// With a final checkpoint, every WAL segment it covers is unlinked.
    pub final_checkpoint: Option<Duration>,
}

impl Default for CloseOptions {
    fn default() -> Self {
        CloseOptions {
            thread_timeout: Duration::from_secs(5),
            final_checkpoint: None,
        }
    }
}

impl CloseOptions {
    /// Sets [`CloseOptions::thread_timeout`].
    pub fn thread_timeout(mut self, d: Duration) -> Self {
        self.thread_timeout = d;
        self
    }
    /// Sets [`CloseOptions::final_checkpoint`].
    pub fn final_checkpoint(mut self, deadline: Option<Duration>) -> Self {
        self.final_checkpoint = deadline;
        self
    }
}
