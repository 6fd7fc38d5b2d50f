//! Damage to durable data: bit rot, misdirected writes and latent read errors, the
//! storage faults a power loss does not explain.
//!
//! Each method changes one file of a [`SimFs`] as the medium would, outside any call
//! (it is not counted, and no crash point or fault applies to it): the durable bytes
//! change, and what reads see is the damaged bytes with the file's pending writes
//! applied on top (as after the page cache was evicted). The damage follows the file
//! (its inode) through renames and into crash images.

use std::io;
use std::path::{Path, PathBuf};

use super::model::{apply_op, norm, FileData, Node, SECTOR};
use super::SimFs;
use crate::util::lock_raw as lock;

/// One damage to one file, for [`SimFs::damage`]. Offsets are byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Damage {
    /// Bit rot: the byte at `offset` is XORed with `mask` (a zero mask flips every
    /// bit). See [`SimFs::flip_byte`].
    Flip {
        /// The byte.
        offset: u64,
        /// The bits to flip.
        mask: u8,
    },
    /// A misdirected write: the sector meant for `intended` landed at `landed`. See
    /// [`SimFs::misdirect_write`].
    Misdirect {
        /// Where the sector's bytes belong.
        intended: u64,
        /// Where they were written instead.
        landed: u64,
    },
    /// A misdirected write between files: the sector meant for `intended` in this
    /// file landed at `landed` in the file `other`. See
    /// [`SimFs::misdirect_write_into`].
    MisdirectInto {
        /// Where the sector's bytes belong, in the damaged file.
        intended: u64,
        /// The file they were written to instead.
        other: PathBuf,
        /// Where, in `other`.
        landed: u64,
    },
    /// A latent read error in the sector holding `offset`. See
    /// [`SimFs::latent_read_error`].
    Unreadable {
        /// A byte of the bad sector.
        offset: u64,
    },
}

impl Damage {
    /// The first and the last byte of the damaged file (not of `other`) that the
    /// damage can change or make unreadable.
    pub fn span(&self) -> (u64, u64) {
        let sector = |o: u64| (o - o % SECTOR, o - o % SECTOR + (SECTOR - 1));
        match *self {
            Damage::Flip { offset, .. } => (offset, offset),
            Damage::Misdirect { intended, landed } => {
                let (a, b) = (sector(intended), sector(landed));
                (a.0.min(b.0), a.1.max(b.1))
            }
            Damage::MisdirectInto { intended, .. } => sector(intended),
            Damage::Unreadable { offset } => sector(offset),
        }
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

impl FileData {
    /// Changes the durable bytes with `change`, then rebuilds what reads see.
    fn damage_durable(&mut self, change: impl FnOnce(&mut Vec<u8>)) {
        change(&mut self.durable);
        // Reads see the damaged disk with the pending writes on top.
        let mut visible = self.durable.clone();
        for op in &self.pending {
            // Each op succeeded once on the same sizes; it cannot fail now.
            let _ = apply_op(&mut visible, op);
        }
        self.visible = visible;
    }
}

impl SimFs {
    /// Applies `damage` to the file at `path` (see [`Damage`]).
    pub fn damage(&self, path: impl AsRef<Path>, damage: &Damage) -> io::Result<()> {
        match *damage {
            Damage::Flip { offset, mask } => self.flip_byte(path, offset, mask),
            Damage::Misdirect { intended, landed } => self.misdirect_write(path, intended, landed),
            Damage::MisdirectInto {
                intended,
                ref other,
                landed,
            } => self.misdirect_write_into(path, intended, other, landed),
            Damage::Unreadable { offset } => self.latent_read_error(path, offset),
        }
    }

    /// Bit rot: XORs the durable byte at `offset` of the file at `path` with `mask`
    /// (`0` flips all eight bits). Fails with `InvalidInput` if `offset` is not inside
    /// the file, `NotFound` if there is no such file.
    ///
    /// ```
    /// use snapwal::testing::sim::SimFs;
    /// let fs = SimFs::with_files(1, [("/f".into(), vec![0u8; 4])])?;
    /// fs.flip_byte("/f", 2, 0x10)?;
    /// assert_eq!(fs.contents("/f"), Some(vec![0, 0, 0x10, 0]));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flip_byte(&self, path: impl AsRef<Path>, offset: u64, mask: u8) -> io::Result<()> {
        let mask = if mask == 0 { 0xff } else { mask };
        self.with_file(path.as_ref(), |f| {
            let len = f.durable.len() as u64;
            let i = usize::try_from(offset)
                .ok()
                .filter(|_| offset < len)
                .ok_or_else(|| invalid(format!("byte {offset} is past the end ({len} bytes)")))?;
            f.damage_durable(|d| {
                if let Some(b) = d.get_mut(i) {
                    *b ^= mask;
                }
            });
            Ok(())
        })
    }

    /// A misdirected write: the sector of the file at `path` holding `intended` was
    /// written at the sector holding `landed` instead (both rounded down to a
    /// [`SECTOR`] boundary). The `landed` sector now holds the bytes of the `intended`
    /// one (its own old bytes are gone), and the `intended` sector holds what it held
    /// before the write: zeros, as everywhere snapwal writes (a new or preallocated
    /// file, written once). The file keeps its size: bytes past its end are neither
    /// copied nor written. Fails with `InvalidInput` if either offset is not inside
    /// the file or they fall in the same sector.
    ///
    /// ```
    /// use snapwal::testing::sim::{SimFs, SECTOR};
    /// let bytes: Vec<u8> = (0..2 * SECTOR).map(|i| (i / SECTOR) as u8 + 1).collect();
    /// let fs = SimFs::with_files(1, [("/f".into(), bytes)])?;
    /// fs.misdirect_write("/f", 0, SECTOR)?;
    /// let now = fs.contents("/f").unwrap();
    /// assert!(now[..SECTOR as usize].iter().all(|&b| b == 0));
    /// assert!(now[SECTOR as usize..].iter().all(|&b| b == 1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn misdirect_write(
        &self,
        path: impl AsRef<Path>,
        intended: u64,
        landed: u64,
    ) -> io::Result<()> {
        let path = path.as_ref();
        self.misdirect_write_into(path, intended, path, landed)
    }

