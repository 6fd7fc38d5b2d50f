//! Crash images: what a power loss leaves of a [`SimFs`], chosen item by item.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::fault::Rng;
use super::model::{FileData, FileOp, Inner, Node, SECTOR};
use super::SimFs;
use crate::util::lock_raw as lock;

/// How to build a crash image: the choices of the [module docs](super).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choices {
    /// Every pending item dropped: only what was durable.
    AllDropped,
    /// Every pending item kept: what was visible.
    AllKept,
    /// Every pending namespace change kept and every pending data change dropped:
    /// what a file system that orders metadata ahead of data (ext4 with
    /// `data=writeback`) may leave. A new file then survives while the unsynced tail
    /// of an older one is lost, the image that finds a write ordered after a sync it
    /// should have waited for.
    NamesKept,
    /// Each choice a fair coin from [`Rng`] seeded with this.
    Random(u64),
    /// These answers in order; `false` once they run out.
    Bits(Vec<bool>),
}

impl Choices {
    /// The images every crash point is checked with before any random ones: all
    /// dropped, all kept, names kept.
    pub fn fixed() -> Vec<Choices> {
        vec![Choices::AllDropped, Choices::AllKept, Choices::NamesKept]
    }
}

impl fmt::Display for Choices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choices::AllDropped => f.write_str("all dropped"),
            Choices::AllKept => f.write_str("all kept"),
            Choices::NamesKept => f.write_str("names kept, data dropped"),
            Choices::Random(seed) => write!(f, "random (seed {seed:#x})"),
            Choices::Bits(bits) => {
                f.write_str("bits ")?;
                for b in bits {
                    f.write_str(if *b { "1" } else { "0" })?;
                }
                Ok(())
            }
        }
    }
}

/// Applies the part of `op` that falls in the sector starting at `start`.
fn apply_to_sector(buf: &mut [u8; SECTOR as usize], start: u64, op: &FileOp) {
    let end = start + SECTOR;
    match op {
        FileOp::Write { offset, data } => {
            let lo = (*offset).max(start);
            let hi = offset.saturating_add(data.len() as u64).min(end);
            if lo < hi {
                let src = data.get((lo - offset) as usize..(hi - offset) as usize);
                let dst = buf.get_mut((lo - start) as usize..(hi - start) as usize);
                if let (Some(dst), Some(src)) = (dst, src) {
                    dst.copy_from_slice(src);
                }
            }
        }
        FileOp::SetLen(len) => {
            let from = (*len).clamp(start, end) - start;
            for b in buf.iter_mut().skip(from as usize) {
                *b = 0;
            }
        }
    }
}

impl FileData {
    /// The contents a crash leaves, asking `choose` as the module docs say.
    pub(super) fn crash_image(&self, choose: &mut dyn FnMut() -> bool) -> Vec<u8> {
        // Sizes: the size after each pending op that changed it.
        let mut len = self.durable.len() as u64;
        let mut max_len = len;
        let mut size_changes = Vec::new();
        // Sectors touched: sector -> indexes of the ops that touched it, in order.
        let mut touched: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.pending.iter().enumerate() {
            let (new_len, range) = match op {
                FileOp::Write { offset, data } if data.is_empty() => (len, None),
                FileOp::Write { offset, data } => {
                    let end = offset.saturating_add(data.len() as u64);
                    (len.max(end), Some((*offset, end)))
                }
                FileOp::SetLen(l) if *l < len => (*l, Some((*l, len))),
                FileOp::SetLen(l) => (*l, None),
            };
            if let Some((start, end)) = range {
                for s in start / SECTOR..end.div_ceil(SECTOR) {
                    touched.entry(s).or_default().push(i);
                }
            }
            if new_len != len {
                size_changes.push(new_len);
                len = new_len;
                max_len = max_len.max(len);
            }
        }
        let mut size = self.durable.len() as u64;
        for l in size_changes {
            if !choose() {
                break;
            }
            size = l;
        }
        let mut out = self.durable.clone();
        out.resize(usize::try_from(max_len).unwrap_or(0), 0);
        for (sector, ops) in touched {
            let mut kept = 0;
            while kept < ops.len() && choose() {
                kept += 1;
            }
            if kept == 0 {
                continue;
            }
            // The sector as it was durably, then the kept prefix of its ops.
            let start = sector * SECTOR;
            let mut buf = [0u8; SECTOR as usize];
            let durable = usize::try_from(start)
                .ok()
                .and_then(|s| self.durable.get(s..))
                .unwrap_or(&[]);
            for (d, s) in buf.iter_mut().zip(durable) {
                *d = *s;
            }
            for op in ops.iter().take(kept).filter_map(|&i| self.pending.get(i)) {
                apply_to_sector(&mut buf, start, op);
            }
            let lo = usize::try_from(start).unwrap_or(usize::MAX).min(out.len());
            if let Some(dst) = out.get_mut(lo..) {
                for (d, s) in dst.iter_mut().zip(buf) {
                    *d = s;
                }
            }
        }
        out.truncate(usize::try_from(size).unwrap_or(0));
        out
    }
}

