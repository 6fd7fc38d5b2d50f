//! Fuzz target: see `snapwal::harness::wal_decode`.
#![no_main]

#[global_allocator]
static ALLOC: snapwal::harness::CountingAlloc = snapwal::harness::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| snapwal::harness::wal_decode(data));
