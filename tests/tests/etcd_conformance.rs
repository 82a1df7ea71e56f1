//! The kubectl and Python-client scenarios of the embedded store's tests, run again on an apiserver storing in etcd.
//!
//! The scenario files are compiled in as modules: their `Cluster::start` starts an
//! etcd for each cluster because this test binary's name begins with `etcd_`
//! (see `kubernel_e2e::test_storage`). Any other test file runs on etcd with
//! `KUBERNEL_TEST_STORAGE=etcd`.

#[path = "apiserver_watch.rs"]
mod apiserver_watch;
#[path = "kubectl_basics.rs"]
mod kubectl_basics;
#[path = "kubectl_deployments.rs"]
mod kubectl_deployments;
#[path = "python_client.rs"]
mod python_client;
