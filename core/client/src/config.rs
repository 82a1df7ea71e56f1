//! Where the apiserver is and how to reach it: an explicit URL or a kubeconfig file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ClientError;

/// How a component reaches the apiserver.
///
/// Components embed this in their own config; `server` wins over `kubeconfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Base URL of the apiserver, e.g. `http://127.0.0.1:6443`. Empty: read `kubeconfig`.
    pub server: String,
    /// Kubeconfig file to read the server (and bearer token) from. Empty: the
    /// `admin.kubeconfig` the apiserver writes into the kernel's data dir.
    pub kubeconfig: PathBuf,
    /// Bearer token sent with every request (overrides the kubeconfig's).
    pub token: String,
    /// Timeout of one non-watch request.
    #[serde(with = "humantime_secs")]
    pub request_timeout: Duration,
    /// Server-side timeout asked for each watch (`timeoutSeconds`); the informer re-watches after it.
    pub watch_timeout_seconds: u32,
    /// How a component plugin reaches the apiserver: `auto` (the kernel bus when
    /// the apiserver is a plugin of the same process, loaded before this one, and
    /// neither `server` nor `kubeconfig` is set; else HTTPS), `bus` or `http`.
    pub transport: Transport,
}

/// How a component plugin reaches the apiserver (see [`ClientConfig::transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The bus when the apiserver is in the process and no server is named.
    #[default]
    Auto,
    /// Always the kernel bus.
    Bus,
    /// Always HTTP(S).
    Http,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: String::new(),
            kubeconfig: PathBuf::new(),
            token: String::new(),
            request_timeout: Duration::from_secs(30),
            watch_timeout_seconds: 300,
            transport: Transport::Auto,
        }
    }
}

/// The server URL and credentials a client ends up with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Endpoint {
    pub server: String,
    pub token: Option<String>,
    /// PEM CA bundle trusted for an `https://` server (none: the server is not verifiable).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// `insecure-skip-tls-verify`.
    pub insecure_skip_verify: bool,
}

impl ClientConfig {
    /// Resolves the server URL: `server`, else the kubeconfig (`kubeconfig`, else
    /// `<kernel_data_dir>/admin.kubeconfig`).
    pub(crate) fn endpoint(&self, kernel_data_dir: Option<&Path>) -> Result<Endpoint, ClientError> {
        let token = (!self.token.is_empty()).then(|| self.token.clone());
        if !self.server.is_empty() {
            return Ok(Endpoint {
                server: self.server.trim_end_matches('/').to_string(),
                token,
                ..Endpoint::default()
            });
        }
        let path = if self.kubeconfig.as_os_str().is_empty() {
            match kernel_data_dir {
                Some(dir) => dir.join("admin.kubeconfig"),
                None => {
                    return Err(ClientError::Config(
                        "neither server nor kubeconfig is set".into(),
                    ))
                }
            }
        } else {
            self.kubeconfig.clone()
        };
        let mut endpoint = read_kubeconfig(&path)?;
        if token.is_some() {
            endpoint.token = token;
        }
        Ok(endpoint)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    #[serde(default)]
    certificate_authority_data: String,
    #[serde(default)]
    certificate_authority: String,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    token: String,
    #[serde(default)]
    client_certificate_data: String,
    #[serde(default)]
    client_key_data: String,
    #[serde(default)]
    client_certificate: String,
    #[serde(default)]
    client_key: String,
}

/// PEM bytes from a kubeconfig `*-data` field (base64) or its file field (a path,
/// relative to the kubeconfig's directory); `None` when both are empty.
fn pem_field(
    kubeconfig: &Path,
    data: &str,
    file: &str,
    what: &str,
) -> Result<Option<Vec<u8>>, ClientError> {
    use base64::Engine;
    let name = kubeconfig.display();
    if !data.is_empty() {
        let clean: String = data.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map(Some)
            .map_err(|e| {
                ClientError::Config(format!("kubeconfig {name}: {what}-data is not base64: {e}"))
            });
    }
    if file.is_empty() {
        return Ok(None);
    }
    let path = kubeconfig
        .parent()
        .map_or_else(|| PathBuf::from(file), |dir| dir.join(file));
    std::fs::read(&path).map(Some).map_err(|e| {
        ClientError::Config(format!("kubeconfig {name}: {what} {}: {e}", path.display()))
    })
}

/// Reads the current context's server and token from a kubeconfig file.
fn read_kubeconfig(path: &Path) -> Result<Endpoint, ClientError> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Config(format!("kubeconfig {name}: {e}")))?;
    let config: Kubeconfig = serde_yaml_ng::from_str(&text)
        .map_err(|e| ClientError::Config(format!("kubeconfig {name}: {e}")))?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == config.current_context)
        .or(config.contexts.first())
        .and_then(|c| c.value.as_ref());
    let cluster = match context {
        Some(ctx) => config.clusters.iter().find(|c| c.name == ctx.cluster),
        None => config.clusters.first(),
    }
    .and_then(|c| c.value.as_ref())
    .ok_or_else(|| ClientError::Config(format!("kubeconfig {name}: no cluster with a server")))?;
    let user = context
        .and_then(|ctx| config.users.iter().find(|u| u.name == ctx.user))
        .and_then(|u| u.value.as_ref());
    let token = user.map(|u| u.token.clone()).filter(|t| !t.is_empty());
    let ca_pem = pem_field(
        path,
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
        "certificate-authority",
    )?;
    let client_pem = match user {
        Some(u) => {
            let cert = pem_field(
                path,
                &u.client_certificate_data,
                &u.client_certificate,
                "client-certificate",
            )?;
            let key = pem_field(path, &u.client_key_data, &u.client_key, "client-key")?;
            match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(ClientError::Config(format!(
                        "kubeconfig {name}: a client certificate needs both client-certificate and client-key"
                    )))
                }
            }
        }
        None => None,
    };
    Ok(Endpoint {
        server: cluster.server.trim_end_matches('/').to_string(),
        token,
        ca_pem,
        client_pem,
        insecure_skip_verify: cluster.insecure_skip_tls_verify,
    })
}

/// Durations in config written as seconds (`request_timeout = 30`) or humantime (`"30s"`).
mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(s) if s >= 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            Raw::Secs(s) => Err(serde::de::Error::custom(format!(
                "{s} is not a valid number of seconds"
            ))),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `500ms`, `10s`, `5m`, `1h`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 5m"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
        };
        Ok(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
use humantime_secs::parse as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_should_come_from_the_current_context_of_a_kubeconfig() {
        let dir = std::env::temp_dir().join(format!("kubernel-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("admin.kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: http://127.0.0.1:1\n- name: kubernel\n  cluster:\n    server: http://127.0.0.1:6443/\ncontexts:\n- name: kubernel\n  context:\n    cluster: kubernel\n    user: admin\ncurrent-context: kubernel\nusers:\n- name: admin\n  user:\n    token: abc\n",
        )
        .expect("write kubeconfig");
        let endpoint = ClientConfig::default()
            .endpoint(Some(&dir))
            .expect("endpoint");
        assert_eq!(endpoint.server, "http://127.0.0.1:6443");
        assert_eq!(endpoint.token.as_deref(), Some("abc"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endpoint_should_name_a_missing_kubeconfig() {
        let config = ClientConfig {
            kubeconfig: "/nonexistent/kc".into(),
            ..ClientConfig::default()
        };
        let err = config.endpoint(None).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/kc"), "{err}");
    }

    #[test]
    fn durations_should_parse_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