impl Inner {
    pub(super) fn image(&self, choose: &mut dyn FnMut() -> bool) -> Inner {
        let mut ns = self.durable.clone();
        let mut tainted: BTreeSet<&Path> = BTreeSet::new();
        for op in &self.dir_ops {
            let names = op.names();
            let keep = !names.iter().any(|n| tainted.contains(n)) && choose();
            if keep {
                op.apply(&mut ns);
            } else {
                tainted.extend(names);
            }
        }
        // Drop entries whose parent directory did not survive. Parents sort before
        // their children, so one pass in order sees every parent first.
        let mut kept: BTreeMap<PathBuf, u64> = BTreeMap::new();
        for (p, ino) in ns {
            let parent_ok = match p.parent() {
                None => true,
                Some(parent) => kept
                    .get(parent)
                    .is_some_and(|pi| matches!(self.nodes.get(pi), Some(Node::Dir))),
            };
            if parent_ok {
                kept.insert(p, ino);
            }
        }
        let inos: BTreeSet<u64> = kept.values().copied().collect();
        let mut nodes = BTreeMap::new();
        for ino in inos {
            let node = match self.nodes.get(&ino) {
                Some(Node::File(f)) => {
                    let bytes = f.crash_image(choose);
                    Node::File(FileData {
                        durable: bytes.clone(),
                        visible: bytes,
                        pending: Vec::new(),
                        // A property of the medium: it survives the crash.
                        unreadable: f.unreadable.clone(),
                    })
                }
                Some(Node::Dir) | None => Node::Dir,
            };
            nodes.insert(ino, node);
        }
        let mut out = Inner::new(self.rng.clone().next_u64());
        out.next_ino = self.next_ino;
        out.nodes = nodes;
        out.visible = kept.clone();
        out.durable = kept;
        out.rename_via_link = self.rename_via_link;
        out
    }
}

impl SimFs {
    /// The file system a power loss now could leave, with each choice made by
    /// `choose` (`true` keeps) in the order the [module docs](super#the-model) give.
    pub fn crash_with(&self, mut choose: impl FnMut() -> bool) -> SimFs {
        SimFs::from_inner(lock(&self.inner).image(&mut choose))
    }

    /// A crash image whose choices are fair coins from the generator this `SimFs` was
    /// seeded with (each call advances it).
    pub fn crash(&self) -> SimFs {
        let seed = lock(&self.inner).rng.next_u64();
        self.crash_random(seed)
    }

    /// A crash image whose choices are fair coins from an [`Rng`] seeded with `seed`.
    pub fn crash_random(&self, seed: u64) -> SimFs {
        let mut rng = Rng::new(seed);
        self.crash_with(move || rng.bool())
    }

    /// The crash image that keeps only what was durable.
    pub fn crash_all_dropped(&self) -> SimFs {
        self.crash_with(|| false)
    }

    /// The crash image that keeps everything (the visible state, made durable).
    pub fn crash_all_kept(&self) -> SimFs {
        self.crash_with(|| true)
    }

    /// A crash image built as `choices` says; also returns every answer given, so
    /// that the same image can be rebuilt with [`Choices::Bits`].
    pub fn crash_image(&self, choices: &Choices) -> (SimFs, Vec<bool>) {
        let mut asked = Vec::new();
        let mut rng = Rng::new(match choices {
            Choices::Random(seed) => *seed,
            _ => 0,
        });
        let mut bits = match choices {
            Choices::Bits(b) => b.as_slice(),
            _ => &[],
        }
        .iter();
        // Namespace changes are asked first, one question each when all are kept.
        let mut names = match choices {
            Choices::NamesKept => lock(&self.inner).dir_ops.len(),
            _ => 0,
        };
        let image = self.crash_with(|| {
            let b = match choices {
                Choices::AllDropped => false,
                Choices::AllKept => true,
                Choices::NamesKept => {
                    let keep = names > 0;
                    names = names.saturating_sub(1);
                    keep
                }
                Choices::Random(_) => rng.bool(),
                Choices::Bits(_) => bits.next().copied().unwrap_or(false),
            };
            asked.push(b);
            b
        });
        (image, asked)
    }
}
