//! The writer applies events in place to a version nobody reads and replays the events
//! it missed onto the other copy. Many appenders, readers that hold versions for random
//! times, and a checkpoint loop run together; afterwards every version a reader saw
//! must equal applying events 1..seq in seq order, for a plain std state and for an
//! `imbl` state (issue 11). Both copies are read in turn, so a divergence of either
//! shows up here.

use serde::{Deserialize, Serialize};
use snapwal::{Options, Seq, State, Store, SyncPolicy};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Put {
    key: u32,
    val: u64,
}

/// What both state kinds must agree on: each key's last few values, in order.
type Canon = BTreeMap<u32, Vec<u64>>;

trait Checked: State<Event = Put> {
    fn canon(&self) -> Canon;
}

const KEEP: usize = 4;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Plain {
    map: HashMap<u32, Vec<u64>>,
}

impl State for Plain {
    type Event = Put;
    fn apply(&mut self, e: &Put) {
        let v = self.map.entry(e.key).or_default();
        v.push(e.val);
        if v.len() > KEEP {
            v.remove(0);
        }
    }
}

impl Checked for Plain {
    fn canon(&self) -> Canon {
        self.map.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Shared {
    map: imbl::HashMap<u32, imbl::Vector<u64>>,
}

impl State for Shared {
    type Event = Put;
    fn apply(&mut self, e: &Put) {
        let v = self.map.entry(e.key).or_default();
        v.push_back(e.val);
        if v.len() > KEEP {
            v.pop_front();
        }
    }
}

impl Checked for Shared {
    fn canon(&self) -> Canon {
        self.map
            .iter()
            .map(|(k, v)| (*k, v.iter().copied().collect()))
            .collect()
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn stress<S: Checked>(sync: SyncPolicy) {
    const WRITERS: u64 = 4;
    const READERS: u64 = 3;
    const PER_WRITER: u64 = 1500;
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .sync(sync)
        .segment_bytes(32 * 1024)
        .preallocate(false);
    let store = Store::<S>::open(dir.path(), options.clone()).unwrap();
    let by_seq: Mutex<BTreeMap<Seq, Put>> = Mutex::new(BTreeMap::new());
    let seen: Mutex<Vec<(Seq, Canon)>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, by_seq) = (&store, &by_seq);
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9 + w);
                    for _ in 0..PER_WRITER {
                        let e = Put {
                            key: (rng.next() % 64) as u32,
                            val: rng.next(),
                        };
                        if rng.next() % 8 == 0 {
                            // A batch of two, and a check-then-append.
                            let e2 = Put {
                                key: e.key,
                                val: !e.val,
                            };
                            let last = store.append_batch(&[e.clone(), e2.clone()]).unwrap();
                            let mut m = by_seq.lock().unwrap();
                            m.insert(last - 1, e);
                            m.insert(last, e2);
                        } else if rng.next() % 8 == 0 {
                            let v = store
                                .append_with(|_| Ok::<_, ()>(Some(e.clone())))
                                .unwrap()
                                .unwrap();
                            by_seq.lock().unwrap().insert(v.seq(), e);
                        } else {
                            let seq = store.append(&e).unwrap();
                            by_seq.lock().unwrap().insert(seq, e);
                        }
                    }
                })
            })
            .collect();
        for r in 0..READERS {
            let (store, seen, done) = (&store, &seen, &done);
            s.spawn(move || {
                let mut rng = Rng(0x1234_5678 + r);
                let mut held: Vec<Arc<snapwal::Versioned<S>>> = Vec::new();
                while !done.load(Ordering::Acquire) {
                    // A guard read (no reference count) sees an exact version too.
                    let guarded = store.with_current(|v| (v.seq(), v.canon()));
                    seen.lock().unwrap().push(guarded);
                    let d = store.current_durable();
                    seen.lock().unwrap().push((d.seq(), d.canon()));
                    let v = store.current();
                    seen.lock().unwrap().push((v.seq(), v.canon()));
                    // Hold versions for random times (across many appends), then look
                    // again: a held version must not change under the reader.
                    held.push(v);
                    if rng.next() % 4 == 0 || held.len() > 8 {
                        let i = (rng.next() % held.len() as u64) as usize;
                        let old = held.swap_remove(i);
                        seen.lock().unwrap().push((old.seq(), old.canon()));
                    }
                    if rng.next() % 16 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(rng.next() % 500));
                    }
                }
            });
        }
        {
            let (store, done) = (&store, &done);
            s.spawn(move || {
                while !done.load(Ordering::Acquire) {
                    store.checkpoint().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
        }
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let by_seq = by_seq.into_inner().unwrap();
    let total = by_seq.len() as Seq;
    assert_eq!(store.seq(), total);
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    // The states after each seq, replayed on a fresh state.
    let mut seen = seen.into_inner().unwrap();
    seen.push((store.seq(), store.current().canon()));
    seen.sort_by_key(|(seq, _)| *seq);
    let mut replay = S::default();
    let mut at = 0;
    for (seq, canon) in &seen {
        while at < *seq {
            at += 1;
            replay.apply(&by_seq[&at]);
        }
        assert_eq!(
            &replay.canon(),
            canon,
            "version at seq {seq} differs from replay"
        );
    }
    store.close().unwrap();
    let reopened = Store::<S>::open(dir.path(), options).unwrap();
    assert_eq!(reopened.current().canon(), replay.canon());
    reopened.close().unwrap();
}

#[test]
fn in_place_versions_equal_replay_plain_state() {
    stress::<Plain>(SyncPolicy::Never);
}

#[test]
fn in_place_versions_equal_replay_imbl_state() {
    stress::<Shared>(SyncPolicy::Never);
}

/// Under `Always` each appender holds its version through its group commit, and the
/// writer's pool keeps room for those versions: reused ones must be exact too, and
/// so must every durable version.
#[test]
fn in_place_versions_equal_replay_plain_state_with_durable_appenders() {
    stress::<Plain>(SyncPolicy::Always);
}

#[test]
fn in_place_versions_equal_replay_imbl_state_with_durable_appenders() {
    stress::<Shared>(SyncPolicy::Always);
}
