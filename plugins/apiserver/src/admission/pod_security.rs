//! The PodSecurity admission step for pod creates, as upstream's: a namespace's
//! `pod-security.kubernetes.io/enforce` label (`privileged`, `baseline` or
//! `restricted`) forbids pods that break the Pod Security Standards of that level,
//! and its `.../warn` label answers them with a `Warning`; both with upstream's
//! check names and messages, checks in upstream's order. Version labels are read
//! as `latest`; the `audit` label and exemptions are not implemented.

use serde_json::Value;

use crate::store::Store;

/// The label prefix.
const LABEL: &str = "pod-security.kubernetes.io/";

/// Capabilities `baseline` lets containers add.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls `baseline` allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Volume types `restricted` allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        match text {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// What PodSecurity says of an admitted pod.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `Warning` headers for the client (the `warn` level).
    pub warnings: Vec<String>,
    /// Annotations for the request's audit event (the `audit` level), as upstream's
    /// `pod-security.kubernetes.io/audit-violations`.
    pub audit_annotations: Vec<(String, String)>,
}

/// Checks a pod against its namespace's levels (`enforce`, `audit`, `warn`): what
/// to tell the client and the audit log, or why it is forbidden.
pub fn admit(store: &dyn Store, pod: &Value) -> Result<Verdict, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let Ok(Some(namespace)) = store.get(&format!("namespaces/{ns}")) else {
        return Ok(Verdict::default());
    };
    let labels = &namespace.object["metadata"]["labels"];
    let level = |mode: &str| {
        labels[format!("{LABEL}{mode}")]
            .as_str()
            .and_then(Level::parse)
            .unwrap_or(Level::Privileged)
    };
    let (enforce, warn) = (level("enforce"), level("warn"));
    if enforce > Level::Privileged {
        let broken = violations(pod, enforce);
        if !broken.is_empty() {
            return Err(format!(
                "violates PodSecurity \"{}:latest\": {}",
                enforce.name(),
                broken.join(", ")
            ));
        }
    }
    let would_violate = |level: Level| {
        if level == Level::Privileged {
            return None;
        }
        let broken = violations(pod, level);
        (!broken.is_empty()).then(|| {
            format!(
                "would violate PodSecurity \"{}:latest\": {}",
                level.name(),
                broken.join(", ")
            )
        })
    };
    Ok(Verdict {
        warnings: would_violate(warn).into_iter().collect(),
        audit_annotations: would_violate(level("audit"))
            .map(|v| (format!("{LABEL}audit-violations"), v))
            .into_iter()
            .collect(),
    })
}

