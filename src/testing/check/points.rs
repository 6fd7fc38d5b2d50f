//! Where the concurrent checker crashes a run: a sample of its calls, weighted toward
//! the calls just after a namespace change, where an ordering bug shows.

use std::collections::BTreeSet;

use crate::testing::sim::{OpKind, Rng};

/// The crash points of a run of `calls` calls whose kinds, by call index, are
/// `kinds`, and whose calls `ahead` added a name while another file in its directory
/// held unsynced data ([`SimFs::names_ahead_of_data`](crate::testing::sim::SimFs::names_ahead_of_data)):
/// at most `want` points (fewer for a short run).
///
/// Its end; then, up to a third of the points, the call just after each rename (an
/// install: what it made visible is there, what was to follow is not) and after each
/// of `ahead`; then, up to half of them, among the three calls after each create,
/// rename or unlink (where a namespace change meets the writes around it: a rotation,
/// an install, a purge); the rest uniformly.
pub(super) fn sample(
    calls: u64,
    kinds: &[OpKind],
    ahead: &[u64],
    want: usize,
    rng: &mut Rng,
) -> BTreeSet<u64> {
    let mut points = BTreeSet::new();
    points.insert(calls);
    let want = want.min(calls as usize + 1);
    let renames = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == OpKind::Rename)
        .map(|(i, _)| i as u64);
    let after_ahead: Vec<u64> = ahead
        .iter()
        .copied()
        .chain(renames)
        .map(|c| c + 1)
        .filter(|p| *p < calls)
        .collect();
    let near: Vec<u64> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| matches!(k, OpKind::CreateNew | OpKind::Rename | OpKind::Remove))
        .flat_map(|(i, _)| (1..=3).map(move |d| i as u64 + d))
        .filter(|p| *p < calls)
        .collect();
    for (among, up_to) in [(&after_ahead, want.div_ceil(3)), (&near, want.div_ceil(2))] {
        let mut tries = 0;
        while points.len() < up_to && !among.is_empty() && tries < 4 * want {
            tries += 1;
            if let Some(p) = among.get(rng.below(among.len() as u64) as usize) {
                points.insert(*p);
            }
        }
    }
    while points.len() < want {
        points.insert(rng.below(calls + 1));
    }
    points
}
