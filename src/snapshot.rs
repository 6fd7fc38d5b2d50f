//! Atomic snapshot files: write, install, load, list, prune.
//!
//! A snapshot is streamed into a temp file with a unique name
//! (`.<seq>.<pid>.<n>.tmp`), synced with `fdatasync`, and installed under its final
//! name `<seq>.snap` with a rename that never replaces
//! ([`Fs::rename_noreplace`]); then the directory is
//! synced. So a snapshot is visible under its final name only when it is complete and
//! durable, and two writers can never clobber each other: if the final name exists and
//! the file there validates, that snapshot (the state after the same seq) is already
//! there, and the temp file is removed. A file under the final name that does not
//! validate never stands in for the new snapshot: it is moved aside (to a unique
//! `<name>.corrupt` or `<name>.<n>.corrupt`) and the new one installed. The byte format
//! is in [`crate::format`].
//!
//! These functions are usable on their own, for any `serde` value.
//!
//! # Invariants kept here
//!
//! - **I4 Atomic files**: temp file, `fdatasync`, no-replace rename, directory sync,
//!   in [`write_cancellable`]; the temp file is removed on every path that does not
//!   install it, a panicking serializer included.
//! - **I6 Bad input**: [`decode`] checks magic, version, header and body checksums,
//!   length, name and store id, and never panics or allocates past the file's size.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{self, HeaderError, SnapshotHeader, SNAPSHOT_HEADER_LEN};
use crate::fs::{Fs, FsFile};
use crate::Seq;

/// The result of [`write()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The snapshot's final path.
    pub path: PathBuf,
    /// Bytes in the file (header and body).
    pub bytes: u64,
    /// `false` when a valid snapshot with this seq already existed and was kept.
    pub installed: bool,
}

/// Streams bytes into a file at increasing offsets through a buffer, computing the
/// CRC32C of everything written.
///
/// The serializer turns a failed `io::Write` into its own opaque error, so the writer
/// keeps the first I/O error itself; a cancellation is read from the flag.
struct CrcWriter<'a> {
    file: &'a dyn FsFile,
    cancel: &'a AtomicBool,
    offset: u64,
    buf: Vec<u8>,
    crc: u32,
    len: u64,
    error: Option<io::Error>,
}

const WRITE_BUF: usize = 1 << 20;

