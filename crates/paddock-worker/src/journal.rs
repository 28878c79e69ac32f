//! An exec's records (`started`, output, `exit`), kept so that a client can read them
//! from any position while the exec runs and for a while after it ended: what makes an
//! exec outlive the connection that started it (docs/worker-protocol.md §4.2).
//!
//! Records are kept in memory up to a budget; past it, all of them move to a spill file
//! in the worker's spill directory (inside the runner), and later ones are appended to
//! it. Past a hard limit, output records are dropped and counted (the `exit` record
//! says how many bytes).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;

/// Where the records of one exec are.
enum Store {
    Memory(Vec<Bytes>),
    /// `(offset, length)` of each record in the file.
    Spilled {
        file: File,
        path: PathBuf,
        index: Vec<(u64, u32)>,
        end: u64,
    },
}

struct Inner {
    store: Store,
    bytes: usize,
    dropped_bytes: u64,
    done: bool,
    ended_at: Option<Instant>,
}

pub(crate) struct Journal {
    pub id: String,
    inner: Mutex<Inner>,
    /// Bumped at every record and at the end.
    tick: watch::Sender<u64>,
    memory_limit: usize,
    max_bytes: u64,
    spill_dir: Option<PathBuf>,
}

impl Journal {
    pub fn new(id: &str, memory_limit: usize, max_bytes: u64, spill_dir: Option<PathBuf>) -> Self {
        Journal {
            id: id.to_string(),
            inner: Mutex::new(Inner {
                store: Store::Memory(Vec::new()),
                bytes: 0,
                dropped_bytes: 0,
                done: false,
                ended_at: None,
            }),
            tick: watch::channel(0).0,
            memory_limit,
            max_bytes,
            spill_dir,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// Appends a record. `output`: an output record, which may be dropped past the
    /// hard limit (`started` and `exit` never are).
    pub fn push(&self, record: Bytes, output: bool) {
        {
            let mut g = self.lock();
            if output && g.bytes as u64 + record.len() as u64 > self.max_bytes {
                g.dropped_bytes += record.len() as u64;
                return;
            }
            g.bytes += record.len();
            let spill = matches!(g.store, Store::Memory(_)) && g.bytes > self.memory_limit;
            if spill {
                if let Some(dir) = &self.spill_dir {
                    if let Err(e) = spill_to_file(&mut g.store, dir, &self.id) {
                        tracing::warn!(id = %self.id, error = %e, "cannot spill exec records to a file; keeping them in memory");
                    }
                }
            }
            match &mut g.store {
                Store::Memory(v) => v.push(record),
                Store::Spilled {
                    file, index, end, ..
                } => match file.write_all_at(&record, *end) {
                    Ok(()) => {
                        index.push((*end, record.len() as u32));
                        *end += record.len() as u64;
                    }
                    Err(e) => {
                        tracing::warn!(id = %self.id, error = %e, "cannot write a spilled exec record");
                    }
                },
            }
        }
        self.tick.send_modify(|n| *n += 1);
    }

    /// The exec ended (its `exit` record is in).
    pub fn finish(&self) {
        {
            let mut g = self.lock();
            g.done = true;
            g.ended_at = Some(Instant::now());
        }
        self.tick.send_modify(|n| *n += 1);
    }

    pub fn dropped_bytes(&self) -> u64 {
        self.lock().dropped_bytes
    }

    pub fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    /// Records from index `from` (at most `max`), and whether the journal is complete
    /// and they are the last ones.
    pub fn read(&self, from: usize, max: usize) -> (Vec<Bytes>, bool) {
        let g = self.lock();
        let out: Vec<Bytes> = match &g.store {
            Store::Memory(v) => v.iter().skip(from).take(max).cloned().collect(),
            Store::Spilled { file, index, .. } => index
                .iter()
                .skip(from)
                .take(max)
                .filter_map(|(off, len)| {
                    let mut buf = vec![0u8; *len as usize];
                    file.read_exact_at(&mut buf, *off)
                        .ok()
                        .map(|()| Bytes::from(buf))
                })
                .collect(),
        };
        let total = match &g.store {
            Store::Memory(v) => v.len(),
            Store::Spilled { index, .. } => index.len(),
        };
        let last = g.done && from + out.len() >= total;
        (out, last)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let g = self.lock();
        if let Store::Spilled { path, .. } = &g.store {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn spill_to_file(store: &mut Store, dir: &Path, id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{id}.{}.ndjson", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let Store::Memory(records) = store else {
        return Ok(());
    };
    let mut index = Vec::with_capacity(records.len());
    let mut end = 0u64;
    for r in records.iter() {
        file.write_all_at(r, end)?;
        index.push((end, r.len() as u32));
        end += r.len() as u64;
    }
    (&file).flush()?;
    *store = Store::Spilled {
        file,
        path,
        index,
        end,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(s: &str) -> Bytes {
        Bytes::from(format!("{s}\n"))
    }

    #[test]
    fn records_read_back_from_memory_and_from_the_spill_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::new("x", 10, 1 << 20, Some(dir.path().to_path_buf()));
        j.push(rec("started"), false);
        j.push(rec("aaaaaaaaaa"), true);
        j.push(rec("bbb"), true);
        let (all, last) = j.read(0, 100);
        assert_eq!(all, vec![rec("started"), rec("aaaaaaaaaa"), rec("bbb")]);
        assert!(!last);
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            1,
            "spilled"
        );
        j.push(rec("exit"), false);
        j.finish();
        let (tail, last) = j.read(2, 100);
        assert_eq!((tail, last), (vec![rec("bbb"), rec("exit")], true));
        drop(j);
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "the spill file goes with it"
        );
    }

    #[test]
    fn output_past_the_limit_is_counted_not_kept() {
        let j = Journal::new("y", 1 << 20, 12, None);
        j.push(rec("started"), false);
        j.push(rec("0123456789"), true);
        j.push(rec("exit"), false);
        assert_eq!(j.dropped_bytes(), 11);
        assert_eq!(j.read(0, 10).0, vec![rec("started"), rec("exit")]);
    }
}
