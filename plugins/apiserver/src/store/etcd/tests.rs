//! The etcd store's own behaviour: TLS client certificates, unreachable endpoints, settings errors.

use std::path::PathBuf;

use super::{EtcdError, EtcdStore, EtcdTls};
use crate::store::tests::{etcd_options, pod};
use crate::store::{CacheOptions, Store};

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