/// Every check of `level` the pod fails, as `name (details)`, in upstream's order.
fn violations(pod: &Value, level: Level) -> Vec<String> {
    let spec = &pod["spec"];
    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| spec[*f].as_array().into_iter().flatten())
        .collect();
    let sc = |c: &Value, field: &str| c["securityContext"][field].clone();
    let mut out = Vec::new();
    let mut check = |name: &str, details: Option<String>| {
        if let Some(d) = details {
            out.push(if d.is_empty() {
                name.to_string()
            } else {
                format!("{name} ({d})")
            });
        }
    };

    // Baseline.
    let added = added_capabilities(&containers, |cap| DEFAULT_CAPABILITIES.contains(&cap));
    check(
        "non-default capabilities",
        (!added.is_empty()).then(|| added.join("; ")),
    );
    let hosts: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    check(
        "host namespaces",
        (!hosts.is_empty()).then(|| hosts.join(", ")),
    );
    let volumes: Vec<&Value> = spec["volumes"].as_array().into_iter().flatten().collect();
    let host_paths: Vec<&Value> = volumes
        .iter()
        .copied()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .collect();
    check(
        "hostPath volumes",
        (!host_paths.is_empty()).then(|| names("volume", &host_paths)),
    );
    let mut port_users = Vec::new();
    let mut ports = Vec::new();
    for c in &containers {
        let used: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64())
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            port_users.push(*c);
            ports.extend(used);
        }
    }
    check(
        "hostPort",
        (!port_users.is_empty()).then(|| {
            let (verb, noun) = if port_users.len() == 1 {
                (
                    "uses",
                    if ports.len() == 1 {
                        "hostPort"
                    } else {
                        "hostPorts"
                    },
                )
            } else {
                ("use", "hostPorts")
            };
            format!(
                "{} {verb} {noun} {}",
                names("container", &port_users),
                ports.join(", ")
            )
        }),
    );
    let privileged: Vec<&Value> = that(&containers, |c| sc(c, "privileged") == true);
    check(
        "privileged",
        (!privileged.is_empty()).then(|| {
            format!(
                "{} must not set securityContext.privileged=true",
                names("container", &privileged)
            )
        }),
    );
    let unmasked: Vec<&Value> = that(&containers, |c| {
        sc(c, "procMount").as_str().is_some_and(|m| m != "Default")
    });
    check(
        "procMount",
        (!unmasked.is_empty()).then(|| {
            format!(
                "{} must not set securityContext.procMount to \"Unmasked\"",
                names("container", &unmasked)
            )
        }),
    );
    let unconfined = |v: &Value| v["seccompProfile"]["type"] == "Unconfined";
    let pod_unconfined = unconfined(&spec["securityContext"]);
    let unconfined_containers: Vec<&Value> =
        that(&containers, |c| unconfined(&c["securityContext"]));
    if pod_unconfined || !unconfined_containers.is_empty() {
        let who = match (pod_unconfined, unconfined_containers.is_empty()) {
            (true, true) => "pod".to_string(),
            (true, false) => format!("pod and {}", names("container", &unconfined_containers)),
            _ => names("container", &unconfined_containers),
        };
        check(
            "seccompProfile",
            Some(format!(
                "{who} must not set securityContext.seccompProfile.type to \"Unconfined\""
            )),
        );
    }
    let sysctls: Vec<&str> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|s| !SAFE_SYSCTLS.contains(s))
        .collect();
    check(
        "forbidden sysctls",
        (!sysctls.is_empty()).then(|| sysctls.join(", ")),
    );
    if level < Level::Restricted {
        return out;
    }

    // Restricted.
    let escalating: Vec<&Value> = that(&containers, |c| sc(c, "allowPrivilegeEscalation") != false);
    check(
        "allowPrivilegeEscalation != false",
        (!escalating.is_empty()).then(|| {
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                names("container", &escalating)
            )
        }),
    );
    let not_dropping: Vec<&Value> = that(&containers, |c| {
        !sc(c, "capabilities")["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL")
    });
    let mut unrestricted = Vec::new();
    if !not_dropping.is_empty() {
        unrestricted.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            names("container", &not_dropping)
        ));
    }
    unrestricted.extend(added_capabilities(&containers, |cap| {
        cap == "NET_BIND_SERVICE"
    }));
    check(
        "unrestricted capabilities",
        (!unrestricted.is_empty()).then(|| unrestricted.join("; ")),
    );
    let restricted: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            let kind = v
                .as_object()?
                .iter()
                .find(|(k, val)| *k != "name" && !val.is_null())
                .map(|(k, _)| k.as_str())?;
            (!RESTRICTED_VOLUMES.contains(&kind)).then(|| {
                format!(
                    "volume {:?} uses restricted volume type {kind:?}",
                    v["name"].as_str().unwrap_or_default()
                )
            })
        })
        .collect();
    check(
        "restricted volume types",
        (!restricted.is_empty()).then(|| restricted.join(", ")),
    );
    let pod_non_root = &spec["securityContext"]["runAsNonRoot"];
    if *pod_non_root == false {
        check(
            "runAsNonRoot != true",
            Some("pod must not set securityContext.runAsNonRoot=false".into()),
        );
    } else {
        let root: Vec<&Value> = that(&containers, |c| {
            let own = sc(c, "runAsNonRoot");
            own == false || (own.is_null() && *pod_non_root != true)
        });
        check(
            "runAsNonRoot != true",
            (!root.is_empty()).then(|| {
                format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    names("container", &root)
                )
            }),
        );
    }
    let pod_root = spec["securityContext"]["runAsUser"] == 0;
    let root_users: Vec<&Value> = that(&containers, |c| sc(c, "runAsUser") == 0);
    if pod_root || !root_users.is_empty() {
        let who = match (pod_root, root_users.is_empty()) {
            (true, true) => "pod".to_string(),
            (true, false) => format!("pod and {}", names("container", &root_users)),
            _ => names("container", &root_users),
        };
        check(
            "runAsUser=0",
            Some(format!("{who} must not set runAsUser=0")),
        );
    }
    let confined = |v: &Value| {
        matches!(
            v["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_confined = confined(&spec["securityContext"]);
    let unset: Vec<&Value> = that(&containers, |c| {
        // A container's own profile, else the pod's, must confine it.
        let own = &c["securityContext"]["seccompProfile"];
        let inherits = own.is_null() && pod_confined;
        !(confined(&c["securityContext"]) || inherits)
    });
    check(
        "seccompProfile",
        (!unset.is_empty()).then(|| {
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                names("container", &unset)
            )
        }),
    );
    out
}

/// The containers for which `pred` holds, in order.
fn that<'a>(containers: &[&'a Value], pred: impl Fn(&&'a Value) -> bool) -> Vec<&'a Value> {
    containers.iter().copied().filter(pred).collect()
}

/// `container "c" must not include "X", "Y" in securityContext.capabilities.add` for
/// each container adding capabilities that `allowed` refuses.
fn added_capabilities(containers: &[&Value], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    containers
        .iter()
        .filter_map(|c| {
            let extra: Vec<String> = c["securityContext"]["capabilities"]["add"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|cap| !allowed(cap))
                .map(|cap| format!("{cap:?}"))
                .collect();
            (!extra.is_empty()).then(|| {
                format!(
                    "{} must not include {} in securityContext.capabilities.add",
                    names("container", &[c]),
                    extra.join(", ")
                )
            })
        })
        .collect()
}

/// `container "a"` or `containers "a", "b"`.
fn names(noun: &str, objects: &[&Value]) -> String {
    let quoted: Vec<String> = objects
        .iter()
        .map(|o| format!("{:?}", o["name"].as_str().unwrap_or_default()))
        .collect();
    let plural = if quoted.len() == 1 { "" } else { "s" };
    format!("{noun}{plural} {}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restricted_should_list_what_a_plain_pod_lacks_as_upstream() {
        let pod = json!({"spec": {"containers": [{"name": "app"}]}});
        assert!(violations(&pod, Level::Baseline).is_empty());
        assert_eq!(
            violations(&pod, Level::Restricted).join(", "),
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let hardened = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        }});
        assert!(violations(&hardened, Level::Restricted).is_empty());
    }

    #[test]
    fn baseline_should_name_host_access_and_privilege() {
        let pod = json!({"spec": {
            "hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [
                {"name": "a", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}}},
                {"name": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]},
            ],
        }});
        assert_eq!(
            violations(&pod, Level::Baseline).join(", "),
            "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"h\"), hostPort (container \"b\" uses hostPort 8080), privileged (container \"a\" must not set securityContext.privileged=true)"
        );
    }
}