    /// A misdirected write between two files: the sector of the file at `path`
    /// holding `intended` was written into the file at `other`, at the sector holding
    /// `landed`. As [`SimFs::misdirect_write`] otherwise: `other`'s sector gets the
    /// bytes (as many as both files hold), `path`'s sector is zeroed, neither size
    /// changes. Fails with `InvalidInput` if an offset is not inside its file, or
    /// both name the same sector of the same file.
    pub fn misdirect_write_into(
        &self,
        path: impl AsRef<Path>,
        intended: u64,
        other: impl AsRef<Path>,
        landed: u64,
    ) -> io::Result<()> {
        let (from, to) = (intended - intended % SECTOR, landed - landed % SECTOR);
        if from == to && norm(path.as_ref())? == norm(other.as_ref())? {
            return Err(invalid(format!(
                "offsets {intended} and {landed} are in the same sector"
            )));
        }
        let mut sector = Vec::new();
        self.with_file(path.as_ref(), |f| {
            let len = f.durable.len() as u64;
            if intended >= len {
                return Err(invalid(format!(
                    "byte {intended} is past the end ({len} bytes)"
                )));
            }
            let end = (from + SECTOR).min(len);
            sector = f
                .durable
                .get(from as usize..end as usize)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            Ok(())
        })?;
        self.with_file(other.as_ref(), |f| {
            let len = f.durable.len() as u64;
            if landed >= len {
                return Err(invalid(format!(
                    "byte {landed} is past the end ({len} bytes)"
                )));
            }
            let n = (sector.len() as u64).min(len - to) as usize;
            f.damage_durable(|d| {
                if let (Some(dst), Some(src)) =
                    (d.get_mut(to as usize..to as usize + n), sector.get(..n))
                {
                    dst.copy_from_slice(src);
                }
            });
            Ok(())
        })?;
        // The intended sector keeps its old bytes: zeros.
        self.with_file(path.as_ref(), |f| {
            f.damage_durable(|d| {
                let end = (from + SECTOR).min(d.len() as u64) as usize;
                if let Some(old) = d.get_mut(from as usize..end) {
                    old.fill(0);
                }
            });
            Ok(())
        })
    }

    /// A latent read error: the sector of the file at `path` holding `offset` can no
    /// longer be read. Every [`Fs::read`](crate::fs::Fs::read) of the file (reads are
    /// of whole files) fails with `EIO` while that sector is inside the file, until the
    /// sector is written again (a drive remaps a sector on write). Renames, removals
    /// and crash images keep the bad sector with the file. Fails with `InvalidInput`
    /// if `offset` is not inside the file.
    ///
    /// ```
    /// use snapwal::fs::Fs;
    /// use snapwal::testing::sim::SimFs;
    /// let fs = SimFs::with_files(1, [("/f".into(), vec![7u8; 100])])?;
    /// fs.latent_read_error("/f", 50)?;
    /// let err = fs.read("/f".as_ref()).unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(5)); // EIO
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn latent_read_error(&self, path: impl AsRef<Path>, offset: u64) -> io::Result<()> {
        self.with_file(path.as_ref(), |f| {
            let len = f.durable.len().max(f.visible.len()) as u64;
            if offset >= len {
                return Err(invalid(format!(
                    "byte {offset} is past the end ({len} bytes)"
                )));
            }
            f.unreadable.insert(offset / SECTOR);
            Ok(())
        })
    }

    fn with_file(
        &self,
        path: &Path,
        body: impl FnOnce(&mut FileData) -> io::Result<()>,
    ) -> io::Result<()> {
        let p = norm(path)?;
        let mut g = lock(&self.inner);
        let ino = match g.node(&p) {
            Some((ino, Node::File(_))) => ino,
            Some((_, Node::Dir)) => return Err(invalid(format!("{} is a directory", p.display()))),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: no such file", p.display()),
                ))
            }
        };
        match g.nodes.get_mut(&ino) {
            Some(Node::File(f)) => body(f),
            _ => Err(io::Error::other("simulated file lost its inode")),
        }
    }
}
