//! Fuzz target: see `snapwal::testing::fuzz::wal_decode`.
#![no_main]

#[global_allocator]
static ALLOC: snapwal::testing::fuzz::CountingAlloc = snapwal::testing::fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| snapwal::testing::fuzz::wal_decode(data));
