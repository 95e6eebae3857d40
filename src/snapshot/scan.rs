//! Scanning a live directory into stored objects: walk it (walkdir, sorted, never following
//! symlinks), reuse the stat cache for unchanged files, hash and compress the rest on all cores,
//! and build one tree object per directory bottom-up.

use super::statcache::{CacheEntry, StatCache};
use super::tree::{Entry, Meta, Node, Tree};
use crate::error::IoContext;
use crate::progress::Progress;
use crate::store::{build_content, Kind, ListEntry, ObjectId, ObjectSink, Record, CHUNK_SIZE};
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Bytes read from a file at a time; its chunks are hashed and compressed in parallel.
const READ_BLOCK: usize = 128 * CHUNK_SIZE;

/// The result of scanning a live directory.
pub struct Scan {
    /// Root tree id.
    pub tree: ObjectId,
    /// The stat cache to keep for the next scan.
    pub cache: StatCache,
    /// Entries that could not be stored (sockets, FIFOs, devices), one message each.
    pub skipped: Vec<String>,
    /// Files whose content had to be read (cache misses).
    pub files_read: u64,
    /// Bytes read from those files.
    pub bytes_read: u64,
}

struct Item {
    rel: PathBuf,
    depth: usize,
    md: Metadata,
}

/// What scanning one regular file produced.
struct FileScan {
    size: u64,
    content: Option<ObjectId>,
    cache: Option<CacheEntry>,
    was_read: bool,
}

