//! Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`, aggregated v2), derived from the resource catalog.

use kubernel_api::resources::{group_versions, Resource, RESOURCES};
use serde_json::{json, Map, Value};

/// `Content-Type` of an aggregated discovery (`APIGroupDiscoveryList`) response.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The Kubernetes version served: kubectl's version dispatcher picks `kubectl.1.<minor>` from it.
const MAJOR: &str = "1";
const MINOR: &str = "33";
const GIT_VERSION: &str = "v1.33.0-kubernel";

/// Go's name for the running OS (`GOOS`).
fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    }
}

/// Go's name for the running architecture (`GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        arch => arch,
    }
}

/// `/version`: a `version.Info` whose fields are all strings (the Python client requires it).
pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "emulationMajor": MAJOR,
        "emulationMinor": MINOR,
        "minCompatibilityMajor": MAJOR,
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("KUBERNEL_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": option_env!("KUBERNEL_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": kubernel_sdk::abi::BUILD_RUSTC,
        "compiler": "rustc",
        "platform": format!("{}/{}", go_os(), go_arch()),
    })
}

/// `/api`: the legacy core group's versions.
pub fn api_versions() -> Value {
    let versions: Vec<&str> = group_versions()
        .into_iter()
        .filter(|(g, _)| g.is_empty())
        .map(|(_, v)| v)
        .collect();
    json!({"kind": "APIVersions", "versions": versions, "serverAddressByClientCIDRs": []})
}

/// The `APIGroup` of a named group, if it serves any version.
fn group_json(group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({"name": group, "versions": versions, "preferredVersion": preferred}))
}

/// The named groups (not core), in `group_versions` order.
fn named_groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// `/apis`: an `APIGroupList` of every named group.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = named_groups().into_iter().filter_map(group_json).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: the group's `APIGroup`, or `None` when it is not served.
pub fn api_group(group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let mut g = group_json(group)?;
    if let Some(m) = g.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    Some(g)
}

/// The resources of one group-version, sorted by plural.
fn resources_of(group: &str, version: &str) -> Vec<&'static Resource> {
    let mut out: Vec<&'static Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    out.sort_by_key(|r| r.plural);
    out
}

/// `"Namespaced"` or `"Cluster"`.
fn scope(r: &Resource) -> &'static str {
    if r.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// Inserts a string list unless it is empty (`omitempty`).
fn insert_list(m: &mut Map<String, Value>, key: &str, items: &[&str]) {
    if !items.is_empty() {
        m.insert(key.into(), json!(items));
    }
}

/// `/api/v1` or `/apis/<g>/<v>`: an `APIResourceList`, subresources as `pods/status` entries.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources = resources_of(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut entries: Vec<(String, Value)> = Vec::new();
    for r in resources {
        let mut m = Map::new();
        m.insert("name".into(), json!(r.plural));
        m.insert("singularName".into(), json!(r.singular));
        m.insert("namespaced".into(), json!(r.namespaced));
        m.insert("kind".into(), json!(r.kind));
        m.insert("verbs".into(), json!(r.verbs));
        insert_list(&mut m, "shortNames", r.short_names);
        insert_list(&mut m, "categories", r.categories);
        entries.push((r.plural.to_string(), Value::Object(m)));
        for s in r.subresources {
            let name = format!("{}/{}", r.plural, s.name);
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("singularName".into(), json!(""));
            m.insert("namespaced".into(), json!(r.namespaced));
            if (s.group, s.version) != (r.group, r.version) {
                m.insert("group".into(), json!(s.group));
                m.insert("version".into(), json!(s.version));
            }
            m.insert("kind".into(), json!(s.kind));
            m.insert("verbs".into(), json!(s.verbs));
            entries.push((name, Value::Object(m)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    }))
}

/// One `APIResourceDiscovery` of aggregated discovery.
fn aggregated_resource(r: &Resource) -> Value {
    let mut m = Map::new();
    m.insert("resource".into(), json!(r.plural));
    m.insert(
        "responseKind".into(),
        json!({"group": r.group, "version": r.version, "kind": r.kind}),
    );
    m.insert("scope".into(), json!(scope(r)));
    m.insert("singularResource".into(), json!(r.singular));
    m.insert("verbs".into(), json!(r.verbs));
    insert_list(&mut m, "shortNames", r.short_names);
    insert_list(&mut m, "categories", r.categories);
    let mut subs: Vec<_> = r.subresources.iter().collect();
    subs.sort_by_key(|s| s.name);
    let subs: Vec<Value> = subs
        .into_iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": s.verbs,
            })
        })
        .collect();
    if !subs.is_empty() {
        m.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(m)
}

