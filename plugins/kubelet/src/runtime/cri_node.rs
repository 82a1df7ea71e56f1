//! What the node agent needs of a CRI runtime beyond the pod and container calls:
//! images (ImageStatus, PullImage as `imagePullPolicy` says), ExecSync for exec probes
//! and hooks, UpdateRuntimeConfig with the node's pod CIDR, and health (Version and
//! Status, checked every relist).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use super::cri::CriRuntime;
use super::{ContainerId, ExecOutput, ImageError, NodeRuntime, PullPolicy, RuntimeError};
use crate::cidr::Ipv4Cidr;

impl CriRuntime {
    async fn image_present(&self, image: &str) -> Result<bool, String> {
        let mut client = self.image_client();
        let request = cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        self.call("image_status", image, client.image_status(request))
            .await
            .map(|r| r.image.is_some())
            .map_err(|e| e.to_string())
    }

    async fn pull(&self, image: &str) -> Result<Duration, String> {
        let mut client = self.image_client();
        let request = cri::PullImageRequest {
            image: Some(image_spec(image)),
            ..cri::PullImageRequest::default()
        };
        let started = Instant::now();
        let result = self
            .call("pull_image", image, client.pull_image(request))
            .await;
        let took = started.elapsed();
        self.metrics.image_pull_duration.observe(took.as_secs_f64());
        result.map(|_| took).map_err(|e| match e {
            RuntimeError::Failed { message, .. } => message,
            other => other.to_string(),
        })
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..cri::ImageSpec::default()
    }
}

#[async_trait::async_trait]
impl NodeRuntime for CriRuntime {
    fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.root.join(format!("{namespace}_{name}_{uid}"))
    }

    fn execs_in_containers(&self) -> bool {
        true
    }

    fn cri_logs(&self) -> bool {
        true
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::ExecSyncRequest {
            container_id: id.0.clone(),
            cmd: command.to_vec(),
            timeout: i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
        };
        let r = self
            .call("exec_sync", &id.0, client.exec_sync(request))
            .await?;
        let mut output = r.stdout;
        output.extend_from_slice(&r.stderr);
        Ok(ExecOutput {
            exit_code: r.exit_code,
            output,
        })
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<String, ImageError> {
        let pull_failed = |message: String| ImageError {
            reason: "ErrImagePull",
            message: format!("Failed to pull image {image:?}: {message}"),
        };
        if policy != PullPolicy::Always {
            let present = self.image_present(image).await.map_err(pull_failed)?;
            if present {
                return Ok(format!(
                    "Container image {image:?} already present on machine"
                ));
            }
            if policy == PullPolicy::Never {
                return Err(ImageError {
                    reason: "ErrImageNeverPull",
                    message: format!(
                        "Container image {image:?} is not present with pull policy of Never"
                    ),
                });
            }
        }
        let took = self.pull(image).await.map_err(pull_failed)?;
        Ok(format!(
            "Successfully pulled image {image:?} in {:.3}s",
            took.as_secs_f64()
        ))
    }

    async fn update_pod_cidr(&self, cidr: Ipv4Cidr) -> Result<(), RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: cidr.to_string(),
                }),
            }),
        };
        self.call(
            "update_runtime_config",
            &cidr.to_string(),
            client.update_runtime_config(request),
        )
        .await
        .map(drop)
    }

    async fn health(&self) -> Result<String, String> {
        let mut client = self.runtime_client();
        let v = self
            .call(
                "version",
                "",
                client.version(cri::VersionRequest {
                    version: "v1".into(),
                }),
            )
            .await
            .map_err(|e| match e {
                RuntimeError::Failed { message, .. } => message,
                other => other.to_string(),
            })?;
        let version = format!("{}://{}", v.runtime_name, v.runtime_version);
        *self.version.lock() = Some(version.clone());
        let mut client = self.runtime_client();
        let status = self
            .call(
                "status",
                "",
                client.status(cri::StatusRequest { verbose: false }),
            )
            .await
            .map_err(|e| e.to_string())?;
        for c in status.status.map(|s| s.conditions).unwrap_or_default() {
            let needed =
                c.r#type == "RuntimeReady" || (c.r#type == "NetworkReady" && self.pod_network);
            if needed && !c.status {
                return Err(format!(
                    "container runtime {} is not ready: {} {}: {}",
                    self.endpoint, c.r#type, c.reason, c.message
                ));
            }
        }
        Ok(version)
    }
}
