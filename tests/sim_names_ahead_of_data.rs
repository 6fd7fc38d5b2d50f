//! The simulated file system's view of writes ordered ahead of a sync: a name added
//! while another file in its directory held unsynced data is noted
//! (`SimFs::names_ahead_of_data`), and the "names kept" crash image keeps every name
//! while losing every unsynced byte, the image such an ordering breaks.
#![cfg(feature = "testing")]

use std::path::Path;

use snapwal::fs::Fs;
use snapwal::testing::sim::{Choices, SimFs};

/// `/d/a` holding `durable` (synced, name durable), then `tail` written unsynced.
fn file_with_unsynced_tail(
    fs: &SimFs,
    durable: &[u8],
    tail: &[u8],
) -> Box<dyn snapwal::fs::FsFile> {
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let f = fs.create_new(Path::new("/d/a")).unwrap();
    f.write_all_at(durable, 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    f.write_all_at(tail, durable.len() as u64).unwrap();
    f
}

#[test]
fn a_name_added_while_a_sibling_holds_unsynced_data_is_noted_and_the_names_kept_image_breaks_it() {
    let fs = SimFs::new(1);
    let _a = file_with_unsynced_tail(&fs, b"first", b"+tail");
    assert!(fs.names_ahead_of_data().is_empty());
    let create_b = fs.calls();
    let b = fs.create_new(Path::new("/d/b")).unwrap();
    b.write_all_at(b"second", 0).unwrap();
    assert_eq!(fs.names_ahead_of_data(), vec![create_b]);

    // Names kept, data dropped: `b` exists (empty), `a` lost its unsynced tail.
    let (image, bits) = fs.crash_image(&Choices::NamesKept);
    assert!(image.exists("/d/b"));
    assert_eq!(image.contents("/d/a").unwrap(), b"first");
    assert_eq!(image.contents("/d/b").unwrap(), b"");
    // The bits it answered rebuild the same image.
    let (again, _) = fs.crash_image(&Choices::Bits(bits));
    assert_eq!(again.contents("/d/a"), image.contents("/d/a"));
    assert_eq!(again.contents("/d/b"), image.contents("/d/b"));
    // Everything kept and everything dropped differ from it.
    assert_eq!(fs.crash_all_kept().contents("/d/a").unwrap(), b"first+tail");
    assert!(!fs.crash_all_dropped().exists("/d/b"));
}

#[test]
fn names_added_after_the_sibling_synced_or_in_another_directory_are_not_noted() {
    let fs = SimFs::new(2);
    let a = file_with_unsynced_tail(&fs, b"first", b"+tail");
    // Another directory: its own ordering.
    fs.create_dir_all(Path::new("/e")).unwrap();
    fs.create_new(Path::new("/e/c")).unwrap();
    // The same directory after the sibling's sync.
    a.sync_data().unwrap();
    fs.create_new(Path::new("/d/b")).unwrap();
    let t = fs.create_new(Path::new("/d/.t")).unwrap();
    t.write_all_at(b"temp", 0).unwrap();
    t.sync_data().unwrap();
    fs.rename_noreplace(Path::new("/d/.t"), Path::new("/d/t"))
        .unwrap();
    assert!(fs.names_ahead_of_data().is_empty());

    // A rename whose new name lands beside unsynced data is noted.
    a.write_all_at(b"more", 10).unwrap();
    let u = fs.create_new(Path::new("/e/.u")).unwrap();
    u.sync_data().unwrap();
    let rename = fs.calls();
    fs.rename_noreplace(Path::new("/e/.u"), Path::new("/d/u"))
        .unwrap();
    assert_eq!(fs.names_ahead_of_data(), vec![rename]);
}
