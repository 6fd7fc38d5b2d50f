//! The appending thread's encode buffer: every event of an append is encoded into one
//! reused buffer (grown once, to the largest append this thread has made), its CRC
//! computed over it, and the WAL copies each payload once into its staged chunk. No
//! per-event allocation and no reallocation while encoding.

use std::cell::Cell;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format;

/// Encoded payloads of one append: `bytes` holds them back to back; `spans` gives
/// each one's end offset and CRC32C.
#[derive(Default)]
pub(super) struct Scratch {
    bytes: Vec<u8>,
    spans: Vec<(usize, u32)>,
}

/// A buffer grown past this is not kept for the next append (one huge batch must not
/// pin its memory in the thread for ever).
const KEEP_BYTES: usize = 1 << 20;

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

impl Scratch {
    /// This thread's buffer, empty. (A nested call, which the store never makes, would
    /// get a fresh one.)
    pub(super) fn take() -> Scratch {
        SCRATCH.with(Cell::take)
    }

    /// Returns the buffer to this thread for its next append.
    pub(super) fn put_back(mut self) {
        if self.bytes.capacity() > KEEP_BYTES {
            return;
        }
        self.bytes.clear();
        self.spans.clear();
        SCRATCH.with(|c| c.set(self));
    }

    /// Encodes `event` after the payloads already here.
    pub(super) fn encode<E: Serialize>(&mut self, event: &E) -> Result<()> {
        let start = self.bytes.len();
        if let Err(e) = postcard::to_io(event, &mut self.bytes) {
            self.bytes.truncate(start);
            return Err(Error::Encode(e));
        }
        let payload = self.bytes.get(start..).unwrap_or_default();
        if payload.len() > u32::MAX as usize - format::FRAME_HEADER_LEN {
            let bytes = payload.len();
            self.bytes.truncate(start);
            return Err(Error::TooLarge { bytes });
        }
        let crc = crc32c::crc32c(payload);
        self.spans.push((self.bytes.len(), crc));
        Ok(())
    }

    /// Decodes every payload back into an owned event (the copy the writer replays
    /// onto its spare version; see the `store` module docs).
    pub(super) fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<Vec<E>> {
        self.frames()
            .map(|(p, _)| postcard::from_bytes(p).map_err(Error::Encode))
            .collect()
    }

    /// The bytes the encoded payloads take once framed.
    pub(super) fn frame_bytes(&self) -> u64 {
        self.frames()
            .map(|(p, _)| format::frame_len(p.len()) as u64)
            .sum()
    }

    /// Each payload with its CRC, in order.
    pub(super) fn frames(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        let mut start = 0;
        self.spans.iter().map(move |&(end, crc)| {
            let payload = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            (payload, crc)
        })
    }
}