/// Scan `root` into objects written to `sink`, trusting `old` for files whose stat is unchanged.
pub fn scan(
    sink: &dyn ObjectSink,
    root: &Path,
    old: &StatCache,
    progress: &dyn Progress,
) -> Result<Scan> {
    let root_md = std::fs::symlink_metadata(root).at("read", root)?;
    if !root_md.is_dir() {
        return Err(Error::Other(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let items = walk(root)?;
    progress.start("scanning", Some(items.len() as u64));
    let files: Vec<Option<FileScan>> = items
        .par_iter()
        .map(|it| {
            let r = if it.md.is_file() {
                scan_file(sink, root, it, old).map(Some)
            } else {
                Ok(None)
            };
            progress.advance(1);
            r
        })
        .collect::<Result<_>>()?;
    progress.finish();

    let mut cache = StatCache::default();
    let mut skipped = Vec::new();
    let (mut files_read, mut bytes_read) = (0, 0);
    let mut stack = vec![Frame::new(Vec::new(), &root_md)];
    for (it, file) in items.iter().zip(files) {
        while stack.len() > it.depth {
            close_dir(sink, &mut stack)?;
        }
        let name = it
            .rel
            .file_name()
            .expect("walk yields named entries")
            .as_bytes()
            .to_vec();
        let ft = it.md.file_type();
        let node = if let Some(f) = file {
            if let Some(c) = f.cache {
                cache
                    .entries
                    .insert(it.rel.as_os_str().as_bytes().to_vec(), c);
            }
            if f.was_read {
                files_read += 1;
                bytes_read += f.size;
            }
            Node::File {
                meta: Meta::from_metadata(&it.md),
                size: f.size,
                content: f.content,
            }
        } else if ft.is_dir() {
            stack.push(Frame::new(name, &it.md));
            continue;
        } else if ft.is_symlink() {
            let path = root.join(&it.rel);
            let target = std::fs::read_link(&path).at("read symlink", &path)?;
            Node::Symlink {
                meta: Meta::from_metadata(&it.md),
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else {
            skipped.push(format!(
                "skipped {} {}: sockets, FIFOs and devices cannot be stored",
                special_kind(&it.md),
                it.rel.display()
            ));
            continue;
        };
        stack
            .last_mut()
            .expect("root frame")
            .entries
            .push(Entry { name, node });
    }
    while stack.len() > 1 {
        close_dir(sink, &mut stack)?;
    }
    let root_frame = stack.pop().expect("root frame");
    let tree = Tree {
        meta: root_frame.meta,
        entries: root_frame.entries,
    }
    .put(sink)?;
    Ok(Scan {
        tree,
        cache,
        skipped,
        files_read,
        bytes_read,
    })
}

/// A directory being assembled while its children are visited.
struct Frame {
    name: Vec<u8>,
    meta: Meta,
    entries: Vec<Entry>,
}

impl Frame {
    fn new(name: Vec<u8>, md: &Metadata) -> Frame {
        Frame {
            name,
            meta: Meta::from_metadata(md),
            entries: Vec::new(),
        }
    }
}

/// Store the innermost open directory as a tree and add it to its parent.
fn close_dir(sink: &dyn ObjectSink, stack: &mut Vec<Frame>) -> Result<()> {
    let frame = stack.pop().expect("non-root frame");
    let tree = Tree {
        meta: frame.meta,
        entries: frame.entries,
    }
    .put(sink)?;
    stack.last_mut().expect("parent frame").entries.push(Entry {
        name: frame.name,
        node: Node::Dir { tree },
    });
    Ok(())
}

/// List everything under `root`, sorted by name, parents before children, with lstat data.
fn walk(root: &Path) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for entry in WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::Io {
                context: "scan",
                path,
                source: e.into(),
            }
        })?;
        let md = entry.metadata().map_err(|e| Error::Io {
            context: "stat",
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walk stays under root")
            .to_path_buf();
        items.push(Item {
            rel,
            depth: entry.depth(),
            md,
        });
    }
    Ok(items)
}

fn scan_file(sink: &dyn ObjectSink, root: &Path, it: &Item, old: &StatCache) -> Result<FileScan> {
    let key = it.rel.as_os_str().as_bytes();
    if let Some(c) = old.entries.get(key).filter(|c| c.matches(&it.md)) {
        return Ok(FileScan {
            size: c.size,
            content: c.content,
            cache: Some(*c),
            was_read: false,
        });
    }
    let path = root.join(&it.rel);
    let known = old
        .entries
        .get(key)
        .and_then(|c| c.content.map(|id| sink.known_chunks(&id, c.size)))
        .unwrap_or_default();
    let read_start_ns = now_ns();
    let (content, size, after) = store_file(sink, &path, &known)?;
    let seen = CacheEntry::new(&after, content);
    let unchanged_while_read = CacheEntry::new(&it.md, content) == seen && seen.size == size;
    let cache = (unchanged_while_read && !seen.is_racy(read_start_ns)).then_some(seen);
    Ok(FileScan {
        size,
        content,
        cache,
        was_read: true,
    })
}

/// Chunk, hash and store one file; returns its content id, the bytes read and its stat after.
/// Chunks in `known` are already stored and skip the index lookup.
pub fn store_file(
    sink: &dyn ObjectSink,
    path: &Path,
    known: &HashSet<ObjectId>,
) -> Result<(Option<ObjectId>, u64, Metadata)> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at("open", path)?;
    let mut chunks: Vec<ListEntry> = Vec::new();
    // A whole number of chunks (so chunk boundaries stay aligned to the file start), no
    // bigger than the file needs: small files must not pay for a 1 MiB buffer.
    let expected = f.metadata().at("stat", path)?.len() as usize + 1;
    let mut buf = vec![0u8; expected.next_multiple_of(CHUNK_SIZE).min(READ_BLOCK)];
    let mut size = 0u64;
    loop {
        let n = read_full(&mut f, &mut buf).at("read", path)?;
        if n == 0 {
            break;
        }
        let block: Vec<(ListEntry, Option<Record>)> = buf[..n]
            .par_chunks(CHUNK_SIZE)
            .map(|c| {
                let id = ObjectId::hash(c);
                let rec = if known.contains(&id) {
                    None
                } else {
                    sink.prepare(id, Kind::Chunk, c)?
                };
                let entry = ListEntry {
                    id,
                    len: c.len() as u64,
                };
                Ok((entry, rec))
            })
            .collect::<Result<_>>()?;
        let (block, records): (Vec<ListEntry>, Vec<Option<Record>>) = block.into_iter().unzip();
        sink.submit(records.into_iter().flatten().collect())?;
        chunks.extend(block);
        size += n as u64;
        if n < buf.len() {
            break;
        }
    }
    let after = f.metadata().at("stat", path)?;
    Ok((build_content(sink, chunks)?, size, after))
}

/// Read until `buf` is full or the file ends.
fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn special_kind(md: &Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Nanoseconds since the epoch, from the real-time clock.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
