//! Pod spec validation (`ValidatePodSpec`): containers, ports, resources, volumes, policies, tolerations.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::meta::validate_labels;
use super::names::{
    dns1123_label, dns1123_subdomain, inclusive_range_error, label_value, port_name, port_num,
    qualified_name,
};
use super::resources::validate_resources;
use super::{child, index};
use crate::status::Cause;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
/// Supported port protocols, sorted as upstream lists them.
pub(super) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// Taint and toleration effects.
pub(super) const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A string field, `""` when absent or not a string.
pub(super) fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// A list field, empty when absent or not a list.
pub(super) fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A required enum field: `Required value` when empty, `Unsupported value` when not in `supported`.
pub(super) fn one_of(
    v: &Value,
    field: &str,
    path: &str,
    supported: &[&str],
    causes: &mut Vec<Cause>,
) {
    match v.get(field).and_then(Value::as_str).unwrap_or("") {
        "" => causes.push(Cause::required(child(path, field))),
        s if supported.contains(&s) => {}
        s => causes.push(Cause::not_supported(
            child(path, field),
            &json!(s),
            supported,
        )),
    }
}

/// A Pod on create: its spec, and what may only be set later.
pub(super) fn validate_pod_create(object: &Value, causes: &mut Vec<Cause>) {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, "spec", causes);
    if !list(spec.get("ephemeralContainers")).is_empty() {
        causes.push(Cause::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    if !str_of(spec, "nodeName").is_empty() && !list(spec.get("schedulingGates")).is_empty() {
        causes.push(Cause::forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
}

/// `ValidatePodSpec` of a pod or pod template at `path`.
pub(super) fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let volumes = validate_volumes(spec.get("volumes"), &child(path, "volumes"), causes);
    let mut names = BTreeSet::new();
    validate_containers(
        spec.get("containers"),
        &child(path, "containers"),
        true,
        &volumes,
        &mut names,
        causes,
    );
    validate_containers(
        spec.get("initContainers"),
        &child(path, "initContainers"),
        false,
        &volumes,
        &mut names,
        causes,
    );
    one_of(spec, "restartPolicy", path, RESTART_POLICIES, causes);
    one_of(spec, "dnsPolicy", path, DNS_POLICIES, causes);
    validate_labels(
        spec.get("nodeSelector"),
        &child(path, "nodeSelector"),
        causes,
    );
    for (field, check) in [
        (
            "serviceAccountName",
            dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", dns1123_subdomain),
        ("hostname", dns1123_label),
        ("subdomain", dns1123_label),
    ] {
        let value = str_of(spec, field);
        if !value.is_empty() {
            for msg in check(value) {
                causes.push(Cause::invalid(child(path, field), &json!(value), &msg));
            }
        }
    }
    if let Some(d) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            causes.push(Cause::invalid(
                child(path, "activeDeadlineSeconds"),
                &json!(d),
                &inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    validate_tolerations(spec.get("tolerations"), &child(path, "tolerations"), causes);
}

/// `ValidateVolumes`: the names of the valid volumes.
fn validate_volumes(
    volumes: Option<&Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, vol) in list(volumes).iter().enumerate() {
        let p = index(path, i);
        let mut errs = Vec::new();
        let sources: Vec<&String> = vol
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| *k != "name" && !v.is_null())
            .map(|(k, _)| k)
            .collect();
        match sources.as_slice() {
            [] => errs.push(Cause::required_because(
                p.clone(),
                "must specify a volume type",
            )),
            [_, extra @ ..] => {
                for k in extra {
                    errs.push(Cause::forbidden(
                        child(&p, k),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        for (source, field) in [
            ("configMap", "name"),
            ("secret", "secretName"),
            ("persistentVolumeClaim", "claimName"),
            ("hostPath", "path"),
        ] {
            if let Some(s) = vol.get(source).filter(|s| s.is_object()) {
                if str_of(s, field).is_empty() {
                    errs.push(Cause::required(child(&child(&p, source), field)));
                }
            }
        }
        let name = str_of(vol, "name");
        if name.is_empty() {
            errs.push(Cause::required(child(&p, "name")));
        } else {
            errs.extend(
                dns1123_label(name)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "name"), &json!(name), m)),
            );
        }
        if names.contains(name) {
            errs.push(Cause::duplicate(child(&p, "name"), &json!(name)));
        }
        if errs.is_empty() {
            names.insert(name.to_string());
        }
        causes.extend(errs);
    }
    names
}

/// `validateContainers` / `validateInitContainers`: names unique across both lists, images, ports, mounts, policies, resources.
fn validate_containers(
    containers: Option<&Value>,
    path: &str,
    required: bool,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    causes: &mut Vec<Cause>,
) {
    let items = list(containers);
    if required && items.is_empty() {
        causes.push(Cause::required(path));
    }
    for (i, c) in items.iter().enumerate() {
        let p = index(path, i);
        let name = str_of(c, "name");
        if name.is_empty() {
            causes.push(Cause::required(child(&p, "name")));
        } else {
            for msg in dns1123_label(name) {
                causes.push(Cause::invalid(child(&p, "name"), &json!(name), &msg));
            }
        }
        if !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(child(&p, "name"), &json!(name)));
        }
        if str_of(c, "image").is_empty() {
            causes.push(Cause::required(child(&p, "image")));
        }
        validate_container_ports(c.get("ports"), &child(&p, "ports"), causes);
        for (j, env) in list(c.get("env")).iter().enumerate() {
            if str_of(env, "name").is_empty() {
                causes.push(Cause::required(child(&index(&child(&p, "env"), j), "name")));
            }
        }
        validate_volume_mounts(
            c.get("volumeMounts"),
            &child(&p, "volumeMounts"),
            volumes,
            causes,
        );
        one_of(c, "imagePullPolicy", &p, PULL_POLICIES, causes);
        one_of(c, "terminationMessagePolicy", &p, MESSAGE_POLICIES, causes);
        validate_resources(c.get("resources"), &child(&p, "resources"), causes);
    }
}

/// Mounts name a valid volume and have a unique mount path.
fn validate_volume_mounts(
    mounts: Option<&Value>,
    path: &str,
    volumes: &BTreeSet<String>,
    causes: &mut Vec<Cause>,
) {
    let mut mount_paths = BTreeSet::new();
    for (i, m) in list(mounts).iter().enumerate() {
        let p = index(path, i);
        let name = str_of(m, "name");
        if name.is_empty() {
            causes.push(Cause::required(child(&p, "name")));
        }
        if !volumes.contains(name) {
            causes.push(Cause::not_found(child(&p, "name"), &json!(name)));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            causes.push(Cause::required(child(&p, "mountPath")));
        } else if !mount_paths.insert(mount_path) {
            causes.push(Cause::invalid(
                child(&p, "mountPath"),
                &json!(mount_path),
                "must be unique",
            ));
        }
    }
}

/// `validateContainerPorts`.
fn validate_container_ports(ports: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let mut names = BTreeSet::new();
    for (i, port) in list(ports).iter().enumerate() {
        let p = index(path, i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let errs = port_name(name);
            if !errs.is_empty() {
                causes.extend(
                    errs.iter()
                        .map(|m| Cause::invalid(child(&p, "name"), &json!(name), m)),
                );
            } else if !names.insert(name) {
                causes.push(Cause::duplicate(child(&p, "name"), &json!(name)));
            }
        }
        match port
            .get("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
        {
            0 => causes.push(Cause::required(child(&p, "containerPort"))),
            n => causes.extend(
                port_num(n)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "containerPort"), &json!(n), m)),
            ),
        }
        match port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) {
            0 => {}
            n => causes.extend(
                port_num(n)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "hostPort"), &json!(n), m)),
            ),
        }
        one_of(port, "protocol", &p, PROTOCOLS, causes);
    }
}

