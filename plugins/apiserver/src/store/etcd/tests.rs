//! The etcd store's own behaviour: group commit, TLS client certificates, unreachable endpoints, settings errors.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::oneshot;

use super::{batch, codec, create_txn, EtcdError, EtcdStore, EtcdTls};
use crate::store::tests::{etcd_options, pod};
use crate::store::{CacheOptions, EventType, ListOptions, Revision, Store, StoreError, Watch};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_decide_each_write_of_a_group_by_its_own_compare() {
    let etcd = tokio::task::spawn_blocking(kubernel_e2e::Etcd::start)
        .await
        .expect("etcd start task")
        .expect("start etcd");
    let store = EtcdStore::connect(etcd_options(&etcd.endpoint, CacheOptions::default()))
        .await
        .expect("connect");
    let taken = store
        .create("pods/default/taken", pod("taken"))
        .await
        .expect("create taken");
    let before = taken.mod_revision;
    let mut watch = store.watch("pods/", before).expect("watch");

    // One group, as the group commit sends it: eight new keys and one that exists.
    let kv = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("connect a client")
        .kv_client();
    let names = ["g0", "g1", "g2", "taken", "g3", "g4", "g5", "g6", "g7"];
    let mut answers = Vec::new();
    let group = names
        .iter()
        .map(|name| {
            let key = format!("pods/default/{name}");
            let mut object = pod(name);
            let value = codec::encode(&key, &mut object).expect("encode");
            let etcd_key = store.prefix.etcd_key(&key);
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            batch::Write {
                what: format!("create {key}"),
                txn: create_txn(&etcd_key, value),
                etcd_key,
                bytes: 0,
                reply,
            }
        })
        .collect();
    batch::send(&store.shared, kv, group).await;
    let mut revisions = BTreeSet::new();
    for (name, answer) in names.iter().zip(answers) {
        let answer = answer
            .await
            .expect("answered")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.response.succeeded(), *name != "taken", "{name}");
        revisions.insert(answer.revision);
    }
    let revision = before + 1;
    assert_eq!(revisions, BTreeSet::from([revision]), "one transaction");

    // Every created key reaches the watch, at the group's revision; a watch from
    // before it gets them from the history, one from it gets none of them.
    let created: BTreeSet<(String, Revision)> = names
        .iter()
        .filter(|name| **name != "taken")
        .map(|name| (format!("pods/default/{name}"), revision))
        .collect();
    assert_eq!(keys_and_revisions(&mut watch, 8).await, created);
    let backlog = store.watch("pods/", before).expect("watch again").backlog;
    let replayed: BTreeSet<(String, Revision)> = backlog
        .iter()
        .map(|event| (event.object.key.to_string(), event.revision))
        .collect();
    assert_eq!((backlog.len(), replayed), (8, created));
    assert!(store
        .watch("pods/", revision)
        .expect("watch from the group")
        .backlog
        .is_empty());
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
async fn etcd_store_should_refuse_only_the_conflicting_one_of_concurrent_creates() {
    let etcd = tokio::task::spawn_blocking(kubernel_e2e::Etcd::start)
        .await
        .expect("etcd start task")
        .expect("start etcd");
    let store = EtcdStore::connect(etcd_options(&etcd.endpoint, CacheOptions::default()))
        .await
        .expect("connect");
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
