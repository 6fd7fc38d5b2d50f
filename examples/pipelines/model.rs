//! The pipelines workload, shared by the demo and the benches: step records, the
//! structurally shared state snapwal stores, and the plain state of the mutex
//! baseline.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// The workload: step records of about 100 bytes, generated deterministically.

/// One step of a pipeline: about 100 bytes encoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub n: u64,
    pub at_ms: u64,
    pub status: u8,
    pub detail: String,
}

/// The event: pipeline `pipeline` finished `step`. The step is `Arc`'d (and encoded
/// as the step itself): snapwal applies each decoded event to both of its copies of
/// the state, and the structurally shared state keeps this one allocation in both.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDone {
    pub pipeline: u32,
    pub step: Shared<Step>,
}

/// A small deterministic generator (xorshift64*), so both stores see the same events.
pub struct Gen(pub u64);

impl Gen {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn step(&mut self, n: u64) -> Shared<Step> {
        const WORDS: [&str; 8] = [
            "fetch", "build", "test", "lint", "package", "deploy", "verify", "notify",
        ];
        let r = self.next();
        // Formatted on the stack and allocated once, exactly as long as a decoded
        // copy: a state built from these events has the size of one built from the log.
        let mut buf = [0u8; 160];
        let mut w = &mut buf[..];
        let _ = write!(
            w,
            "{} ok in {} ms on worker-{:02}; artifact {:016x}; cache hit ratio 0.{:02}",
            WORDS[(r & 7) as usize],
            (r >> 8) % 10_000,
            (r >> 24) % 64,
            r,
            (r >> 32) % 100
        );
        let len = 160 - w.len();
        let detail = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
        Shared(Arc::new(Step {
            n,
            at_ms: 1_700_000_000_000 + n * 7,
            status: (r % 3) as u8,
            detail,
        }))
    }

    pub fn event(&mut self, pipelines: u32, n: u64) -> StepDone {
        let pipeline = (self.next() % u64::from(pipelines)) as u32;
        StepDone {
            pipeline,
            step: self.step(n),
        }
    }
}

// ---------------------------------------------------------------------------------
// snapwal's state: structurally shared.

/// An `Arc`'d value: cloning it (when the writer copies an `imbl` node) is a
/// reference-count increment, not a deep copy. Serialized as the value itself.
#[derive(Debug, Clone, Default)]
pub struct Shared<T>(pub Arc<T>);

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<Se: Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|v| Shared(Arc::new(v)))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pipeline {
    pub steps_done: u64,
    pub steps: imbl::Vector<Shared<Step>>,
}

/// The daemon's state. `clone` is O(1); applying an event copies the trie path to one
/// pipeline (pointers only: each pipeline sits behind an `Arc`), the pipeline header,
/// and the chunks of its history it touches (pointers to `Arc`'d steps).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Daemon {
    pub history: usize,
    pub pipelines: imbl::HashMap<u32, Shared<Pipeline>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    Configure { history: usize },
    Step(StepDone),
}

impl snapwal::State for Daemon {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Configure { history } => self.history = *history,
            Event::Step(e) => {
                let p = Arc::make_mut(&mut self.pipelines.entry(e.pipeline).or_default().0);
                p.steps_done += 1;
                p.steps.push_back(e.step.clone());
                while p.steps.len() > self.history.max(1) {
                    p.steps.pop_front();
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The mutex baseline: what daemons do today.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BPipeline {
    pub steps_done: u64,
    pub steps: VecDeque<Step>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BState {
    pub seq: u64,
    pub history: usize,
    pub pipelines: HashMap<u32, BPipeline>,
}

impl BState {
    pub fn apply(&mut self, e: &StepDone) {
        let p = self.pipelines.entry(e.pipeline).or_default();
        p.steps_done += 1;
        p.steps.push_back(Step::clone(&e.step.0));
        while p.steps.len() > self.history.max(1) {
            p.steps.pop_front();
        }
    }
}

/// The baseline's own plain state stored in snapwal as it is (`snapwal (plain)`): std
/// collections, no structural sharing, the same events as [`Daemon`]. snapwal keeps
/// its own seq beside the state, so `seq` stays 0 there.
impl snapwal::State for BState {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Configure { history } => self.history = *history,
            Event::Step(e) => BState::apply(self, e),
        }
    }
}
