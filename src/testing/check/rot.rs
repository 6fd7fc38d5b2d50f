//! Damage to durable data: bit rot, misdirected writes and latent read errors, applied
//! to the files of a cleanly closed store and of crash images, then recovered.
//!
//! See [`Rot`] for what is damaged and what each open must give.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Checker, Model, Progress, POSITION_INODE, STORE_DIR};
use crate::format::{self, RecordScan, SEGMENT_HEADER_LEN};
use crate::testing::sim::{Choices, Damage, Rng, SimFs, SECTOR};
use crate::util::panic_message;
use crate::{snapshot, Error, RecoveryPolicy, Seq, State, Store};

/// [`Checker::rot`] runs the workload to a clean close and to a sample of crash
/// images, and on each image damages one durable file at a time (every WAL segment,
/// snapshot and positions record; each kind of [`Damage`] at offsets chosen with the
/// seed), then opens the store. The open must give one of:
///
/// - **a typed error naming the damaged file** (the file a misdirected sector landed
///   in counts too): [`Error::Corrupt`], [`Error::Decode`] and [`Error::TornTail`]
///   with an offset no later than the last damaged byte, or [`Error::BadMagic`],
///   [`Error::UnsupportedVersion`], [`Error::ForeignFile`], [`Error::MissingRecords`],
///   [`Error::Io`] (a latent read error);
/// - **a correct recovery**: the state after exactly events `1..=k` (anything else is
///   damaged bytes accepted in silence), with `k` at least the acknowledged seq, with
///   two exceptions the contract allows, each reported by the open:
///   - damage in the **last** WAL segment is indistinguishable from a torn write of a
///     crash, so recovery may cut the log at the first damaged record (not before);
///   - under [`RecoveryPolicy::SalvagePrefix`], the records from the first damaged
///     one on may be lost, when the report lists the damaged file as moved aside or
///     skipped;
///
///   no restored position ahead of `k` (I10) or never saved; and the damaged bytes
///   still on disk, under their own name or moved aside to a `.corrupt` name, never
///   deleted by recovery.
///
/// With [`Rot::twice`], every damaged snapshot that recovers is then checkpointed and
/// closed, the same damage is applied to the same name again, and the store must
/// recover again to at least the first recovery's seq (or fail with a typed error
/// naming it), keeping both damaged copies: the path on which `SalvagePrefix`
/// once failed the second time and a checkpoint once vouched for a damaged snapshot
/// because its name existed.
///
/// With [`Rot::rewrite`], every snapshot of every image is also written again with
/// [`snapshot::write`] (a building block of its own) over its name, as it is and
/// with each damage, first without a crash and then crashed before each of its calls
/// (three images per call): a snapshot that validates is never replaced; a damaged
/// one is moved aside, its bytes kept under a `.corrupt` name; the name holds a valid
/// snapshot, the old bytes, or nothing once damaged bytes went aside; a file that
/// cannot be read makes the write fail with an error naming it.
///
/// The fields say how much is explored. Start from [`Rot::default`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rot {
    /// Crash points sampled with the seed (each gives an "everything un-synced
    /// dropped" image and a random one), besides the clean close. Default 2.
    pub crash_points: usize,
    /// Offsets per file for each kind of damage (byte flips and misdirected sectors;
    /// one latent read error per file). Default 2.
    pub per_file: usize,
    /// The recovery policies to open with. Default both
    /// [`RecoveryPolicy::TolerateTornTail`] and [`RecoveryPolicy::SalvagePrefix`].
    pub policies: Vec<RecoveryPolicy>,
    /// Also damage a recovered snapshot's name a second time (see the [`Rot`] docs).
    /// Default on.
    pub twice: bool,
    /// Also write each snapshot again with [`snapshot::write`] over its name, valid
    /// and damaged, crashed at each of its calls (see the [`Rot`] docs).
    /// Default on.
    pub rewrite: bool,
}

impl Default for Rot {
    fn default() -> Self {
        Rot {
            crash_points: 2,
            per_file: 2,
            policies: vec![
                RecoveryPolicy::TolerateTornTail,
                RecoveryPolicy::SalvagePrefix,
            ],
            twice: true,
            rewrite: true,
        }
    }
}

