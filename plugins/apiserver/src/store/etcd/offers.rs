//! Objects this apiserver is writing, offered to the watch feed.
//!
//! Every write comes back from etcd through the watch that feeds the cache. The
//! writer already holds the object it wrote, as a decoded tree: when the feed
//! sees a put of exactly the bytes a writer offered for that key, it takes the
//! writer's object instead of decoding etcd's copy, and leaves the stored result
//! for the writer to answer. Decoding the JSON again was the largest part of the
//! feed's cost per write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::store::{stored, Revision, StoreError, Stored};

/// The writes in progress, by store key.
#[derive(Default)]
pub(super) struct Offers {
    next: AtomicU64,
    /// Offers the feed took.
    taken: AtomicU64,
    by_key: Mutex<HashMap<Arc<str>, Vec<Offer>>>,
}

/// One writer's object.
struct Offer {
    id: u64,
    /// The JSON put in etcd (without the index prefix).
    json: Box<[u8]>,
    state: State,
}

/// Where an offered object is.
pub(super) enum State {
    /// With the writer, not seen by the feed yet.
    Object(Value),
    /// Being stored by the feed.
    Taken,
    /// Stored by the feed as the event of a put (normally this writer's own).
    Applied(Stored),
}

/// An offer, withdrawn when dropped (a write that failed, or whose request was
/// cancelled, leaves nothing behind).
pub(super) struct Offered<'a> {
    offers: &'a Offers,
    key: Arc<str>,
    id: u64,
}

impl Offers {
    /// Offers `object`, about to be put to `key` as `json`.
    pub(super) fn offer(&self, key: &str, json: &[u8], object: Value) -> Offered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = Arc::from(key);
        self.by_key
            .lock()
            .entry(key.clone())
            .or_default()
            .push(Offer {
                id,
                json: json.into(),
                state: State::Object(object),
            });
        Offered {
            offers: self,
            key,
            id,
        }
    }

    /// The stored object of a put of `json` to `key`, made by `store` from an
    /// offered object; `None` when no writer offered these bytes (another
    /// apiserver's write, or one whose writer gave up).
    pub(super) fn take(
        &self,
        key: &str,
        json: &[u8],
        store: impl FnOnce(Value) -> Result<Stored, StoreError>,
    ) -> Option<Result<Stored, StoreError>> {
        let (id, object) = {
            let mut by_key = self.by_key.lock();
            let offer = by_key
                .get_mut(key)?
                .iter_mut()
                .find(|offer| matches!(offer.state, State::Object(_)) && *offer.json == *json)?;
            match std::mem::replace(&mut offer.state, State::Taken) {
                State::Object(object) => (offer.id, object),
                _ => return None,
            }
        };
        self.taken.fetch_add(1, Ordering::Relaxed);
        let stored = store(object);
        if let Ok(stored) = &stored {
            let mut by_key = self.by_key.lock();
            let offer = by_key
                .get_mut(key)
                .and_then(|offers| offers.iter_mut().find(|offer| offer.id == id));
            if let Some(offer) = offer {
                offer.state = State::Applied(stored.clone());
            }
        }
        Some(stored)
    }

    fn withdraw(&self, key: &str, id: u64) -> Option<(Box<[u8]>, State)> {
        let mut by_key = self.by_key.lock();
        let offers = by_key.get_mut(key)?;
        let at = offers.iter().position(|offer| offer.id == id)?;
        let offer = offers.swap_remove(at);
        if offers.is_empty() {
            by_key.remove(key);
        }
        Some((offer.json, offer.state))
    }

    /// Offers the feed took so far (tests).
    #[cfg(test)]
    pub(super) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Offers not withdrawn yet (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_key.lock().values().map(Vec::len).sum()
    }
}

impl Offered<'_> {
    /// The stored object of the write, which etcd applied at `revision` (the key
    /// created at `create_revision`): the feed's, when it took this offer for that
    /// revision; else made here from the object (the feed is down or behind) or,
    /// when the feed took it for an equal put at another revision, from the JSON.
    pub(super) fn stored(
        self,
        create_revision: Revision,
        revision: Revision,
    ) -> Result<Stored, StoreError> {
        let make = |object| stored(&self.key, object, create_revision, revision);
        let withdrawn = self.offers.withdraw(&self.key, self.id);
        match withdrawn {
            Some((_, State::Applied(stored))) if stored.mod_revision == revision => Ok(stored),
            Some((_, State::Object(object))) => make(object),
            Some((json, _)) => make(
                serde_json::from_slice(&json)
                    .map_err(|err| StoreError::Invalid(format!("{}: not JSON: {err}", self.key)))?,
            ),
            None => Err(StoreError::Invalid(format!(
                "{}: the write's offer was withdrawn twice",
                self.key
            ))),
        }
    }
}

impl Drop for Offered<'_> {
    fn drop(&mut self) {
        self.offers.withdraw(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::Offers;
    use crate::store::stored;

    fn pod(name: &str) -> serde_json::Value {
        json!({"kind": "Pod", "metadata": {"name": name}})
    }

    #[test]
    fn feed_should_take_the_offered_object_and_the_writer_answer_it() {
        let offers = Offers::default();
        let json = pod("a").to_string();
        let offered = offers.offer("pods/default/a", json.as_bytes(), pod("a"));
        let key: Arc<str> = Arc::from("pods/default/a");
        assert!(offers
            .take("pods/default/a", b"{\"other\":1}", |o| stored(
                &key, o, 64, 64
            ))
            .is_none());
        let taken = offers
            .take("pods/default/a", json.as_bytes(), |o| {
                stored(&key, o, 64, 65)
            })
            .expect("offered")
            .expect("stored");
        assert_eq!(taken.object["metadata"]["resourceVersion"], "65");
        let answered = offered.stored(64, 65).expect("stored");
        assert!(Arc::ptr_eq(&answered.object, &taken.object));
        assert_eq!(offers.len(), 0);
    }

    #[test]
    fn writer_should_store_its_own_object_when_the_feed_did_not_take_it() {
        let offers = Offers::default();
        let json = pod("a").to_string();
        let key: Arc<str> = Arc::from("pods/default/a");
        let offered = offers.offer(&key, json.as_bytes(), pod("a"));
        let answered = offered.stored(64, 70).expect("stored");
        assert_eq!(answered.object["metadata"]["resourceVersion"], "70");
        assert!(offers
            .take(&key, json.as_bytes(), |o| stored(&key, o, 64, 70))
            .is_none());
    }

    #[test]
    fn equal_puts_should_each_answer_their_own_revision() {
        let offers = Offers::default();
        let json = pod("a").to_string();
        let key: Arc<str> = Arc::from("pods/default/a");
        let first = offers.offer(&key, json.as_bytes(), pod("a"));
        let second = offers.offer(&key, json.as_bytes(), pod("a"));
        // The feed sees the second writer's put first and takes the first offer.
        offers
            .take(&key, json.as_bytes(), |o| stored(&key, o, 64, 80))
            .expect("offered")
            .expect("stored");
        let second = second.stored(64, 80).expect("second");
        let first = first.stored(64, 81).expect("first");
        assert_eq!(second.mod_revision, 80);
        assert_eq!(first.object["metadata"]["resourceVersion"], "81");
        assert_eq!(offers.len(), 0);
    }

    #[test]
    fn a_dropped_offer_should_be_withdrawn() {
        let offers = Offers::default();
        drop(offers.offer("pods/default/a", b"{}", pod("a")));
        assert_eq!(offers.len(), 0);
    }
}
