//! Controller expectations (client-go's `UIDTrackingControllerExpectations`): after
//! creating or deleting pods a controller waits until its informer has seen them,
//! so a burst of watch events never makes it create or delete twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Expectations older than this are considered met (upstream `ExpectationsTimeout`, 5 min).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Pending creations and deletions per controller key.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// True when `key` waits for nothing (or its expectations expired).
    pub fn satisfied(&self, key: &str) -> bool {
        match self.inner.lock().get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.deletes.is_empty()) || p.since.elapsed() > TIMEOUT,
        }
    }

    /// `key` is about to create `n` objects.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.inner.lock().insert(
            key.to_string(),
            Pending {
                adds: n as i64,
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// `key` is about to delete the objects `deleted` (their keys).
    pub fn expect_deletions(&self, key: &str, deleted: impl IntoIterator<Item = String>) {
        self.inner.lock().insert(
            key.to_string(),
            Pending {
                adds: 0,
                deletes: deleted.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// The informer saw one object `key` created (or a create failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(p) = self.inner.lock().get_mut(key) {
            p.adds -= 1;
        }
    }

    /// The informer saw object `object` of `key` deleted (or a delete failed).
    pub fn deletion_observed(&self, key: &str, object: &str) {
        if let Some(p) = self.inner.lock().get_mut(key) {
            p.deletes.remove(object);
        }
    }

    /// Forgets `key` (its controller object is gone).
    pub fn forget(&self, key: &str) {
        self.inner.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_should_be_met_once_every_create_and_delete_was_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 2);
        e.creation_observed("rs");
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(e.satisfied("rs"));
        e.expect_deletions("rs", ["ns/a".to_string()]);
        e.deletion_observed("rs", "ns/b");
        assert!(!e.satisfied("rs"));
        e.deletion_observed("rs", "ns/a");
        e.deletion_observed("rs", "ns/a");
        assert!(e.satisfied("rs"));
    }
}
