//! The published value: a state together with the seq of the last event applied.

use std::ops::Deref;

use crate::Seq;

/// A state together with the seq of the last event applied to it.
///
/// This is what the store publishes: one `Arc` holding both, so a reader or a
/// checkpoint always sees a state that matches its seq exactly.
#[derive(Debug, Clone, Default)]
pub struct Versioned<S> {
    pub(crate) seq: Seq,
    pub(crate) state: S,
}

impl<S> Versioned<S> {
    /// The seq of the last event applied (0 for the empty state).
    pub fn seq(&self) -> Seq {
        self.seq
    }
    /// The state.
    pub fn state(&self) -> &S {
        &self.state
    }
}

impl<S> Deref for Versioned<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.state
    }
}
