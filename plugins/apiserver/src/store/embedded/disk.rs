//! The embedded store's durable half: every current object and the revision in one redb file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::store::{Event, EventType, Revision, StoreError, Stored};

/// Objects by key: (create revision, mod revision, JSON with `metadata.resourceVersion`).
const OBJECTS: TableDefinition<&str, (u64, u64, &[u8])> = TableDefinition::new("objects");

/// Store-wide values; [`REVISION`] is the revision of the last write.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Key of the current revision in [`META`].
const REVISION: &str = "revision";

/// Name of the database file in the store's directory.
pub(super) const FILE_NAME: &str = "store.redb";

/// The open database file; only the commit thread writes to it.
pub(super) struct Disk {
    /// The database.
    db: Database,
    /// Its path, for error messages.
    path: PathBuf,
}

/// What a database held when opened.
pub(super) struct Loaded {
    /// Every object by key.
    pub objects: BTreeMap<Arc<str>, Stored>,
    /// Revision of the last write.
    pub revision: Revision,
}

impl Disk {
    /// Opens (creating it and `dir` if needed) `<dir>/store.redb` and reads everything in it.
    pub(super) fn open(dir: &Path) -> Result<(Disk, Loaded), StoreError> {
        std::fs::create_dir_all(dir).map_err(|err| unavailable(dir, err))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|err| unavailable(&path, err))?;
        let disk = Disk { db, path };
        disk.create_tables()?;
        let loaded = disk.load()?;
        Ok((disk, loaded))
    }

    /// Writes committed `events` (consecutive revisions) in one durable transaction.
    pub(super) fn write(&self, events: &[Event]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut txn = self
            .db
            .begin_write()
            .map_err(|err| unavailable(&self.path, err))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|err| unavailable(&self.path, err))?;
        {
            let mut objects = txn
                .open_table(OBJECTS)
                .map_err(|err| unavailable(&self.path, err))?;
            for event in events {
                let stored = &event.object;
                let written = match event.kind {
                    EventType::Added | EventType::Modified => objects
                        .insert(
                            &*stored.key,
                            (
                                stored.create_revision,
                                stored.mod_revision,
                                &stored.json[..],
                            ),
                        )
                        .map(drop),
                    EventType::Deleted => objects.remove(&*stored.key).map(drop),
                };
                written.map_err(|err| unavailable(&self.path, err))?;
            }
            let mut meta = txn
                .open_table(META)
                .map_err(|err| unavailable(&self.path, err))?;
            meta.insert(REVISION, last.revision)
                .map_err(|err| unavailable(&self.path, err))?;
        }
        txn.commit().map_err(|err| unavailable(&self.path, err))
    }

    /// Makes sure both tables exist, so reads of a new file find them.
    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|err| unavailable(&self.path, err))?;
        txn.open_table(OBJECTS)
            .map_err(|err| unavailable(&self.path, err))?;
        txn.open_table(META)
            .map_err(|err| unavailable(&self.path, err))?;
        txn.commit().map_err(|err| unavailable(&self.path, err))
    }

    /// Reads every object and the revision.
    fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|err| unavailable(&self.path, err))?;
        let meta = txn
            .open_table(META)
            .map_err(|err| unavailable(&self.path, err))?;
        let mut revision = meta
            .get(REVISION)
            .map_err(|err| unavailable(&self.path, err))?
            .map_or(0, |value| value.value());
        let table = txn
            .open_table(OBJECTS)
            .map_err(|err| unavailable(&self.path, err))?;
        let mut objects = BTreeMap::new();
        for entry in table.iter().map_err(|err| unavailable(&self.path, err))? {
            let (key, value) = entry.map_err(|err| unavailable(&self.path, err))?;
            let key: Arc<str> = Arc::from(key.value());
            let (create_revision, mod_revision, json) = value.value();
            let object: Value = serde_json::from_slice(json).map_err(|err| {
                StoreError::Unavailable(format!(
                    "{}: {key}: unreadable object: {err}",
                    self.path.display()
                ))
            })?;
            revision = revision.max(mod_revision);
            let stored = Stored {
                key: key.clone(),
                object: Arc::new(object),
                json: Bytes::copy_from_slice(json),
                create_revision,
                mod_revision,
            };
            objects.insert(key, stored);
        }
        Ok(Loaded { objects, revision })
    }
}

