//! Check-then-append without a lock of the user's own: eight threads withdraw from one
//! wallet through `append_with`, and exactly the allowed withdrawals are accepted
//! (the race a `current()` check followed by `append` loses, issue 11).

use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Wallet {
    balance: u64,
    withdrawals: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Op {
    Deposit(u64),
    Withdraw(u64),
}

impl State for Wallet {
    type Event = Op;
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Deposit(n) => self.balance += n,
            Op::Withdraw(n) => {
                // An overdraft would wrap here and be caught below.
                self.balance = self.balance.wrapping_sub(*n);
                self.withdrawals += 1;
            }
        }
    }
}

#[derive(Debug, PartialEq)]
struct Insufficient;

fn wallet_never_overdraws(sync: SyncPolicy) {
    const THREADS: usize = 8;
    const ALLOWED: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().sync(sync).preallocate(false);
    let store = Store::<Wallet>::open(dir.path(), options.clone()).unwrap();
    store.append(&Op::Deposit(ALLOWED * 10)).unwrap();
    let accepted = AtomicU64::new(0);
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                // Every thread tries far more than its share.
                for _ in 0..ALLOWED {
                    let got = store
                        .append_with(|w: &Wallet| {
                            if w.balance >= 10 {
                                Ok(Some(Op::Withdraw(10)))
                            } else {
                                Err(Insufficient)
                            }
                        })
                        .unwrap();
                    if let Ok(v) = got {
                        // The version returned is the one this withdrawal produced.
                        assert!(v.balance <= ALLOWED * 10, "overdrawn: {v:?}");
                        assert_eq!(v.balance, (ALLOWED - v.withdrawals) * 10);
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(accepted.load(Ordering::Relaxed), ALLOWED);
    let v = store.current();
    assert_eq!(
        (v.balance, v.withdrawals, v.seq()),
        (0, ALLOWED, ALLOWED + 1)
    );
    store.close().unwrap();
    // The log holds exactly the accepted withdrawals.
    let reopened = Store::<Wallet>::open(dir.path(), options).unwrap();
    let v = reopened.current();
    assert_eq!(
        (v.balance, v.withdrawals, v.seq()),
        (0, ALLOWED, ALLOWED + 1)
    );
    reopened.close().unwrap();
}

#[test]
fn eight_thread_wallet_never_overdraws() {
    wallet_never_overdraws(SyncPolicy::Never);
}

#[test]
fn eight_thread_wallet_never_overdraws_durable() {
    wallet_never_overdraws(SyncPolicy::Always);
}

#[test]
fn append_with_none_appends_nothing_and_returns_the_version_decided_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::<Wallet>::open(dir.path(), Options::default()).unwrap();
    store.append(&Op::Deposit(5)).unwrap();
    let v = store
        .append_with(|w: &Wallet| {
            assert_eq!(w.balance, 5);
            Ok::<_, Insufficient>(None)
        })
        .unwrap()
        .unwrap();
    assert_eq!((v.seq(), v.balance), (1, 5));
    assert_eq!(store.seq(), 1);
    assert_eq!(
        store.append_with(|_| Err(Insufficient)).unwrap().err(),
        Some(Insufficient)
    );
    assert_eq!(store.seq(), 1);
    store.close().unwrap();
}