impl Rot {
    /// Sets [`Rot::crash_points`].
    pub fn crash_points(mut self, n: usize) -> Self {
        self.crash_points = n;
        self
    }
    /// Sets [`Rot::per_file`].
    pub fn per_file(mut self, n: usize) -> Self {
        self.per_file = n;
        self
    }
    /// Sets [`Rot::policies`].
    pub fn policies(mut self, p: impl IntoIterator<Item = RecoveryPolicy>) -> Self {
        self.policies = p.into_iter().collect();
        self
    }
    /// Sets [`Rot::twice`].
    pub fn twice(mut self, on: bool) -> Self {
        self.twice = on;
        self
    }
    /// Sets [`Rot::rewrite`].
    pub fn rewrite(mut self, on: bool) -> Self {
        self.rewrite = on;
        self
    }
}

/// What [`Checker::rot`] explored and found.
#[derive(Debug, Clone, Default)]
pub struct RotReport {
    /// Undamaged images: the clean close and the crash images.
    pub images: u64,
    /// Damaged images opened (each damage under each policy, second rounds included).
    pub damages: u64,
    /// Opens that failed with a typed error naming the damaged file.
    pub typed_errors: u64,
    /// Opens that recovered every acknowledged event.
    pub recovered: u64,
    /// Opens that recovered a shorter prefix the contract allows: the last segment
    /// cut at the damage, or a reported salvage.
    pub recovered_short: u64,
    /// Second rounds run ([`Rot::twice`]).
    pub second_rounds: u64,
    /// Snapshot writes over an existing name, valid or damaged ([`Rot::rewrite`]).
    pub rewrites: u64,
    /// Crash images of those writes checked.
    pub rewrite_images: u64,
    /// Contract violations, each with its reproduction.
    pub failures: Vec<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl fmt::Display for RotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} images, {} damages opened ({} second rounds): {} typed errors, {} full recoveries, {} allowed shorter recoveries; {} snapshot rewrites ({} crash images); {} violations, {:.1} s",
            self.images,
            self.damages,
            self.second_rounds,
            self.typed_errors,
            self.recovered,
            self.recovered_short,
            self.rewrites,
            self.rewrite_images,
            self.failures.len(),
            self.elapsed.as_secs_f64()
        )?;
        for fail in self.failures.iter().take(10) {
            write!(f, "\n  {fail}")?;
        }
        Ok(())
    }
}

/// How one damaged open ended, when the contract allows it.
enum Verdict {
    Error,
    Full(Seq),
    Short,
}

/// One damaged image to open: what was damaged and what the open must respect.
struct Case<'a> {
    image: &'a SimFs,
    progress: Progress,
    file: &'a Path,
    damage: &'a Damage,
    policy: RecoveryPolicy,
}