/// One `APIGroupDiscovery`: the group's versions in preference order.
fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| {
            let resources: Vec<Value> = resources_of(g, v)
                .into_iter()
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group}, "versions": versions})
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`): for `/api` when
/// `legacy` (one item named `""`), else for `/apis` (one item per named group).
pub fn aggregated(legacy: bool) -> Value {
    let items: Vec<Value> = if legacy {
        vec![aggregated_group("")]
    } else {
        named_groups().into_iter().map(aggregated_group).collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Whether an `Accept` header asks for aggregated discovery v2 before any plain JSON.
///
/// Media ranges are taken in order: a `v=v2;as=APIGroupDiscoveryList` range wins, a plain
/// JSON (or wildcard) range loses, anything else (v2beta1, protobuf) is skipped.
pub fn wants_aggregated(accept: &str) -> bool {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        let params: Vec<&str> = parts.filter(|p| !p.starts_with("q=")).collect();
        if !matches!(base, "application/json" | "application/*" | "*/*") {
            continue;
        }
        if !params.iter().any(|p| p.starts_with("as=")) {
            return false;
        }
        let has = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
        if has("as=APIGroupDiscoveryList")
            && has("v=v2")
            && params
                .iter()
                .all(|p| !p.starts_with("g=") || *p == "g=apidiscovery.k8s.io")
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn version_should_report_1_33_with_string_fields() {
        let v = version();
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "33");
        for field in [
            "buildDate",
            "compiler",
            "gitCommit",
            "gitTreeState",
            "gitVersion",
            "goVersion",
            "major",
            "minor",
            "platform",
        ] {
            assert!(v[field].is_string(), "{field} is not a string");
        }
        assert!(v["platform"].as_str().is_some_and(|p| p.contains('/')));
    }

    #[test]
    fn api_versions_should_list_v1_and_empty_cidrs() {
        assert_eq!(
            api_versions(),
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        );
    }

    #[test]
    fn api_group_list_should_list_named_groups_with_preferred_versions() {
        let list = api_group_list();
        assert_eq!(list["kind"], "APIGroupList");
        let groups = list["groups"].as_array().expect("groups");
        assert!(groups.iter().all(|g| g["name"] != ""));
        let apps = groups.iter().find(|g| g["name"] == "apps").expect("apps");
        assert_eq!(
            apps["versions"],
            json!([{"groupVersion": "apps/v1", "version": "v1"}])
        );
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        assert_eq!(
            api_group("rbac.authorization.k8s.io").expect("rbac")["kind"],
            "APIGroup"
        );
        assert!(api_group("metrics.k8s.io").is_none());
        assert!(api_group("").is_none());
    }

    #[test]
    fn resource_list_should_have_what_the_python_client_requires() {
        for (g, v) in group_versions() {
            let list = resource_list(g, v).expect("served group-version");
            assert_eq!(list["kind"], "APIResourceList");
            assert!(list["groupVersion"].is_string());
            for r in list["resources"].as_array().expect("resources") {
                assert!(
                    r["name"].is_string() && r["singularName"].is_string() && r["kind"].is_string(),
                    "{r}"
                );
                assert!(r["namespaced"].is_boolean() && r["verbs"].is_array(), "{r}");
            }
        }
        assert!(resource_list("apps", "v1beta1").is_none());
    }

    #[test]
    fn resource_list_should_advertise_pod_eviction_for_kubectl_drain() {
        let core = resource_list("", "v1").expect("core");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(
            entry(&core, "pods/eviction"),
            &json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
        );
        let pods = entry(&core, "pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(entry(&core, "pods/status")["kind"], "Pod");
        assert!(entry(&core, "pods/status").get("group").is_none());
        assert!(entry(&core, "secrets").get("shortNames").is_none());
        assert_eq!(entry(&core, "namespaces")["namespaced"], false);
        let apps = resource_list("apps", "v1").expect("apps");
        assert_eq!(entry(&apps, "deployments/scale")["group"], "autoscaling");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn aggregated_should_have_the_v2_shape() {
        let legacy = aggregated(true);
        assert_eq!(legacy["kind"], "APIGroupDiscoveryList");
        assert_eq!(legacy["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = legacy["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let v1 = &items[0]["versions"][0];
        assert_eq!(
            (v1["version"].as_str(), v1["freshness"].as_str()),
            (Some("v1"), Some("Current"))
        );
        let pods = v1["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "pods"))
            .expect("pods");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        let eviction = pods["subresources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["subresource"] == "eviction"))
            .expect("eviction");
        assert_eq!(
            eviction,
            &json!({"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"}, "verbs": ["create"]})
        );

        let apis = aggregated(false);
        let names: Vec<&str> = apis["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        assert!(names.contains(&"apps") && names.contains(&"policy") && !names.contains(&""));
        let nodes = v1["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "nodes"))
            .expect("nodes");
        assert_eq!(nodes["scope"], "Cluster");
    }

    #[test]
    fn wants_aggregated_should_follow_the_accept_order() {
        assert!(wants_aggregated(KUBECTL_ACCEPT));
        assert!(wants_aggregated(
            "application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io"
        ));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated(""));
        assert!(!wants_aggregated("application/json;charset=utf-8,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"));
        assert!(!wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated(
            "application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(wants_aggregated(
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
    }
}