impl CrcWriter<'_> {
    /// Checksums and writes `data` at the current offset.
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            // Not `Interrupted`: `write_all` retries that kind forever.
            return Err(io::Error::other("snapshot write cancelled"));
        }
        self.crc = crc32c::crc32c_append(self.crc, data);
        if let Err(e) = self.file.write_all_at(data, self.offset) {
            let kind = e.kind();
            self.error.get_or_insert(e);
            return Err(kind.into());
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.put(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// The error to report for a failed write: cancellation, else the first OS error.
    fn failure(&mut self, temp: &Path) -> Option<Error> {
        if self.cancel.load(Ordering::Relaxed) {
            return Some(Error::Cancelled);
        }
        self.error
            .take()
            .map(|e| Error::io("write snapshot", temp, e))
    }
}

/// The serializer emits many tiny slices: they are buffered, and the checksum is
/// computed once per buffer rather than once per slice.
impl Write for CrcWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.len += data.len() as u64;
        if self.buf.len() + data.len() > WRITE_BUF {
            self.flush_buf()?;
        }
        if data.len() >= WRITE_BUF {
            self.put(data)?;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(seq: Seq) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{seq:020}.{}.{n}.tmp", std::process::id())
}

/// Is `name` a snapshot temp file (left behind by a crash if found at open)?
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `value` as the snapshot of the state after `seq` into `dir`, atomically.
///
/// Steps: unique temp file → header and postcard body → `fdatasync` → no-replace
/// rename to `<seq>.snap` → `fsync(dir)`. If a valid `<seq>.snap` of this store already
/// exists the temp file is removed and the existing snapshot kept
/// ([`Written::installed`] is `false`); a damaged one is moved aside and replaced (see
/// [`write_cancellable`]). On any error the temp file is removed (best effort).
pub fn write<T: Serialize + ?Sized>(
    fs: &dyn Fs,
    dir: &Path,
    seq: Seq,
    store_id: u64,
    value: &T,
) -> Result<Written> {
    write_cancellable(fs, dir, seq, store_id, value, &AtomicBool::new(false))
}

/// Like [`write()`], but gives up with [`Error::Cancelled`] (removing the temp file) as
/// soon as `cancel` is set: it is checked before each buffered write of the body and
/// before the sync and the install.
///
/// When `<seq>.snap` already exists, it stands in for the new snapshot only if it
/// validates ([`verify`] with this `store_id`). Otherwise it is moved aside (to a
/// unique `<name>.corrupt` or `<name>.<n>.corrupt`), the directory is synced, and the
/// new snapshot is installed in its place. The temp file is removed on every path
/// that does not install it, including a panic while serializing `value` (the panic
/// then propagates).
pub fn write_cancellable<T: Serialize + ?Sized>(
    fs: &dyn Fs,
    dir: &Path,
    seq: Seq,
    store_id: u64,
    value: &T,
    cancel: &AtomicBool,
) -> Result<Written> {
    let mut temp = TempGuard {
        fs,
        path: dir.join(temp_name(seq)),
        armed: true,
    };
    let path = dir.join(format::snapshot_name(seq));
    let bytes = write_temp(fs, &temp.path, seq, store_id, value, cancel)?;
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let installed = install(fs, dir, &temp.path, &path, store_id)?;
    // Installed: the temp name is gone. Kept: the guard removes the temp file.
    temp.armed = !installed;
    drop(temp);
    fs.sync_dir(dir)
        .map_err(|e| Error::io("fsync dir", dir, e))?;
    Ok(Written {
        path,
        bytes,
        installed,
    })
}

/// How many times [`install`] moves a damaged file away from the final name before it
/// gives up (each time, something put a new damaged file there in between).
const INSTALL_ATTEMPTS: usize = 4;

/// Renames `temp` to `path` without replacing. Returns `true` if it was installed,
/// `false` if a valid snapshot already held the name (and stands in for it).
fn install(fs: &dyn Fs, dir: &Path, temp: &Path, path: &Path, store_id: u64) -> Result<bool> {
    for _ in 0..INSTALL_ATTEMPTS {
        match fs.rename_noreplace(temp, path) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && mutant!(ReplaceOnInstall) => {
                let _ = fs.remove_file(path);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("rename snapshot", path, e)),
        }
        let damage = match verify(fs, path, Some(store_id)) {
            Ok(_) => {
                // Cleanup will rely on it: make sure its bytes are durable, whoever
                // wrote them (the caller syncs the directory entry).
                fs.open_write(path)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| Error::io("fdatasync snapshot", path, e))?;
                tracing::debug!(snapshot = %path.display(), "a valid snapshot exists already; keeping it");
                return Ok(false);
            }
            // Gone between the rename and the read: try the rename again.
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => continue,
            // Could not read it: it cannot vouch for anything, and it is not ours to
            // move while we cannot tell what it is.
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => e,
        };
        let aside =
            crate::fs::move_aside(fs, path).map_err(|e| Error::io("rename aside", path, e))?;
        tracing::warn!(snapshot = %path.display(), moved_to = %aside.display(), error = %damage,
            "an existing snapshot under the same name does not validate; moved it aside and installing a new one");
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync dir", dir, e))?;
    }
    Err(Error::io(
        "rename snapshot",
        path,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the name kept being taken by files that do not validate",
        ),
    ))
}

/// Removes the temp file when dropped, on every path out of [`write_cancellable`]
/// (an error, a cancellation, a kept existing snapshot, a panic), unless disarmed
/// after the temp file was installed under its final name.
struct TempGuard<'a> {
    fs: &'a dyn Fs,
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if std::thread::panicking() {
            // A second panic here (from the file system) would abort the process.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                remove_temp(self.fs, &self.path)
            }));
        } else {
            remove_temp(self.fs, &self.path);
        }
    }
}

fn remove_temp(fs: &dyn Fs, temp: &Path) {
    if let Err(e) = fs.remove_file(temp) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(file = %temp.display(), error = %e, "could not remove snapshot temp file");
        }
    }
}

