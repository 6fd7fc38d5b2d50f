//! Allocation accounting: a counting global allocator and a bound per input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Peak live bytes allowed per input byte (on top of [`ALLOC_SLACK`]).
pub const ALLOC_FACTOR: usize = 64;
/// Peak live bytes allowed whatever the input (buffers, paths, small maps).
pub const ALLOC_SLACK: usize = 256 * 1024;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let paused = PAUSED.try_with(Cell::get).unwrap_or(true);
        let _ = PEAK.try_with(|peak| {
            if !paused && now > peak.get() {
                peak.set(now);
            }
        });
    });
}

/// A global allocator that counts live bytes per thread, so the harness can check
/// that decoding never allocates out of proportion to its input. Install it with
/// `#[global_allocator] static A: snapwal::testing::fuzz::CountingAlloc = snapwal::testing::fuzz::CountingAlloc;`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// it upholds `GlobalAlloc`'s contract exactly as `System` does. The accounting only
// touches thread-local `Cell`s with const initializers and no destructors, which
// neither allocate nor unwind.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed through to `System`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation of
        // this allocator is), as the caller guarantees for this allocator.
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is passed through unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and checks its peak allocation on this thread against the input length,
/// when [`CountingAlloc`] is the global allocator.
pub(super) fn bounded_alloc<T>(what: &str, input_len: usize, f: impl FnOnce() -> T) -> T {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let probe = std::hint::black_box(vec![0u8; 64]);
    drop(probe);
    let counting = PEAK.with(Cell::get) >= base + 64;
    PEAK.with(|p| p.set(LIVE.with(Cell::get)));
    let out = f();
    if counting {
        let peak = PEAK.with(Cell::get).saturating_sub(base).max(0) as usize;
        let bound = input_len
            .saturating_mul(ALLOC_FACTOR)
            .saturating_add(ALLOC_SLACK);
        assert!(
            peak <= bound,
            "{what}: peak allocation {peak} bytes for {input_len} input bytes (bound {bound})"
        );
    }
    out
}

/// Runs `f` without counting its allocations towards the peak: for checks that
/// write (a snapshot writer's buffer is sized for throughput, not for its input).
pub(super) fn unbounded<T>(f: impl FnOnce() -> T) -> T {
    let was = PAUSED.with(|p| p.replace(true));
    let out = f();
    PAUSED.with(|p| p.set(was));
    out
}
