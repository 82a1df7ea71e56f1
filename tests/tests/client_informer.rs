//! The shared client against the real apiserver: typed CRUD, informers that see
//! every change, a work queue, Events and leader election.

use std::time::Duration;

use anyhow::{anyhow, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kubernel_client::{
    Api, CancellationToken, Change, Client, DeleteParams, EventRecorder, Informer, LeaderElection,
    LeaderElectionConfig, ListParams, Patch,
};
use kubernel_e2e::Cluster;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn config_map(name: &str, value: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "client-test"}},
        "data": {"key": value},
    }))?)
}

async fn next_change<K>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Change<K>>,
) -> Result<Change<K>> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .map_err(|_| anyhow!("no informer change within 10 s"))?
        .ok_or_else(|| anyhow!("informer stopped"))
}

#[test]
fn client_should_read_write_and_inform_against_the_real_apiserver() -> Result<()> {
    let cluster = Cluster::start("")?;
    let rt = runtime()?;
    rt.block_on(async {
        let client = Client::from_url(&cluster.api)?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let shutdown = CancellationToken::new();
        let (cache, mut changes) = Informer::start(
            cms.clone(),
            ListParams::default().labels("app=client-test"),
            shutdown.clone(),
        );
        cache.wait_synced().await;
        assert!(matches!(next_change(&mut changes).await?, Change::Synced));

        let created = cms.create(&config_map("one", "a")?).await?;
        assert!(created.metadata.uid.is_some());
        match next_change(&mut changes).await? {
            Change::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("one")),
            other => return Err(anyhow!("expected Added, got {other:?}")),
        }
        let dup = cms.create(&config_map("one", "a")?).await;
        assert!(
            dup.as_ref().is_err_and(|e| e.is_already_exists()),
            "{dup:?}"
        );

        cms.patch(
            "one",
            &Patch::Merge(serde_json::json!({"data": {"key": "b"}})),
        )
        .await?;
        match next_change(&mut changes).await? {
            Change::Updated { old, new } => {
                assert_eq!(
                    old.data
                        .as_ref()
                        .and_then(|d| d.get("key"))
                        .map(String::as_str),
                    Some("a")
                );
                assert_eq!(
                    new.data
                        .as_ref()
                        .and_then(|d| d.get("key"))
                        .map(String::as_str),
                    Some("b")
                );
            }
            other => return Err(anyhow!("expected Updated, got {other:?}")),
        }
        assert_eq!(
            cache
                .get("default/one")
                .and_then(|c| c.data.clone())
                .and_then(|d| d.get("key").cloned())
                .as_deref(),
            Some("b")
        );

        let stale = config_map("one", "c")?;
        let mut stale = stale;
        stale.metadata.resource_version = created.metadata.resource_version.clone();
        let conflict = cms.replace("one", &stale).await;
        assert!(
            conflict.as_ref().is_err_and(|e| e.is_conflict()),
            "{conflict:?}"
        );

        assert!(cms.delete("one", &DeleteParams::default()).await?);
        assert!(!cms.delete("one", &DeleteParams::default()).await?);
        assert!(matches!(
            next_change(&mut changes).await?,
            Change::Deleted(_)
        ));
        assert!(cms.get_opt("one").await?.is_none());
        let missing = cms.get("one").await.expect_err("gone");
        assert!(missing.is_not_found());
        assert!(missing.to_string().contains("not found"), "{missing}");

        let listed = Api::<Pod>::all(client.clone())
            .list(&ListParams {
                limit: 2,
                ..ListParams::default()
            })
            .await?;
        assert!(listed.items.is_empty());
        assert!(!listed.resource_version.is_empty());
        shutdown.cancel();
        Ok::<_, anyhow::Error>(())
    })
}

#[test]
fn events_should_fold_repeats_and_leader_election_should_take_a_free_lease() -> Result<()> {
    let cluster = Cluster::start("")?;
    let rt = runtime()?;
    rt.block_on(async {
        let client = Client::from_url(&cluster.api)?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm = cms.create(&config_map("subject", "x")?).await?;
        let recorder = EventRecorder::new(client.clone(), "client-test", "host-1");
        let reference = EventRecorder::reference(&cm);
        for _ in 0..3 {
            recorder
                .write(&reference, "Normal", "Tested", "it works")
                .await?;
        }
        let events = Api::<Event>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await?;
        let ours: Vec<_> = events
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Tested"))
            .collect();
        assert_eq!(ours.len(), 1, "repeats fold into one Event");
        assert_eq!(ours[0].count, Some(3));
        assert_eq!(ours[0].involved_object.name.as_deref(), Some("subject"));

        let shutdown = CancellationToken::new();
        let config = LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: "client-test".into(),
            identity: "candidate-a".into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_millis(200),
        };
        let a = LeaderElection::start(client.clone(), config.clone(), None, shutdown.clone())?;
        tokio::time::timeout(Duration::from_secs(10), a.wait_leading()).await?;
        let b_shutdown = CancellationToken::new();
        let b = LeaderElection::start(
            client.clone(),
            LeaderElectionConfig {
                identity: "candidate-b".into(),
                ..config
            },
            None,
            b_shutdown.clone(),
        )?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(a.is_leader() && !b.is_leader(), "only one leader");
        let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
            .get("client-test")
            .await?;
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("candidate-a")
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), b.wait_leading()).await?;
        b_shutdown.cancel();
        Ok::<_, anyhow::Error>(())
    })
}
