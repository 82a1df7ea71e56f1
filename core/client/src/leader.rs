//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection:
//! acquire when the lease is free or expired, renew while leading, step down on failure.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use prometheus::{IntGaugeVec, Opts, Registry};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Api, Client, ClientError};

/// Timings and names of a leader election.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Lease namespace (`kube-system` upstream).
    pub namespace: String,
    /// Lease name, e.g. `kube-scheduler`.
    pub name: String,
    /// This candidate's identity (`holderIdentity`).
    pub identity: String,
    /// How long a lease is valid without renewal (upstream 15 s).
    pub lease_duration: Duration,
    /// How often the leader renews and candidates retry (upstream 2 s).
    pub retry_period: Duration,
}

/// A running election: [`LeaderElection::is_leader`] says whether this candidate leads.
pub struct LeaderElection {
    leading: watch::Receiver<bool>,
}

impl LeaderElection {
    /// Starts campaigning on the current tokio runtime until `shutdown`; exports
    /// `leader_election_master_status{name}` into `registry` when given.
    pub fn start(
        client: Client,
        config: LeaderElectionConfig,
        registry: Option<&Registry>,
        shutdown: CancellationToken,
    ) -> Result<LeaderElection, prometheus::Error> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "leader_election_master_status",
                "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.",
            ),
            &["name"],
        )?;
        if let Some(r) = registry {
            // A plugin restarted, resumed or reconfigured campaigns again: this
            // election's gauge replaces the previous one (same name and labels).
            let _ = r.unregister(Box::new(gauge.clone()));
            r.register(Box::new(gauge.clone()))?;
        }
        let (tx, leading) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        tokio::spawn(async move {
            let status = gauge.with_label_values(&[&config.name]);
            loop {
                let now_leading = match try_acquire_or_renew(&api, &config).await {
                    Ok(leading) => leading,
                    Err(e) => {
                        tracing::warn!(lease = %config.name, error = %e, "leader election: lease update failed");
                        false
                    }
                };
                if now_leading != *tx.borrow() {
                    tracing::info!(lease = %config.name, identity = %config.identity, leading = now_leading, "leader election changed");
                }
                status.set(i64::from(now_leading));
                tx.send_replace(now_leading);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.retry_period) => {}
                }
            }
            if *tx.borrow() {
                let _ = release(&api, &config).await;
            }
            status.set(0);
            tx.send_replace(false);
        });
        Ok(LeaderElection { leading })
    }

    /// True while this candidate holds the lease.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until this candidate leads.
    pub async fn wait_leading(&self) {
        let mut rx = self.leading.clone();
        let _ = rx.wait_for(|l| *l).await;
    }
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderElectionConfig,
) -> Result<bool, ClientError> {
    let duration = config.lease_duration.as_secs().max(1) as i32;
    let Some(lease) = api.get_opt(&config.name).await? else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": config.name, "namespace": config.namespace},
            "spec": {
                "holderIdentity": config.identity,
                "leaseDurationSeconds": duration,
                "acquireTime": micro_now(),
                "renewTime": micro_now(),
                "leaseTransitions": 0,
            }
        }))
        .map_err(|source| ClientError::Decode {
            what: "Lease".into(),
            source,
        })?;
        return match api.create(&lease).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == config.identity;
    let expired = match &spec.renew_time {
        Some(t) => {
            let renewed = t.0;
            let valid =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration).max(0) as u64);
            let age = jiff::Timestamp::now().duration_since(renewed);
            age.as_secs_f64() > valid.as_secs_f64()
        }
        None => true,
    };
    if !ours && !holder.is_empty() && !expired {
        return Ok(false);
    }
    let mut next = lease.clone();
    let mut spec = spec;
    if !ours {
        spec.acquire_time = serde_json::from_value(json!(micro_now())).ok();
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(config.identity.clone());
    spec.lease_duration_seconds = Some(duration);
    spec.renew_time = serde_json::from_value(json!(micro_now())).ok();
    next.spec = Some(spec);
    match api.replace(&config.name, &next).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaderElectionConfig) -> Result<(), ClientError> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    if let Some(spec) = lease.spec.as_mut() {
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
    }
    api.replace(&config.name, &lease).await.map(|_| ())
}