impl<S, G> Checker<S, G>
where
    S: State + PartialEq + fmt::Debug,
    G: Fn(u64) -> S::Event,
{
    /// Damages the durable files of a clean close and of crash images, one damage at
    /// a time, and opens each: see the [`Rot`] docs.
    pub fn rot(&self, rot: &Rot) -> RotReport {
        let start = Instant::now();
        let mut report = RotReport::default();
        let mut model = Model {
            events: &self.events,
            states: Vec::new(),
        };
        for (label, image, progress) in self.rot_images(rot, &mut model, &mut report) {
            report.images += 1;
            self.damage_image(rot, &label, &image, progress, &mut model, &mut report);
        }
        report.elapsed = start.elapsed();
        report
    }

    /// The undamaged images: the clean close, then sampled crash images.
    fn rot_images(
        &self,
        rot: &Rot,
        model: &mut Model<'_, S, G>,
        report: &mut RotReport,
    ) -> Vec<(String, SimFs, Progress)> {
        let mut out = Vec::new();
        let (fs, progress, problem) = self.run_workload(None, model);
        if let Some(what) = problem {
            report.failures.push(format!("crash-free run: {what}"));
            return out;
        }
        // The process ends (its page cache survives), a new one opens and closes.
        let clean = Arc::new(fs.crash_all_kept());
        let closed = Store::<S>::open(STORE_DIR, self.workload.options(Arc::clone(&clean)))
            .and_then(|s| s.close());
        match closed {
            Ok(_) => {
                let p = Progress {
                    appended: progress.appended,
                    acked: progress.appended,
                };
                out.push(("clean close".to_string(), clean.crash_all_dropped(), p));
            }
            Err(e) => report.failures.push(format!("clean close: {e}")),
        }
        let total = fs.calls();
        let mut rng = Rng::new(self.seed ^ 0x0b17_7075);
        for _ in 0..rot.crash_points {
            let point = rng.below(total + 1);
            let (fs, progress, problem) = self.run_workload(Some(point), model);
            if let Some(what) = problem {
                report
                    .failures
                    .push(format!("crash before call {point}: {what}"));
                continue;
            }
            for choices in [Choices::AllDropped, Choices::Random(rng.next_u64())] {
                let (image, _) = fs.crash_image(&choices);
                out.push((
                    format!("crash before call {point}, image {choices}"),
                    image,
                    progress,
                ));
            }
        }
        out
    }

    /// Every damage of every durable file of `image`, under every policy.
    fn damage_image(
        &self,
        rot: &Rot,
        label: &str,
        image: &SimFs,
        progress: Progress,
        model: &mut Model<'_, S, G>,
        report: &mut RotReport,
    ) {
        let files: Vec<(PathBuf, u64)> = image
            .files()
            .into_iter()
            .filter(|(p, len)| *len > 0 && is_store_file(p))
            .collect();
        let mut rng = Rng::new(self.seed ^ progress.appended.rotate_left(29) ^ files.len() as u64);
        for (file, len) in &files {
            let mut damages = Vec::new();
            for i in 0..rot.per_file {
                // The first flip hits a header, the others anywhere.
                let offset = if i == 0 {
                    rng.below((*len).min(SEGMENT_HEADER_LEN as u64 + 16))
                } else {
                    rng.below(*len)
                };
                let mask = 1u8 << rng.below(8);
                damages.push(Damage::Flip { offset, mask });
                let sectors = len.div_ceil(SECTOR);
                if sectors >= 2 {
                    let a = rng.below(sectors);
                    let b = (a + 1 + rng.below(sectors - 1)) % sectors;
                    damages.push(Damage::Misdirect {
                        intended: a * SECTOR,
                        landed: b * SECTOR,
                    });
                } else if let Some((other, olen)) = {
                    let others: Vec<_> = files.iter().filter(|(o, _)| o != file).collect();
                    others.get(rng.below(others.len() as u64) as usize).copied()
                } {
                    damages.push(Damage::MisdirectInto {
                        intended: 0,
                        other: other.clone(),
                        landed: rng.below(olen.div_ceil(SECTOR)) * SECTOR,
                    });
                }
            }
            damages.push(Damage::Unreadable {
                offset: rng.below(*len),
            });
            if rot.rewrite && is_snapshot(file) {
                for damage in std::iter::once(None).chain(damages.iter().map(Some)) {
                    report.rewrites += 1;
                    match self.rewrite_snapshot(image, file, damage, model) {
                        Ok(n) => report.rewrite_images += n,
                        Err(e) => report.failures.push(format!(
                            "{label}: snapshot::write over {} (damaged by {damage:?}): {e}",
                            file.display()
                        )),
                    }
                }
            }
            for damage in &damages {
                for &policy in &rot.policies {
                    let case = Case {
                        image,
                        progress,
                        file,
                        damage,
                        policy,
                    };
                    let what = |e: String| {
                        format!(
                            "{label}: {} damaged by {damage:?}, {policy:?}: {e}",
                            file.display()
                        )
                    };
                    report.damages += 1;
                    match self.open_damaged(&case, model) {
                        Ok((Verdict::Error, _)) => report.typed_errors += 1,
                        Ok((Verdict::Full(k), fs)) => {
                            report.recovered += 1;
                            if rot.twice && is_snapshot(file) {
                                let second = self.second_round(&case, fs, k, model);
                                if !matches!(second, Ok(None)) {
                                    report.second_rounds += 1;
                                    report.damages += 1;
                                }
                                match second {
                                    Ok(None) => {}
                                    Ok(Some(Verdict::Error)) => report.typed_errors += 1,
                                    Ok(Some(Verdict::Full(_))) => report.recovered += 1,
                                    Ok(Some(Verdict::Short)) => report.recovered_short += 1,
                                    Err(e) => report.failures.push(what(format!(
                                        "second round (checkpoint, close, same damage again): {e}"
                                    ))),
                                }
                            }
                        }
                        Ok((Verdict::Short, _)) => report.recovered_short += 1,
                        Err(e) => report.failures.push(what(e)),
                    }
                }
            }
        }
    }

    /// Damages a copy of the case's image and opens it; returns the verdict and the
    /// file system after the open (the store closed or dropped).
    fn open_damaged(
        &self,
        case: &Case<'_>,
        model: &mut Model<'_, S, G>,
    ) -> Result<(Verdict, Arc<SimFs>), String> {
        let fs = Arc::new(case.image.crash_all_kept());
        fs.damage(case.file, case.damage)
            .map_err(|e| format!("could not apply the damage: {e}"))?;
        let verdict = self.judge_open(case, &fs, case.progress, model)?;
        Ok((verdict, fs))
    }

    /// The second round: checkpoint and close the recovered store, damage the same
    /// name the same way again, open again. `None` when the checkpoint wrote no
    /// snapshot under that name (its seq moved on).
    fn second_round(
        &self,
        case: &Case<'_>,
        fs: Arc<SimFs>,
        k: Seq,
        model: &mut Model<'_, S, G>,
    ) -> Result<Option<Verdict>, String> {
        let opts = self.workload.options(Arc::clone(&fs)).recovery(case.policy);
        let store = Store::<S>::open(STORE_DIR, opts).map_err(|e| format!("reopen: {e}"))?;
        if store.seq() != k {
            return Err(format!("reopened at {} after recovering {k}", store.seq()));
        }
        store.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
        store.close().map_err(|e| format!("close: {e}"))?;
        let other_gone = match case.damage {
            Damage::MisdirectInto { other, .. } => !fs.exists(other),
            _ => false,
        };
        if !fs.exists(case.file) || other_gone {
            // The checkpoint wrote no snapshot under that name (its seq moved on), or
            // pruned the file a misdirected sector would land in.
            return Ok(None);
        }
        let image = fs.crash_all_dropped();
        // The new snapshot may be shorter (other positions): the same damage, within it.
        let len = |f: &Path| image.contents(f).map_or(1, |b| (b.len() as u64).max(1));
        let damage = match case.damage.clone() {
            Damage::Flip { offset, mask } => Damage::Flip {
                offset: offset % len(case.file),
                mask,
            },
            Damage::Misdirect { intended, landed } => Damage::Misdirect {
                intended: intended % len(case.file),
                landed: landed % len(case.file),
            },
            Damage::MisdirectInto {
                intended,
                other,
                landed,
            } => Damage::MisdirectInto {
                intended: intended % len(case.file),
                landed: landed % len(&other),
                other,
            },
            Damage::Unreadable { offset } => Damage::Unreadable {
                offset: offset % len(case.file),
            },
        };
        if let Damage::Misdirect { intended, landed } = damage {
            if intended / SECTOR == landed / SECTOR {
                return Ok(None);
            }
        }
        let again = Case {
            image: &image,
            damage: &damage,
            progress: Progress {
                appended: k,
                acked: k,
            },
            ..*case
        };
        let first_aside: Vec<(PathBuf, Vec<u8>)> = image
            .files()
            .into_iter()
            .filter(|(p, _)| is_aside_of(p, case.file))
            .filter_map(|(p, _)| image.contents(&p).map(|b| (p, b)))
            .collect();
        let (verdict, after) = self.open_damaged(&again, model)?;
        for (path, bytes) in first_aside {
            if after.contents(&path).as_deref() != Some(&bytes) {
                return Err(format!(
                    "the first round's damaged copy {} is gone",
                    path.display()
                ));
            }
        }
        Ok(Some(verdict))
    }

    /// Writes the snapshot `file` of `image` again with [`snapshot::write`] (the state
    /// after its seq), over its name holding the file as it is (`None`) or damaged:
    /// first without a crash, then crashed before each call of the write. A file
    /// that validates stands in for the new one and is never touched; a damaged one
    /// is moved aside (its bytes kept as `.corrupt`); a crash leaves the name holding
    /// a valid snapshot or the old bytes, and never loses the old bytes. Returns the
    /// crash images checked.
    fn rewrite_snapshot(
        &self,
        image: &SimFs,
        file: &Path,
        damage: Option<&Damage>,
        model: &mut Model<'_, S, G>,
    ) -> Result<u64, String> {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let (Some(seq), Some(bytes)) = (
            name.and_then(|n| format::parse_name(&n, "snap")),
            image.contents(file),
        ) else {
            return Ok(0);
        };
        let Ok(header) = format::SnapshotHeader::decode(&bytes) else {
            return Ok(0);
        };
        let dir = file.parent().unwrap_or(Path::new("/"));
        let value = (model.state(seq), Vec::<(String, crate::Position)>::new());
        let base = image.crash_all_kept();
        if let Some(d) = damage {
            base.damage(file, d)
                .map_err(|e| format!("could not apply the damage: {e}"))?;
        }
        let old = base.contents(file).unwrap_or_default();
        let old_valid = snapshot::verify(&base, file, Some(header.store_id)).is_ok();
        let write = |fs: &SimFs| snapshot::write(fs, dir, seq, header.store_id, &value);
        // Without a crash.
        let fs = base.crash_all_kept();
        let result = write(&fs);
        match (&result, old_valid) {
            (Ok(w), true) if w.installed => {
                return Err("a valid snapshot under the name was replaced".into())
            }
            (Ok(_), _) => {}
            // A file it cannot read cannot vouch for anything: refusing is typed.
            (Err(e @ Error::Io { path, .. }), _) if path == file => {
                tracing::debug!(error = %e, "snapshot write refused an unreadable file");
            }
            (Err(e), _) => return Err(format!("write failed: {e}")),
        }
        check_rewritten(&fs, file, header.store_id, &old, old_valid)?;
        // Crashed before each of its calls.
        let probe = base.crash_all_kept();
        let _ = write(&probe);
        let mut images = 0;
        let mut rng = Rng::new(self.seed ^ seq);
        for n in 0..=probe.calls() {
            let fs = base.crash_all_kept();
            fs.crash_at(n);
            let _ = write(&fs);
            let mut crash_images = Choices::fixed();
            crash_images.push(Choices::Random(rng.next_u64()));
            for choices in crash_images {
                let (after, _) = fs.crash_image(&choices);
                images += 1;
                check_rewritten(&after, file, header.store_id, &old, old_valid)
                    .map_err(|e| format!("crash before call {n}, image {choices}: {e}"))?;
            }
        }
        Ok(images)
    }

    /// Opens the damaged `fs` and judges the outcome (see [`Rot`]).
    fn judge_open(
        &self,
        case: &Case<'_>,
        fs: &Arc<SimFs>,
        p: Progress,
        model: &mut Model<'_, S, G>,
    ) -> Result<Verdict, String> {
        let damaged_bytes = fs.contents(case.file);
        let opts = self.workload.options(Arc::clone(fs)).recovery(case.policy);
        let opened = catch_unwind(AssertUnwindSafe(|| {
            Store::<S>::open_with_report(STORE_DIR, opts)
        }))
        .map_err(|panic| format!("panic in open: {}", panic_message(panic.as_ref())))?;
        let (store, rep) = match opened {
            Ok(x) => x,
            Err(e) => return judge_error(case, &e).map(|()| Verdict::Error),
        };
        let k = store.seq();
        if k > p.appended {
            return Err(format!(
                "recovered seq {k} past the {} appended",
                p.appended
            ));
        }
        if *store.current().state() != model.state(k) {
            return Err(format!(
                "recovered seq {k} with a state that is not the state after events 1..={k}: damaged bytes accepted in silence"
            ));
        }
        for (name, pos) in store.positions() {
            let saved = pos == crate::Position::default()
                || (pos.inode == POSITION_INODE && pos.timestamp == 0);
            if !saved || pos.offset > k {
                return Err(format!(
                    "restored position {name} = {pos:?} at seq {k}: never saved, or ahead of the state"
                ));
            }
        }
        drop(store);
        if let Some(bytes) = &damaged_bytes {
            kept_aside(fs, case.file, bytes)?;
        }
        if k >= p.acked {
            return Ok(Verdict::Full(k));
        }
        // Less than acknowledged: only a loss the open reports and the damage explains.
        // The damaged regions: the file's own, and where a misdirected sector landed.
        let mut regions = vec![(case.file, case.damage.span().0)];
        if let Damage::MisdirectInto { other, landed, .. } = case.damage {
            regions.push((other.as_path(), landed - landed % SECTOR));
        }
        let floors: Vec<_> = regions
            .iter()
            .map(|&(file, lo)| (file, first_damaged_seq(case.image, file, lo)))
            .collect();
        let allowed = floors.iter().any(|&(file, floor)| match floor {
            // Only the last segment can be torn, so damage there may be cut as a tear,
            // or, when no record before it is valid, the segment moved aside: each
            // reported.
            Some(first) if k + 1 >= first => {
                let cut = is_last_segment(case.image, file)
                    && (rep
                        .torn_tail
                        .as_ref()
                        .is_some_and(|(path, _, _)| path == file)
                        || rep.quarantined.iter().any(|q| is_aside_of(q, file))
                        // Zeros only: removed as a segment created but never written
                        // (with a warning); the damage left nothing to keep.
                        || (!fs.exists(file) && fs_zeros(case.image, file, case.damage)));
                let salvaged =
                    case.policy == RecoveryPolicy::SalvagePrefix && !rep.quarantined.is_empty();
                cut || salvaged
            }
            Some(_) => false,
            // A salvage may give up the records a damaged snapshot held, reported.
            None => {
                case.policy == RecoveryPolicy::SalvagePrefix
                    && rep.snapshots_skipped.iter().any(|(path, _)| path == file)
            }
        });
        if allowed {
            Ok(Verdict::Short)
        } else {
            Err(format!(
                "recovered seq {k}, below the acknowledged {} (first damaged records: {floors:?}; report: torn tail {:?}, quarantined {:?}, snapshots skipped {})",
                p.acked,
                rep.torn_tail,
                rep.quarantined,
                rep.snapshots_skipped.len()
            ))
        }
    }
}