fn write_temp<T: Serialize + ?Sized>(
    fs: &dyn Fs,
    temp: &Path,
    seq: Seq,
    store_id: u64,
    value: &T,
    cancel: &AtomicBool,
) -> Result<u64> {
    let file = fs
        .create_new(temp)
        .map_err(|e| Error::io("create snapshot", temp, e))?;
    let mut w = CrcWriter {
        file: file.as_ref(),
        cancel,
        offset: SNAPSHOT_HEADER_LEN as u64,
        buf: Vec::with_capacity(WRITE_BUF),
        crc: 0,
        len: 0,
        error: None,
    };
    if let Err(e) = postcard::to_io(value, &mut w) {
        return Err(w.failure(temp).unwrap_or(Error::Encode(e)));
    }
    if let Err(e) = w.flush() {
        return Err(w
            .failure(temp)
            .unwrap_or_else(|| Error::io("write snapshot", temp, e)));
    }
    let header = SnapshotHeader {
        seq,
        store_id,
        body_len: w.len,
        body_crc: w.crc,
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write snapshot", temp, e))?;
    file.sync_data()
        .map_err(|e| Error::io("fdatasync snapshot", temp, e))?;
    Ok(SNAPSHOT_HEADER_LEN as u64 + w.len)
}

/// Loads and validates the snapshot at `path`.
///
/// Checks, in order: magic, version (an unknown one is
/// [`Error::UnsupportedVersion`]), header checksum, that the seq matches the file
/// name, the store id (when `store_id` is given), the body length and checksum, and
/// that the body decodes as `T` with no byte left over.
pub fn load<T: DeserializeOwned>(
    fs: &dyn Fs,
    path: &Path,
    store_id: Option<u64>,
) -> Result<(SnapshotHeader, T)> {
    let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
    decode(&bytes, path, store_id)
}

/// Every check of [`decode`] but the body's decoding; returns the header and the body.
fn check<'b>(
    bytes: &'b [u8],
    path: &Path,
    store_id: Option<u64>,
) -> Result<(SnapshotHeader, &'b [u8])> {
    let header = SnapshotHeader::decode(bytes).map_err(|e| match e {
        HeaderError::BadMagic => Error::BadMagic { path: path.into() },
        HeaderError::Version(found) => Error::UnsupportedVersion {
            path: path.into(),
            found,
            supported: format::VERSION,
        },
        HeaderError::Short | HeaderError::Zeroed => {
            Error::corrupt(path, 0, "snapshot header is missing or zeroed")
        }
        HeaderError::Checksum { stored, computed } => Error::corrupt(
            path,
            0,
            format!("header checksum mismatch (stored {stored:08x}, computed {computed:08x})"),
        ),
    })?;
    if let Some(name_seq) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| format::parse_name(n, "snap"))
    {
        if name_seq != header.seq {
            return Err(Error::corrupt(
                path,
                12,
                format!(
                    "header says seq {} but the name says {name_seq}",
                    header.seq
                ),
            ));
        }
    }
    if header.seq == Seq::MAX {
        // No writer reaches it, and recovery could not continue after it.
        return Err(Error::corrupt(path, 12, "snapshot seq is u64::MAX"));
    }
    if let Some(expected) = store_id {
        if expected != header.store_id {
            return Err(Error::ForeignFile {
                path: path.into(),
                expected,
                found: header.store_id,
            });
        }
    }
    let body_start = SNAPSHOT_HEADER_LEN as u64;
    let body = usize::try_from(header.body_len)
        .ok()
        .and_then(|len| bytes.get(SNAPSHOT_HEADER_LEN..)?.get(..len))
        .ok_or_else(|| {
            Error::corrupt(
                path,
                body_start,
                format!(
                    "body of {} bytes runs past the end of the file ({} bytes)",
                    header.body_len,
                    bytes.len()
                ),
            )
        })?;
    if bytes.len() as u64 != body_start + header.body_len {
        return Err(Error::corrupt(
            path,
            body_start + header.body_len,
            "trailing bytes after the body",
        ));
    }
    let computed = crc32c::crc32c(body);
    if computed != header.body_crc {
        return Err(Error::corrupt(
            path,
            body_start,
            format!(
                "body checksum mismatch (stored {:08x}, computed {computed:08x})",
                header.body_crc
            ),
        ));
    }
    Ok((header, body))
}

/// Checks the snapshot at `path` without decoding its body: everything [`load`]
/// checks (magic, version, header checksum, seq against the file name and not
/// `u64::MAX`, store id when given, body length and checksum) except that the body
/// decodes as a particular type. Returns the header.
pub fn verify(fs: &dyn Fs, path: &Path, store_id: Option<u64>) -> Result<SnapshotHeader> {
    let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
    check(&bytes, path, store_id).map(|(header, _)| header)
}

/// Validates and decodes snapshot bytes (the body of [`load`]); never panics.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    store_id: Option<u64>,
) -> Result<(SnapshotHeader, T)> {
    let (header, body) = check(bytes, path, store_id)?;
    let body_start = SNAPSHOT_HEADER_LEN as u64;
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(|source| Error::Decode {
        path: path.into(),
        offset: body_start,
        source,
    })?;
    if !rest.is_empty() {
        return Err(Error::corrupt(
            path,
            body_start + (body.len() - rest.len()) as u64,
            "body has bytes left over after decoding",
        ));
    }
    Ok((header, value))
}

/// Lists the snapshots in `dir`, sorted by seq (oldest first).
pub fn list(fs: &dyn Fs, dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let names = fs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    Ok(format::numbered(&names, dir, "snap"))
}

/// Removes the temp files a crashed writer left in `dir`; returns how many.
pub fn remove_temps(fs: &dyn Fs, dir: &Path) -> Result<usize> {
    let names = fs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut removed = 0;
    for name in names.iter().filter(|n| is_temp_name(n)) {
        let path = dir.join(name);
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove temp", &path, e))?;
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed snapshot temp files left by a crash");
    }
    Ok(removed)
}
