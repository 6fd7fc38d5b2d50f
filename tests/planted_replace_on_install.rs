//! The planted bug `Mutation::ReplaceOnInstall` really plants its bug: with it on, a
//! snapshot write onto a valid existing snapshot of the same seq replaces it instead
//! of keeping it (the no-replace install broken), and with it off the existing one is
//! kept. The concurrent checker's workloads never put a file under a snapshot's final
//! name, so this is where the switch is shown to work. In a binary of its own: the
//! switch is process-wide.
#![cfg(feature = "testing")]

use std::path::Path;

use snapwal::fs::Fs;
use snapwal::snapshot;
use snapwal::testing::mutation::{self, Mutation};
use snapwal::testing::sim::SimFs;

#[test]
fn replace_on_install_replaces_an_existing_snapshot() {
    let fs = SimFs::new(2);
    let dir = Path::new("/snap");
    fs.create_dir_all(dir).unwrap();
    let first = snapshot::write(&fs, dir, 7, 9, &1u32).unwrap();
    assert!(first.installed);

    let kept = snapshot::write(&fs, dir, 7, 9, &2u32).unwrap();
    assert!(!kept.installed);
    let (_, v): (_, u32) = snapshot::load(&fs, &first.path, Some(9)).unwrap();
    assert_eq!(
        v, 1,
        "without the planted bug the existing snapshot is kept"
    );

    mutation::set(Some(Mutation::ReplaceOnInstall));
    let replaced = snapshot::write(&fs, dir, 7, 9, &3u32);
    mutation::set(None);
    let replaced = replaced.unwrap();
    assert!(
        replaced.installed,
        "the planted bug installs over the existing file"
    );
    let (_, v): (_, u32) = snapshot::load(&fs, &first.path, Some(9)).unwrap();
    assert_eq!(v, 3);
    assert_eq!(fs.list(dir).unwrap().len(), 1);
}
