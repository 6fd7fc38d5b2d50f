//! Checking crash images: the images of one run, and one image's recovery, after
//! crashing that recovery too when [`Checker::crash_recovery`] asks.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::{
    sample_calls, Checked, Checker, ImageOutcome, Model, Progress, Report, POST_RECOVERY_EVENT,
    STORE_DIR,
};
use crate::testing::sim::{Choices, FaultError, Rng, SimFs};
use crate::util::panic_message;
use crate::{State, Store};

impl<S, G> Checker<S, G>
where
    S: State + PartialEq + std::fmt::Debug,
    G: Fn(u64) -> S::Event,
{
    /// Checks the crash images of one run that stopped at `point` (a crash point, or
    /// the call that got `fault`).
    pub(super) fn check_images(
        &self,
        (fs, progress, problem): (Arc<SimFs>, Progress, Option<String>),
        point: u64,
        fault: Option<FaultError>,
        model: &mut Model<'_, S, G>,
        report: &mut Report,
    ) {
        let label = |what: String| match fault {
            Some(e) => format!("after {e:?} injected at call {point}: {what}"),
            None => what,
        };
        if let Some(what) = problem {
            let mut failure = self.failure(Some(point), None, Vec::new(), label(what));
            failure.fault = fault;
            report.failures.push(failure);
            return;
        }
        let mut images = Choices::fixed();
        let mut rng = Rng::new(self.seed ^ point.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        images.extend((0..self.random_images).map(|_| Choices::Random(rng.next_u64())));
        for choices in images {
            let (image, bits) = fs.crash_image(&choices);
            report.images += 1;
            match self.check_image(image, progress, model) {
                Ok(out) => {
                    report.images_with_loss += u64::from(out.recovered < out.appended);
                    report.torn_tails += u64::from(out.torn_tail);
                    report.recovery_images += out.recovery_images;
                }
                Err(what) => {
                    let mut failure = self.failure(Some(point), Some(choices), bits, label(what));
                    failure.fault = fault;
                    report.failures.push(failure);
                }
            }
        }
    }

    /// Recovers `image` and checks it against the model (see the module docs), after
    /// crashing its recovery as [`Checker::crash_recovery`] asks.
    pub(super) fn check_image(
        &self,
        image: SimFs,
        p: Progress,
        model: &mut Model<'_, S, G>,
    ) -> Checked<ImageOutcome> {
        let recovery_images = if self.recovery_crashes > 0 {
            self.check_recovery_crashes(&image, p, model)?
        } else {
            0
        };
        self.check_recovered(image, p, model)
            .map(|out| ImageOutcome {
                recovery_images,
                ..out
            })
    }

    /// Crashes the recovery of copies of `image` at sampled calls and checks the
    /// images each crash leaves (see [`Checker::crash_recovery`]).
    fn check_recovery_crashes(
        &self,
        image: &SimFs,
        p: Progress,
        model: &mut Model<'_, S, G>,
    ) -> Checked<u64> {
        let recover = |fs: &Arc<SimFs>| {
            let opts = self.workload.options(Arc::clone(fs));
            // A crash makes `open` fail (or a drop stop short); either is expected.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                drop(Store::<S>::open(STORE_DIR, opts));
            }));
        };
        let probe = Arc::new(image.crash_all_kept());
        recover(&probe);
        let calls = probe.calls();
        let mut rng = Rng::new(self.seed ^ calls.rotate_left(17) ^ p.appended);
        let mut checked = 0;
        for n in sample_calls(&mut rng, calls, self.recovery_crashes) {
            let fs = Arc::new(image.crash_all_kept());
            fs.crash_at(n);
            recover(&fs);
            for choices in [Choices::AllDropped, Choices::Random(rng.next_u64())] {
                let (after, _) = fs.crash_image(&choices);
                self.check_recovered(after, p, model).map_err(|e| {
                    format!("recovery crashed at its call {n} of {calls} ({choices:?}), then: {e}")
                })?;
                checked += 1;
            }
        }
        Ok(checked)
    }

    /// Recovers `image` and checks it against the model (see the module docs).
    fn check_recovered(
        &self,
        image: SimFs,
        p: Progress,
        model: &mut Model<'_, S, G>,
    ) -> Checked<ImageOutcome> {
        let image = Arc::new(image);
        let result = catch_unwind(AssertUnwindSafe(|| -> Checked<ImageOutcome> {
            let opts = self.workload.options(Arc::clone(&image));
            let (store, rep) = Store::<S>::open_with_report(STORE_DIR, opts.clone())
                .map_err(|e| format!("recovery failed: {e}"))?;
            let k = store.seq();
            if k < p.acked || k > p.appended {
                return Err(format!(
                    "recovered seq {k}, outside acknowledged {} ..= appended {}",
                    p.acked, p.appended
                ));
            }
            if *store.current().state() != model.state(k) {
                return Err(format!(
                    "recovered state at seq {k} is not the state after events 1..={k}: {:?} != {:?}",
                    store.current().state(),
                    model.state(k)
                ));
            }
            let post = (self.events)(POST_RECOVERY_EVENT + k + 1);
            let mut expected = model.state(k);
            expected.apply(&post);
            match store.append(&post) {
                Ok(seq) if seq == k + 1 => {}
                Ok(seq) => {
                    return Err(format!(
                        "append after recovery to seq {k} returned seq {seq}"
                    ))
                }
                Err(e) => return Err(format!("append after recovery failed: {e}")),
            }
            store
                .close()
                .map_err(|e| format!("close after recovery failed: {e}"))?;
            let store = Store::<S>::open(STORE_DIR, opts)
                .map_err(|e| format!("second recovery failed: {e}"))?;
            if store.seq() != k + 1 || *store.current().state() != expected {
                return Err(format!(
                    "after recovery to {k}, one append, close and reopen: seq {} (expected {})",
                    store.seq(),
                    k + 1
                ));
            }
            store
                .close()
                .map_err(|e| format!("second close failed: {e}"))?;
            Ok(ImageOutcome {
                recovered: k,
                acknowledged: p.acked,
                appended: p.appended,
                torn_tail: rep.torn_tail.is_some(),
                recovery_images: 0,
            })
        }));
        match result {
            Ok(r) => r,
            Err(panic) => Err(format!(
                "panic during recovery: {}",
                panic_message(panic.as_ref())
            )),
        }
    }
}
