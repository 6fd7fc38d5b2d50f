//! Options of a [`Store`](crate::Store): how it opens ([`Options`]) and how it closes
//! ([`CloseOptions`]).

use std::sync::Arc;
use std::time::Duration;

use crate::fs::{Fs, RealFs};

/// When an append is durable.
///
/// The async appends (`Store::append_async` and friends, feature `async`) follow the
/// same policy: their future completes when the blocking call would return (see the
/// `async_api` module).
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
    /// Reserve space for each segment ahead of its writes (`fallocate`), in steps: 64
    /// KiB when the segment is created ([`RESERVE_START`](crate::wal::RESERVE_START)),
    /// then twice the reservation each time the writes pass half of it, up to
    /// [`Options::segment_bytes`]. So disk use follows the data: a store that appended
    /// a few records holds a few tens of kilobytes, not a whole segment. Default: on.
    ///
    /// Durability does not rest on the reservation: `fdatasync` makes a size change
    /// durable with the data. The reservation keeps most syncs from also committing a
    /// block allocation and a size update, and keeps a segment from running out of
    /// space midway. The growth runs after a write, outside every lock that appenders
    /// or readers need, and nobody waits for it.
    ///
    /// A failed reservation (for example `ENOSPC`) is not an error: the segment is
    /// used without it; it is logged at WARN with the file and the error. Only a
    /// failed write or sync of the log, or a failed create other than a transient one
    /// (see [`Error::SegmentUnavailable`](crate::Error::SegmentUnavailable)), makes the
    /// store read-only.
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
    /// The `store` label of this store's metrics (feature `metrics`, see
    /// [`crate::metrics`]). Default `None`: the store directory's last component.
    pub metrics_label: Option<String>,
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
            metrics_label: None,
        }
    }
}

impl Options {
    /// Sets [`Options::metrics_label`].
    pub fn metrics_label(mut self, label: impl Into<String>) -> Self {
        self.metrics_label = Some(label.into());
        self
    }
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
    /// Free the store's state on a background thread (one per process, named
    /// `snapwal-reclaim`) instead of the closing thread. Freeing a large state can
    /// take tens of milliseconds (the allocator walks every node); with this set,
    /// `close` still closes the files and releases the directory lock before it
    /// returns, and only the memory is freed later. Versions of the state that a
    /// reader still holds (from [`Store::current`](crate::Store::current)) are freed
    /// by whoever drops them last, as always. Default: off.
    pub drop_in_background: bool,
}

impl Default for CloseOptions {
    fn default() -> Self {
        CloseOptions {
            thread_timeout: Duration::from_secs(5),
            final_checkpoint: None,
            drop_in_background: false,
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
    /// Sets [`CloseOptions::drop_in_background`].
    pub fn drop_in_background(mut self, on: bool) -> Self {
        self.drop_in_background = on;
        self
    }
}
