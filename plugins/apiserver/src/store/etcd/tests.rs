//! The etcd store's own behaviour: group commit, TLS client certificates, unreachable endpoints, settings errors.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::oneshot;

use super::{batch, codec, EtcdError, EtcdStore, EtcdTls};
use crate::store::tests::{etcd_options, pod};
use crate::store::{CacheOptions, EventType, ListOptions, Revision, Store, StoreError, Watch};

/// A fresh etcd on loopback, started off the async workers.
async fn start_etcd() -> kubernel_e2e::Etcd {
    tokio::task::spawn_blocking(kubernel_e2e::Etcd::start)
        .await
        .expect("etcd start task")
        .expect("start etcd")
}

/// A fresh etcd and a store connected to it.
async fn etcd_and_store() -> (kubernel_e2e::Etcd, EtcdStore) {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(etcd_options(&etcd.endpoint, CacheOptions::default()))
        .await
        .expect("connect");
    (etcd, store)
}

/// Receives `count` events from `watch`, failing the test if they take too long.
async fn keys_and_revisions(watch: &mut Watch, count: usize) -> BTreeSet<(String, Revision)> {
    let mut seen = BTreeSet::new();
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), watch.events.recv()).await;
        let event = next
            .expect("events arrive in time")
            .expect("the watch stays open");
        assert_eq!(event.kind, EventType::Added, "{}", event.object.key);
        seen.insert((event.object.key.to_string(), event.revision));
    }
    seen
}

/// Receives `count` events from `watch` in order, as (key, kind, resourceVersion).
async fn next_events(watch: &mut Watch, count: usize) -> Vec<(String, EventType, Revision)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), watch.events.recv()).await;
        let event = next
            .expect("events arrive in time")
            .expect("the watch stays open");
        seen.push((event.object.key.to_string(), event.kind, event.revision));
    }
    seen
}

/// Sends `changes` (store key and change) to etcd as one group, as the group
/// commit does, and returns each write's answer once the cache has applied them.
async fn send_group(
    store: &EtcdStore,
    etcd: &kubernel_e2e::Etcd,
    changes: Vec<(String, batch::Change)>,
) -> Vec<batch::Answer> {
    let kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("connect a client")
        .kv_client();
    let mut answers = Vec::new();
    let group = changes
        .into_iter()
        .map(|(key, change)| {
            let (reply, answer) = oneshot::channel();
            answers.push((key.clone(), answer));
            batch::Write {
                what: format!("write {key}"),
                etcd_key: store.prefix.etcd_key(&key),
                change,
                reply,
            }
        })
        .collect();
    batch::send(&store.shared, kv, group).await;
    let mut answered = Vec::new();
    for (key, answer) in answers {
        let answer = answer
            .await
            .expect("answered")
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        answered.push(answer);
    }
    if let Some(last) = answered.iter().map(|answer| answer.revision).max() {
        store.wait_applied(last).await;
    }
    answered
}