/// An I/O or database failure on `path`.
fn unavailable(path: &Path, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::EmbeddedStore;
    use crate::store::tests::pod;
    use crate::store::CacheOptions;
    use crate::store::{ListOptions, Store, StoreError};

    /// Tells the test binary it runs as the writer that the kill test kills.
    const CRASH_DIR_VAR: &str = "KUBERNEL_STORE_CRASH_DIR";

    /// Acknowledged writes the kill test waits for before killing.
    const ACKED_BEFORE_KILL: usize = 300;

    #[tokio::test]
    async fn reopen_should_keep_every_object_and_the_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EmbeddedStore::open(dir.path(), CacheOptions::default()).expect("open");
            for i in 0..20 {
                store
                    .create(&format!("pods/default/p{i:02}"), pod("p"))
                    .await
                    .expect("create");
            }
            store
                .update("pods/default/p03", pod("p"), Some(4))
                .await
                .expect("update");
            store
                .delete("pods/default/p05", None)
                .await
                .expect("delete");
        }
        let store = EmbeddedStore::open(dir.path(), CacheOptions::default()).expect("reopen");
        assert_eq!(store.revision(), 22);
        let list = store
            .list(&ListOptions {
                prefix: "pods/".into(),
                ..ListOptions::default()
            })
            .expect("list");
        assert_eq!(list.items.len(), 19);
        assert!(store.get("pods/default/p05").expect("get").is_none());
        let updated = store.get("pods/default/p03").expect("get").expect("p03");
        assert_eq!((updated.create_revision, updated.mod_revision), (4, 21));
        assert_eq!(updated.object["metadata"]["resourceVersion"], "21");
        assert!(matches!(
            store.watch("pods/", 21),
            Err(StoreError::Compacted {
                requested: 21,
                compacted: 22
            })
        ));
        let created = store
            .create("pods/default/p05", pod("p"))
            .await
            .expect("create after reopen");
        assert_eq!(created.mod_revision, 23);
    }

    #[test]
    fn open_should_refuse_a_directory_already_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _store = EmbeddedStore::open(dir.path(), CacheOptions::default()).expect("open");
        assert!(matches!(
            EmbeddedStore::open(dir.path(), CacheOptions::default()),
            Err(StoreError::Unavailable(_))
        ));
    }

    /// Not a test of its own: the writer process of
    /// `embedded_store_should_keep_acknowledged_writes_after_kill_9`.
    #[test]
    #[ignore = "the child process of the kill -9 test"]
    fn crash_writer_should_write_until_killed() {
        let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let store =
                Arc::new(EmbeddedStore::open(dir.as_ref(), CacheOptions::default()).expect("open"));
            let writers: Vec<_> = (0..8)
                .map(|task| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for i in 0..1_000_000u64 {
                            let key = format!("pods/crash/w{task}-{i}");
                            store.create(&key, pod(&key)).await.expect("create");
                            let mut stdout = std::io::stdout().lock();
                            if writeln!(stdout, "ACK {key}")
                                .and_then(|()| stdout.flush())
                                .is_err()
                            {
                                return;
                            }
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.await.expect("writer");
            }
        });
    }

    #[test]
    fn embedded_store_should_keep_acknowledged_writes_after_kill_9() {
        let dir = tempfile::tempdir().expect("tempdir");
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, path)| path);
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--ignored", "--exact", "--nocapture", "--test-threads=1"])
            .arg(format!("{module}::crash_writer_should_write_until_killed"))
            .env(CRASH_DIR_VAR, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("child stdout");
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            while stdout.read_line(&mut line).is_ok_and(|read| read > 0) {
                if let Some(key) = line
                    .strip_suffix('\n')
                    .and_then(|line| line.strip_prefix("ACK "))
                {
                    if lines_tx.send(key.to_owned()).is_err() {
                        return;
                    }
                }
                line.clear();
            }
        });
        let mut acked = BTreeSet::new();
        while acked.len() < ACKED_BEFORE_KILL {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(key) => acked.insert(key),
                Err(err) => {
                    let _ = child.kill();
                    panic!(
                        "the writer stopped after {} acknowledged writes: {err}",
                        acked.len()
                    );
                }
            };
        }
        child.kill().expect("kill -9 the writer");
        child.wait().expect("reap the writer");
        reader.join().expect("reader thread");
        acked.extend(lines.try_iter());

        let store =
            EmbeddedStore::open(dir.path(), CacheOptions::default()).expect("reopen after kill");
        let missing: Vec<&String> = acked
            .iter()
            .filter(|key| store.get(key).ok().flatten().is_none())
            .collect();
        let first: Vec<&&String> = missing.iter().take(10).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes lost, first {first:?}",
            missing.len(),
            acked.len()
        );
        assert!(store.revision() >= acked.len() as u64);
        assert_eq!(store.stats().keys as u64, store.revision());
    }
}