/// `ValidateTolerations`.
pub(super) fn validate_tolerations(
    tolerations: Option<&Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    for (i, t) in list(tolerations).iter().enumerate() {
        let p = index(path, i);
        let (key, operator, value, effect) = (
            str_of(t, "key"),
            str_of(t, "operator"),
            str_of(t, "value"),
            str_of(t, "effect"),
        );
        if !key.is_empty() {
            causes.extend(
                qualified_name(key)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "key"), &json!(key), m)),
            );
        }
        if key.is_empty() && operator != "Exists" {
            causes.push(Cause::invalid(
                child(&p, "operator"),
                &json!(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.get("tolerationSeconds").is_some_and(|s| !s.is_null()) && effect != "NoExecute" {
            causes.push(Cause::invalid(
                child(&p, "effect"),
                &json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let errs = label_value(value);
                if !errs.is_empty() {
                    causes.push(Cause::invalid(
                        child(&p, "operator"),
                        &json!(value),
                        &errs.join(";"),
                    ));
                }
            }
            "Exists" if !value.is_empty() => {
                causes.push(Cause::invalid(
                    child(&p, "operator"),
                    t,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
            "Exists" => {}
            other => causes.push(Cause::not_supported(
                child(&p, "operator"),
                &json!(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            causes.push(Cause::not_supported(
                child(&p, "effect"),
                &json!(effect),
                TAINT_EFFECTS,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate_pod_create(&json!({"spec": spec}), &mut causes);
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn container(extra: Value) -> Value {
        let mut c = json!({"name": "web", "image": "nginx", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        c
    }

    fn spec(containers: Value) -> Value {
        json!({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "containers": containers})
    }

    #[test]
    fn pods_should_need_a_container() {
        assert_eq!(
            texts(spec(json!([]))),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn a_valid_pod_should_pass() {
        let c = container(
            json!({"ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}}}),
        );
        assert!(texts(spec(json!([c]))).is_empty());
    }

    #[test]
    fn containers_should_need_unique_dns_label_names_and_an_image() {
        let got = texts(spec(json!([
            container(json!({"name": "Web_1", "image": ""})),
            container(json!({})),
            container(json!({}))
        ])));
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with(
            "spec.containers[0].name: Invalid value: \"Web_1\": a lowercase RFC 1123 label"
        ));
        assert_eq!(got[1], "spec.containers[0].image: Required value");
        assert_eq!(got[2], "spec.containers[2].name: Duplicate value: \"web\"");
    }

    #[test]
    fn ports_should_be_in_range_with_supported_protocols() {
        let c = container(
            json!({"ports": [{"containerPort": 70000, "protocol": "HTTP"}, {"containerPort": 0, "protocol": "TCP"}]}),
        );
        assert_eq!(
            texts(spec(json!([c]))),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[1].containerPort: Required value",
            ]
        );
    }

    #[test]
    fn restart_policy_should_be_supported() {
        let mut s = spec(json!([container(json!({}))]));
        s["restartPolicy"] = json!("Sometimes");
        assert_eq!(texts(s), vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]);
    }

    #[test]
    fn volume_mounts_should_name_existing_volumes() {
        let mut s = spec(json!([container(
            json!({"volumeMounts": [{"name": "data", "mountPath": "/d"}]})
        )]));
        s["volumes"] = json!([{"name": "cfg", "configMap": {"name": "c"}}, {"name": "x"}]);
        assert_eq!(
            texts(s),
            vec![
                "spec.volumes[1]: Required value: must specify a volume type",
                "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            ]
        );
    }

    #[test]
    fn tolerations_should_follow_upstream_rules() {
        let mut s = spec(json!([container(json!({}))]));
        s["tolerations"] = json!([{"operator": "Equal", "value": "x"}, {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]);
        assert_eq!(
            texts(s),
            vec![
                "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.tolerations[1].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            ]
        );
    }

    #[test]
    fn create_should_forbid_ephemeral_containers_and_gated_binding() {
        let mut s = spec(json!([container(json!({}))]));
        s["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
        s["nodeName"] = json!("node-1");
        s["schedulingGates"] = json!([{"name": "wait"}]);
        assert_eq!(
            texts(s),
            vec![
                "spec.ephemeralContainers: Forbidden: cannot be set on create",
                "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared",
            ]
        );
    }
}