/// A create of `pods/default/<name>`.
fn create(name: &str) -> (String, batch::Change) {
    let key = format!("pods/default/{name}");
    let value = codec::encode(&key, &mut pod(name)).expect("encode");
    (key, batch::Change::Create(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_decide_each_write_of_a_group_by_its_own_compare() {
    let (etcd, store) = etcd_and_store().await;
    let taken = store
        .create("pods/default/taken", pod("taken"))
        .await
        .expect("create taken");
    let before = taken.mod_revision;
    let mut watch = store.watch("pods/", before).expect("watch");

    // One group, as the group commit sends it: eight new keys and one that exists.
    let names = ["g0", "g1", "g2", "taken", "g3", "g4", "g5", "g6", "g7"];
    let answers = send_group(
        &store,
        &etcd,
        names.iter().map(|name| create(name)).collect(),
    )
    .await;
    // One etcd transaction: the revision after `taken`'s; each write's index is
    // its place in the group.
    let group = codec::etcd_revision(before) + 1;
    let mut created = BTreeSet::new();
    for ((index, name), answer) in (0..).zip(names).zip(&answers) {
        assert_eq!(answer.response.succeeded(), name != "taken", "{name}");
        assert_eq!(
            answer.revision,
            codec::resource_version(group, index),
            "{name}"
        );
        if name != "taken" {
            created.insert((format!("pods/default/{name}"), answer.revision));
        }
    }

    // Every created key reaches the watch with its own resourceVersion; a watch
    // from before the group gets them from the history.
    assert_eq!(keys_and_revisions(&mut watch, 8).await, created);
    let backlog = store.watch("pods/", before).expect("watch again").backlog;
    let replayed: BTreeSet<(String, Revision)> = backlog
        .iter()
        .map(|event| (event.object.key.to_string(), event.revision))
        .collect();
    assert_eq!((backlog.len(), replayed), (8, created));
    let at_before = store
        .list(&ListOptions {
            prefix: "pods/".into(),
            revision: Some(before),
            ..ListOptions::default()
        })
        .expect("list before the group");
    assert_eq!(at_before.items.len(), 1);
    let taken_now = store
        .get("pods/default/taken")
        .expect("get")
        .expect("taken");
    assert_eq!(taken_now.mod_revision, before, "the refused create left it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_resume_a_watch_from_the_middle_of_a_group_with_the_rest_of_it() {
    let (etcd, store) = etcd_and_store().await;
    let before = store.revision();
    let mut watch = store.watch("pods/", before).expect("watch");
    let names = ["a", "b", "c", "d", "e", "f"];
    let first = send_group(
        &store,
        &etcd,
        names.iter().map(|name| create(name)).collect(),
    )
    .await;
    let version = |name: &str| {
        let stored = store
            .get(&format!("pods/default/{name}"))
            .expect("get")
            .expect("created");
        assert_eq!(
            stored.object["metadata"]["resourceVersion"],
            stored.mod_revision.to_string()
        );
        stored.mod_revision
    };
    let versions: Vec<Revision> = first.iter().map(|answer| answer.revision).collect();
    assert_eq!(
        names.iter().map(|name| version(name)).collect::<Vec<_>>(),
        versions,
        "reads give each object the resourceVersion its write answered"
    );

    // A second group mixing deletes, updates with the right and a wrong
    // resourceVersion (right etcd revision, another write's index), and a create.
    let key = |name: &str| format!("pods/default/{name}");
    let update = |name: &str, expected: Revision| {
        let value = codec::encode(&key(name), &mut pod(name)).expect("encode");
        (key(name), batch::Change::Update(value, Some(expected)))
    };
    let second = send_group(
        &store,
        &etcd,
        vec![
            (key("a"), batch::Change::Delete(None)),
            update("b", versions[2]),
            (key("c"), batch::Change::Delete(Some(versions[2]))),
            create("g"),
            (key("d"), batch::Change::Delete(Some(versions[4]))),
            update("e", versions[4]),
            (key("f"), batch::Change::Delete(None)),
        ],
    )
    .await;
    let applied: Vec<bool> = second
        .iter()
        .map(|answer| answer.response.succeeded())
        .collect();
    assert_eq!(applied, [true, false, true, true, false, true, true]);
    let group = codec::etcd_revision(second[0].revision);
    // Deletes take the index after the previous applied write, puts their place.
    let indexes: Vec<Revision> = second
        .iter()
        .filter(|answer| answer.response.succeeded())
        .map(|answer| answer.revision - codec::resource_version(group, 0))
        .collect();
    assert_eq!(indexes, [0, 1, 3, 5, 6]);

    let expected: Vec<(String, EventType, Revision)> = names
        .iter()
        .zip(&versions)
        .map(|(name, version)| (key(name), EventType::Added, *version))
        .chain(
            [
                ("a", EventType::Deleted),
                ("c", EventType::Deleted),
                ("g", EventType::Added),
                ("e", EventType::Modified),
                ("f", EventType::Deleted),
            ]
            .into_iter()
            .zip(second.iter().filter(|answer| answer.response.succeeded()))
            .map(|((name, kind), answer)| (key(name), kind, answer.revision)),
        )
        .collect();
    let seen = next_events(&mut watch, expected.len()).await;
    assert_eq!(
        seen, expected,
        "the watch sees the writers' resourceVersions"
    );
    assert!(
        seen.windows(2).all(|pair| pair[0].2 < pair[1].2),
        "resourceVersions strictly increase in watch order: {seen:?}"
    );
    // A watch resumed from any event's resourceVersion, in the middle of a group
    // too, gets exactly the events after it.
    for (at, (key, _, version)) in seen.iter().enumerate() {
        let resumed: Vec<(String, EventType, Revision)> = store
            .watch("pods/", *version)
            .unwrap_or_else(|e| panic!("watch from {key} at {version}: {e}"))
            .backlog
            .iter()
            .map(|event| (event.object.key.to_string(), event.kind, event.revision))
            .collect();
        assert_eq!(resumed, seen[at + 1..], "watch from {key} at {version}");
    }

    // The wrong index is a conflict naming the object's own resourceVersion.
    let b = version("b");
    let stale = store.update(&key("b"), pod("b"), Some(versions[2])).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { expected, actual, .. }) if expected == versions[2] && actual == b),
        "{stale:?}"
    );
    store
        .update(&key("b"), pod("b"), Some(b))
        .await
        .expect("update at b's own resourceVersion");
    // A restarted store reads the same resourceVersions back from etcd.
    let e = version("e");
    drop(store);
    let again = EtcdStore::connect(etcd_options(&etcd.endpoint, CacheOptions::default()))
        .await
        .expect("connect again");
    let read = again.get(&key("e")).expect("get").expect("e");
    assert_eq!(read.mod_revision, e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_read_and_update_a_value_of_plain_json_as_index_0() {
    let etcd = start_etcd().await;
    let mut kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("connect a client")
        .kv_client();
    let put = kv
        .put("/registry/pods/default/old", pod("old").to_string(), None)
        .await
        .expect("put plain JSON");
    let raw = put.header().map_or(0, |header| header.revision());
    let store = EtcdStore::connect(etcd_options(&etcd.endpoint, CacheOptions::default()))
        .await
        .expect("connect");
    let old = store
        .get("pods/default/old")
        .expect("get")
        .expect("the plain JSON value is an object");
    assert_eq!(old.mod_revision, codec::resource_version(raw, 0));
    let stale = store
        .update("pods/default/old", pod("old"), Some(old.mod_revision + 1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { actual, .. }) if actual == old.mod_revision),
        "{stale:?}"
    );
    store
        .update("pods/default/old", pod("old"), Some(old.mod_revision))
        .await
        .expect("update at the plain value's resourceVersion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_refuse_only_the_conflicting_one_of_concurrent_creates() {
    let (_etcd, store) = etcd_and_store().await;
    let taken = store
        .create("pods/default/taken", pod("taken"))
        .await
        .expect("create taken");
    let mut watch = store.watch("pods/", taken.mod_revision).expect("watch");
    let names: Vec<String> = (0..31)
        .map(|i| format!("c{i}"))
        .chain(["taken".to_owned()])
        .collect();
    let keys: Vec<String> = names
        .iter()
        .map(|name| format!("pods/default/{name}"))
        .collect();
    let creates = keys
        .iter()
        .zip(&names)
        .map(|(key, name)| store.create(key, pod(name)));
    let outcomes = futures::future::join_all(creates).await;
    let mut created = BTreeSet::new();
    for (name, outcome) in names.iter().zip(outcomes) {
        match outcome {
            Ok(stored) => {
                assert_ne!(name, "taken");
                let read = store.get(&stored.key).expect("get").expect("readable");
                assert_eq!(read.mod_revision, stored.mod_revision, "{name}");
                assert_eq!(
                    stored.object["metadata"]["resourceVersion"],
                    stored.mod_revision.to_string()
                );
                created.insert((stored.key.to_string(), stored.mod_revision));
            }
            Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "pods/default/taken"),
            Err(err) => panic!("{name}: {err}"),
        }
    }
    assert_eq!(created.len(), 31);
    let versions: BTreeSet<Revision> = created.iter().map(|(_, version)| *version).collect();
    assert_eq!(
        versions.len(),
        31,
        "every write has its own resourceVersion"
    );
    assert_eq!(keys_and_revisions(&mut watch, 31).await, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_connect_over_tls_with_a_client_certificate() {
    let etcd = tokio::task::spawn_blocking(kubernel_e2e::Etcd::start_tls)
        .await
        .expect("etcd start task")
        .expect("start etcd with TLS");
    let files = etcd.tls.as_ref().expect("TLS files");
    let mut options = etcd_options(&etcd.endpoint, CacheOptions::default());
    options.tls = EtcdTls {
        ca_file: Some(files.ca_file.clone()),
        cert_file: Some(files.cert_file.clone()),
        key_file: Some(files.key_file.clone()),
    };
    let store = EtcdStore::connect(options.clone())
        .await
        .expect("connect over TLS");
    let created = store
        .create("pods/default/a", pod("a"))
        .await
        .expect("create");
    let read = store
        .get("pods/default/a")
        .expect("get")
        .expect("a is there");
    assert_eq!(read.mod_revision, created.mod_revision);

    options.tls.cert_file = None;
    options.tls.key_file = None;
    let refused = EtcdStore::connect(options).await.err();
    assert!(
        matches!(&refused, Some(EtcdError::Request { endpoints, .. }) if endpoints == &etcd.endpoint),
        "etcd refuses a client without a certificate: {refused:?}"
    );
}

#[tokio::test]
async fn etcd_store_should_name_the_endpoint_it_cannot_reach() {
    let port = kubernel_e2e::free_port().expect("free port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let refused = EtcdStore::connect(etcd_options(&endpoint, CacheOptions::default()))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.starts_with(&format!("etcd {endpoint}: list /registry/: ")),
        "{refused}"
    );
}

#[tokio::test]
async fn etcd_store_should_refuse_incomplete_settings() {
    let mut options = etcd_options("http://127.0.0.1:1", CacheOptions::default());
    options.tls.cert_file = Some(PathBuf::from("/nonexistent/client.crt"));
    options.tls.key_file = Some(PathBuf::from("/nonexistent/client.key"));
    let unreadable = EtcdStore::connect(options.clone()).await.err();
    assert!(
        matches!(
            unreadable,
            Some(EtcdError::TlsFile {
                key: "etcd_cert_file",
                ..
            })
        ),
        "{unreadable:?}"
    );
    options.tls.cert_file = None;
    let half = EtcdStore::connect(options.clone()).await.err();
    assert!(
        matches!(
            half,
            Some(EtcdError::HalfIdentity {
                given: "etcd_key_file"
            })
        ),
        "{half:?}"
    );
    options.endpoints.clear();
    let none = EtcdStore::connect(options).await.err();
    assert!(matches!(none, Some(EtcdError::NoEndpoints)), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_answer_and_cache_the_writers_object_without_decoding_it_again() {
    let (_etcd, store) = etcd_and_store().await;
    let created = store
        .create("pods/default/a", pod("a"))
        .await
        .expect("create");
    let mut changed = pod("a");
    changed["metadata"]["labels"] = serde_json::json!({"app": "web"});
    let updated = store
        .update("pods/default/a", changed, Some(created.mod_revision))
        .await
        .expect("update");
    let cached = store.get("pods/default/a").expect("get").expect("cached");
    // The feed stored the writer's object (one allocation, shared by the answer
    // and the cache) and the writer answered it; no offer is left behind.
    assert!(std::sync::Arc::ptr_eq(&cached.object, &updated.object));
    assert_eq!(cached.json, updated.json);
    assert_eq!(
        updated.object["metadata"]["resourceVersion"],
        updated.mod_revision.to_string()
    );
    assert_eq!(updated.object["metadata"]["labels"]["app"], "web");
    let refused = store.create("pods/default/a", pod("a")).await;
    assert!(matches!(refused, Err(StoreError::AlreadyExists { .. })));
    assert_eq!(store.shared.offers.len(), 0);
    assert_eq!(store.shared.offers.taken(), 2);
}