/// After a snapshot write over `file`, which held `old`: the name holds a valid
/// snapshot, the old bytes, or (once damaged old bytes went aside) nothing; the old
/// bytes are not lost (kept under the name or a `.corrupt` one); a valid old file is
/// never replaced.
fn check_rewritten(
    fs: &SimFs,
    file: &Path,
    store_id: u64,
    old: &[u8],
    old_valid: bool,
) -> Result<(), String> {
    let now = fs.contents(file);
    if old_valid && now.as_deref() != Some(old) {
        return Err(format!(
            "the valid snapshot under {} was replaced or removed",
            file.display()
        ));
    }
    // Free between moving a damaged file aside and installing the new one.
    let free_or_old = now.is_none() || now.as_deref() == Some(old);
    if !free_or_old && snapshot::verify(fs, file, Some(store_id)).is_err() {
        return Err(format!(
            "{} holds neither a valid snapshot nor its old bytes",
            file.display()
        ));
    }
    kept_aside(fs, file, old)
}

/// Is `aside` a name [`move_aside`](crate::fs) gives `file` (`<file>.corrupt` or
/// `<file>.<n>.corrupt`)?
fn is_aside_of(aside: &Path, file: &Path) -> bool {
    let (aside, file) = (aside.to_string_lossy(), file.to_string_lossy());
    aside
        .strip_prefix(&*file)
        .and_then(|rest| rest.strip_suffix(".corrupt"))
        .is_some_and(|n| {
            n.is_empty()
                || n.strip_prefix('.')
                    .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Is `file` the WAL segment with the highest first seq in `image`?
fn is_last_segment(image: &SimFs, file: &Path) -> bool {
    let last = image
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| is_segment(p))
        .max();
    last.as_deref() == Some(file)
}

/// The seq of the first record of the WAL segment `file` (in the undamaged `image`)
/// that a damage from byte `lo` on touches (the segment's first seq when it hits the
/// header); `None` for other files.
fn first_damaged_seq(image: &SimFs, file: &Path, lo: u64) -> Option<Seq> {
    if !is_segment(file) {
        return None;
    }
    let first = format::parse_name(&file.file_name()?.to_string_lossy(), "wal")?;
    let bytes = image.contents(file)?;
    if lo < SEGMENT_HEADER_LEN as u64 {
        return Some(first);
    }
    let mut scan = RecordScan::new(&bytes, first);
    for rec in scan.by_ref() {
        let end = rec.offset + format::frame_len(rec.payload.len()) as u64;
        if lo < end {
            return Some(rec.seq);
        }
    }
    Some(scan.next_seq())
}

/// A typed error that names the damaged file (or the file a misdirected sector landed
/// in), at or before the damage where it gives an offset.
fn judge_error(case: &Case<'_>, e: &Error) -> Result<(), String> {
    let mut files = vec![case.file.to_path_buf()];
    if let Damage::MisdirectInto { other, .. } = case.damage {
        files.push(other.clone());
    }
    let last = match case.damage {
        Damage::MisdirectInto { landed, .. } => case.damage.span().1.max(*landed + SECTOR),
        d => d.span().1,
    };
    let (path, offset) = match e {
        Error::Corrupt { path, offset, .. }
        | Error::Decode { path, offset, .. }
        | Error::TornTail { path, offset, .. } => (path, Some(*offset)),
        Error::BadMagic { path }
        | Error::UnsupportedVersion { path, .. }
        | Error::ForeignFile { path, .. }
        | Error::MissingRecords { path, .. } => (path, None),
        Error::Io { path, source, .. } if !crate::testing::sim::is_crash(source) => (path, None),
        other => {
            return Err(format!(
                "open failed with an error that names no damage: {other}"
            ))
        }
    };
    if !files.iter().any(|f| f == path) {
        return Err(format!(
            "open failed naming {} instead of the damaged file: {e}",
            path.display()
        ));
    }
    match offset {
        Some(o) if o > last => Err(format!(
            "open failed at offset {o}, past the last damaged byte {last}: {e}"
        )),
        _ => Ok(()),
    }
}

/// Does the damage leave the file `file` of `image` all zeros?
fn fs_zeros(image: &SimFs, file: &Path, damage: &Damage) -> bool {
    let copy = image.crash_all_kept();
    let target = match damage {
        Damage::MisdirectInto { other, .. } if other == file => return false,
        _ => file,
    };
    copy.damage(target, damage).is_ok()
        && copy
            .contents(file)
            .is_some_and(|b| b.iter().all(|&x| x == 0))
}

/// The damaged bytes are still on disk: under their own name, or moved aside to a
/// `.corrupt` name next to it (a file of zeros only may be removed: nothing is lost).
fn kept_aside(fs: &SimFs, file: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs.contents(file).as_deref() == Some(bytes) || bytes.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let aside = fs
        .files()
        .into_iter()
        .any(|(p, _)| is_aside_of(&p, file) && fs.contents(&p).as_deref() == Some(bytes));
    if aside {
        return Ok(());
    }
    Err(format!(
        "the damaged bytes of {} are gone: not under their name, not moved aside as .corrupt",
        file.display()
    ))
}

fn is_store_file(p: &Path) -> bool {
    is_segment(p) || is_snapshot(p) || is_positions(p)
}

fn in_dir(p: &Path, dir: &str, ext: &str) -> bool {
    p.parent() == Some(Path::new(STORE_DIR).join(dir).as_path())
        && p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| format::parse_name(n, ext))
            .is_some()
}

fn is_segment(p: &Path) -> bool {
    in_dir(p, "wal", "wal")
}

fn is_snapshot(p: &Path) -> bool {
    in_dir(p, "snap", "snap")
}

fn is_positions(p: &Path) -> bool {
    in_dir(p, "pos", "snap")
}
