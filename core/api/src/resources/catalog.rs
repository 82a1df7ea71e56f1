//! The catalog of served resources, with the names, verbs and subresources of a v1.33 kube-apiserver.

use super::table::columns;
use super::{Column, Resource, Subresource, ALL_VERBS};

/// Verbs of `status` and `scale` subresources.
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// Verbs of namespaces: everything but `deletecollection`.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The `status` subresource of a kind.
const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: GET_PATCH_UPDATE,
    }
}

/// The `scale` subresource (`autoscaling/v1` `Scale`).
const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: GET_PATCH_UPDATE,
};

/// A resource entry; `list_kind` is `<kind>List`, spelled out because consts cannot concatenate.
#[allow(clippy::too_many_arguments)]
const fn entry(
    group: &'static str,
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    columns: &'static [Column],
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        list_kind,
        plural,
        singular,
        short_names,
        categories: &[],
        namespaced,
        verbs: ALL_VERBS,
        subresources: &[],
        columns,
    }
}

/// Every served resource, core first; all are `v1` of their group.
pub static RESOURCES: &[Resource] = &[
    // core/v1
    Resource {
        verbs: NAMESPACE_VERBS,
        subresources: &[
            status("", "v1", "Namespace"),
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
        ],
        ..entry(
            "",
            "Namespace",
            "NamespaceList",
            "namespaces",
            "namespace",
            &["ns"],
            false,
            columns::NAMESPACE,
        )
    },
    Resource {
        categories: &["all"],
        subresources: &[
            status("", "v1", "Pod"),
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: &["create"],
            },
        ],
        ..entry(
            "",
            "Pod",
            "PodList",
            "pods",
            "pod",
            &["po"],
            true,
            columns::POD,
        )
    },
    Resource {
        subresources: &[status("", "v1", "Node")],
        ..entry(
            "",
            "Node",
            "NodeList",
            "nodes",
            "node",
            &["no"],
            false,
            columns::NODE,
        )
    },
    Resource {
        categories: &["all"],
        subresources: &[status("", "v1", "Service")],
        ..entry(
            "",
            "Service",
            "ServiceList",
            "services",
            "service",
            &["svc"],
            true,
            columns::SERVICE,
        )
    },
    entry(
        "",
        "Endpoints",
        "EndpointsList",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        columns::ENDPOINTS,
    ),
    entry(
        "",
        "ConfigMap",
        "ConfigMapList",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        columns::CONFIG_MAP,
    ),
    entry(
        "",
        "Secret",
        "SecretList",
        "secrets",
        "secret",
        &[],
        true,
        columns::SECRET,
    ),
    Resource {
        subresources: &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
        ..entry(
            "",
            "ServiceAccount",
            "ServiceAccountList",
            "serviceaccounts",
            "serviceaccount",
            &["sa"],
            true,
            columns::SERVICE_ACCOUNT,
        )
    },
    entry(
        "",
        "Event",
        "EventList",
        "events",
        "event",
        &["ev"],
        true,
        columns::EVENT,
    ),
    Resource {
        subresources: &[status("", "v1", "ResourceQuota")],
        ..entry(
            "",
            "ResourceQuota",
            "ResourceQuotaList",
            "resourcequotas",
            "resourcequota",
            &["quota"],
            true,
            columns::RESOURCE_QUOTA,
        )
    },
    entry(
        "",
        "LimitRange",
        "LimitRangeList",
        "limitranges",
        "limitrange",
        &["limits"],
        true,
        columns::DEFAULT,
    ),
    // apps/v1
    Resource {
        categories: &["all"],
        subresources: &[status("apps", "v1", "Deployment"), SCALE],
        ..entry(
            "apps",
            "Deployment",
            "DeploymentList",
            "deployments",
            "deployment",
            &["deploy"],
            true,
            columns::DEPLOYMENT,
        )
    },
    Resource {
        categories: &["all"],
        subresources: &[status("apps", "v1", "ReplicaSet"), SCALE],
        ..entry(
            "apps",
            "ReplicaSet",
            "ReplicaSetList",
            "replicasets",
            "replicaset",
            &["rs"],
            true,
            columns::REPLICA_SET,
        )
    },
    Resource {
        categories: &["all"],
        subresources: &[status("apps", "v1", "DaemonSet")],
        ..entry(
            "apps",
            "DaemonSet",
            "DaemonSetList",
            "daemonsets",
            "daemonset",
            &["ds"],
            true,
            columns::DAEMON_SET,
        )
    },
    Resource {
        categories: &["all"],
        subresources: &[status("apps", "v1", "StatefulSet"), SCALE],
        ..entry(
            "apps",
            "StatefulSet",
            "StatefulSetList",
            "statefulsets",
            "statefulset",
            &["sts"],
            true,
            columns::STATEFUL_SET,
        )
    },
    // batch/v1
    Resource {
        categories: &["all"],
        subresources: &[status("batch", "v1", "Job")],
        ..entry(
            "batch",
            "Job",
            "JobList",
            "jobs",
            "job",
            &[],
            true,
            columns::JOB,
        )
    },
    // coordination.k8s.io/v1
    entry(
        "coordination.k8s.io",
        "Lease",
        "LeaseList",
        "leases",
        "lease",
        &[],
        true,
        columns::LEASE,
    ),
    // discovery.k8s.io/v1
    entry(
        "discovery.k8s.io",
        "EndpointSlice",
        "EndpointSliceList",
        "endpointslices",
        "endpointslice",
        &[],
        true,
        columns::ENDPOINT_SLICE,
    ),
    // events.k8s.io/v1 (upstream also lists the short name `ev` here; kept unique to the core group)
    entry(
        "events.k8s.io",
        "Event",
        "EventList",
        "events",
        "event",
        &[],
        true,
        columns::EVENT,
    ),
    // policy/v1
    Resource {
        subresources: &[status("policy", "v1", "PodDisruptionBudget")],
        ..entry(
            "policy",
            "PodDisruptionBudget",
            "PodDisruptionBudgetList",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            &["pdb"],
            true,
            columns::POD_DISRUPTION_BUDGET,
        )
    },
    // certificates.k8s.io/v1
    Resource {
        subresources: &[
            status("certificates.k8s.io", "v1", "CertificateSigningRequest"),
            Subresource {
                name: "approval",
                group: "certificates.k8s.io",
                version: "v1",
                kind: "CertificateSigningRequest",
                verbs: GET_PATCH_UPDATE,
            },
        ],
        ..entry(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            "CertificateSigningRequestList",
            "certificatesigningrequests",
            "certificatesigningrequest",
            &["csr"],
            false,
            columns::CERTIFICATE_SIGNING_REQUEST,
        )
    },
    // scheduling.k8s.io/v1
    entry(
        "scheduling.k8s.io",
        "PriorityClass",
        "PriorityClassList",
        "priorityclasses",
        "priorityclass",
        &["pc"],
        false,
        columns::PRIORITY_CLASS,
    ),
    // rbac.authorization.k8s.io/v1
    entry(
        "rbac.authorization.k8s.io",
        "Role",
        "RoleList",
        "roles",
        "role",
        &[],
        true,
        columns::DEFAULT,
    ),
    entry(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "RoleBindingList",
        "rolebindings",
        "rolebinding",
        &[],
        true,
        columns::ROLE_BINDING,
    ),
    entry(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "ClusterRoleList",
        "clusterroles",
        "clusterrole",
        &[],
        false,
        columns::DEFAULT,
    ),
    entry(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "clusterrolebindings",
        "clusterrolebinding",
        &[],
        false,
        columns::CLUSTER_ROLE_BINDING,
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::resources::{find, find_kind, group_versions};

    #[test]
    fn catalog_should_have_unique_plurals_per_group_version() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "duplicate {}",
                r.qualified_plural()
            );
        }
    }

    #[test]
    fn catalog_should_have_unique_kinds_per_group_version() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            assert!(
                seen.insert((r.group, r.version, r.kind)),
                "duplicate kind {} in {}",
                r.kind,
                r.api_version()
            );
            assert_eq!(r.list_kind, format!("{}List", r.kind));
        }
    }

    #[test]
    fn catalog_should_have_unique_short_names() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            for s in r.short_names {
                assert!(seen.insert(*s), "short name {s} used twice");
                assert!(
                    !RESOURCES.iter().any(|o| o.plural == *s || o.singular == *s),
                    "short name {s} shadows a resource"
                );
            }
        }
    }

    #[test]
    fn catalog_should_give_every_subresource_verbs_and_a_kind() {
        for r in RESOURCES {
            assert!(!r.verbs.is_empty(), "{} has no verbs", r.plural);
            for s in r.subresources {
                assert!(!s.verbs.is_empty(), "{}/{} has no verbs", r.plural, s.name);
                assert!(
                    !s.kind.is_empty() && !s.version.is_empty(),
                    "{}/{} has no kind",
                    r.plural,
                    s.name
                );
                assert!(
                    s.verbs.iter().all(|v| ALL_VERBS.contains(v)),
                    "{}/{} has an unknown verb",
                    r.plural,
                    s.name
                );
            }
        }
    }

    #[test]
    fn catalog_should_sort_verbs_like_upstream() {
        for r in RESOURCES {
            let mut sorted = r.verbs.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, r.verbs, "{}", r.plural);
        }
    }

    #[test]
    fn catalog_should_give_every_resource_a_name_column() {
        for r in RESOURCES {
            assert!(
                r.columns.iter().any(|c| c.format == "name"),
                "{} has no name column",
                r.plural
            );
        }
    }

    #[test]
    fn catalog_should_advertise_pod_eviction_in_the_policy_group() {
        let pods = find("", "v1", "pods").expect("pods");
        let eviction = pods.subresource("eviction").expect("eviction");
        assert_eq!(
            (eviction.group, eviction.version, eviction.kind),
            ("policy", "v1", "Eviction")
        );
        assert_eq!(eviction.verbs, ["create"]);
        let scale = find("apps", "v1", "deployments")
            .and_then(|d| d.subresource("scale"))
            .expect("scale");
        assert_eq!((scale.group, scale.kind), ("autoscaling", "Scale"));
    }

    #[test]
    fn catalog_should_find_kinds_and_list_core_first() {
        assert_eq!(
            find_kind("apps", "v1", "Deployment").map(|r| r.plural),
            Some("deployments")
        );
        let gvs = group_versions();
        assert_eq!(gvs.first(), Some(&("", "v1")));
        assert!(gvs.contains(&("rbac.authorization.k8s.io", "v1")));
        let ns = find("", "v1", "namespaces").expect("namespaces");
        assert!(!ns.namespaced && !ns.verbs.contains(&"deletecollection"));
    }
}
