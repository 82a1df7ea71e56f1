//! The patch schema: a small type graph of built-in Kubernetes types and how each of their fields merges.

// Taken from the Go struct tags (`patchStrategy`, `patchMergeKey`) and the OpenAPI list/map markers
// (`+listMapKey`, `+structType=atomic`, `+mapType=atomic`) of Kubernetes v1.33. Only fields whose
// behaviour differs from the default are listed: maps merge key by key, lists are atomic.

/// How a field merges under a strategic merge patch (the Go `patchStrategy` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// No tag: maps merge key by key, lists are replaced whole.
    Default,
    /// `patchStrategy:"merge"`: elements merge by the key; a list of primitives (no key) is a set.
    Merge(Option<&'static str>),
    /// `patchStrategy:"replace"`: the patch value replaces the map whole.
    Replace,
}

/// One field of a [`TypeDef`] whose merge behaviour is not the default.
#[derive(Debug)]
pub struct Field {
    /// JSON name of the field.
    pub name: &'static str,
    /// Strategic-merge-patch strategy.
    pub strategy: Strategy,
    /// Whether the tag also says `retainKeys` (patch generators emit `$retainKeys` for it).
    pub retain_keys: bool,
    /// Whether server-side apply owns the value as one unit (`+structType=atomic`, `+mapType=atomic`).
    pub atomic: bool,
    /// Key fields server-side apply uses besides the merge key (`+listMapKey`), with their defaults.
    pub extra_keys: &'static [(&'static str, Option<&'static str>)],
    /// Type of the value (a map) or of each element (a list of maps), when it has interesting fields.
    pub ty: Option<&'static TypeDef>,
}

/// A Kubernetes type: its name and the fields that do not merge by default rules.
#[derive(Debug)]
pub struct TypeDef {
    /// Go type name, e.g. `PodSpec`.
    pub name: &'static str,
    /// Fields with non-default behaviour.
    pub fields: &'static [Field],
}

impl TypeDef {
    /// The metadata of field `name`, or `None` when it merges by default rules.
    pub fn field(&'static self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

impl Field {
    /// The merge key, when elements of this list merge by key.
    pub fn merge_key(&self) -> Option<&'static str> {
        match self.strategy {
            Strategy::Merge(key) => key,
            _ => None,
        }
    }
}

const fn nested(name: &'static str, ty: &'static TypeDef) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        retain_keys: false,
        atomic: false,
        extra_keys: &[],
        ty: Some(ty),
    }
}

const fn keyed(name: &'static str, key: &'static str, ty: Option<&'static TypeDef>) -> Field {
    Field {
        name,
        strategy: Strategy::Merge(Some(key)),
        retain_keys: false,
        atomic: false,
        extra_keys: &[],
        ty,
    }
}

const fn set(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Merge(None),
        retain_keys: false,
        atomic: false,
        extra_keys: &[],
        ty: None,
    }
}

const fn atomic(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        retain_keys: false,
        atomic: true,
        extra_keys: &[],
        ty: None,
    }
}

const PROTOCOL: &[(&str, Option<&str>)] = &[("protocol", Some("TCP"))];

static OBJECT_META: TypeDef = TypeDef {
    name: "ObjectMeta",
    fields: &[set("finalizers"), keyed("ownerReferences", "uid", None)],
};

static CONTAINER: TypeDef = TypeDef {
    name: "Container",
    fields: &[
        keyed("env", "name", None),
        Field {
            extra_keys: PROTOCOL,
            ..keyed("ports", "containerPort", None)
        },
        keyed("volumeMounts", "mountPath", None),
        keyed("volumeDevices", "devicePath", None),
    ],
};

static POD_SPEC: TypeDef = TypeDef {
    name: "PodSpec",
    fields: &[
        keyed("containers", "name", Some(&CONTAINER)),
        keyed("initContainers", "name", Some(&CONTAINER)),
        keyed("ephemeralContainers", "name", Some(&CONTAINER)),
        keyed("imagePullSecrets", "name", None),
        Field {
            retain_keys: true,
            ..keyed("volumes", "name", None)
        },
        keyed("hostAliases", "ip", None),
        Field {
            extra_keys: &[("whenUnsatisfiable", None)],
            ..keyed("topologySpreadConstraints", "topologyKey", None)
        },
        keyed("schedulingGates", "name", None),
        Field {
            retain_keys: true,
            ..keyed("resourceClaims", "name", None)
        },
        atomic("nodeSelector"),
    ],
};

static POD_STATUS: TypeDef = TypeDef {
    name: "PodStatus",
    fields: &[
        keyed("conditions", "type", None),
        keyed("podIPs", "ip", None),
        keyed("hostIPs", "ip", None),
        Field {
            retain_keys: true,
            ..keyed("resourceClaimStatuses", "name", None)
        },
    ],
};

static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "PodTemplateSpec",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)],
};

/// A status whose only merging list is `conditions`, keyed by `type`.
static CONDITIONS_STATUS: TypeDef = TypeDef {
    name: "ConditionsStatus",
    fields: &[keyed("conditions", "type", None)],
};

static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    name: "DeploymentSpec",
    fields: &[
        atomic("selector"),
        nested("template", &POD_TEMPLATE_SPEC),
        Field {
            retain_keys: true,
            ..nested("strategy", &EMPTY)
        },
    ],
};

/// Specs of ReplicaSet, DaemonSet, StatefulSet and Job: a label selector and a pod template.
static WORKLOAD_SPEC: TypeDef = TypeDef {
    name: "WorkloadSpec",
    fields: &[atomic("selector"), nested("template", &POD_TEMPLATE_SPEC)],
};

static JOB_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "JobTemplateSpec",
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &WORKLOAD_SPEC),
    ],
};

static CRON_JOB_SPEC: TypeDef = TypeDef {
    name: "CronJobSpec",
    fields: &[nested("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

static REPLICATION_CONTROLLER_SPEC: TypeDef = TypeDef {
    name: "ReplicationControllerSpec",
    fields: &[atomic("selector"), nested("template", &POD_TEMPLATE_SPEC)],
};

static POD_TEMPLATE: TypeDef = TypeDef {
    name: "PodTemplate",
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("template", &POD_TEMPLATE_SPEC),
    ],
};

static SERVICE_SPEC: TypeDef = TypeDef {
    name: "ServiceSpec",
    fields: &[
        Field {
            extra_keys: PROTOCOL,
            ..keyed("ports", "port", None)
        },
        atomic("selector"),
    ],
};

static NODE_SPEC: TypeDef = TypeDef {
    name: "NodeSpec",
    fields: &[set("podCIDRs")],
};

static NODE_STATUS: TypeDef = TypeDef {
    name: "NodeStatus",
    fields: &[
        keyed("conditions", "type", None),
        keyed("addresses", "type", None),
    ],
};

static PDB_SPEC: TypeDef = TypeDef {
    name: "PodDisruptionBudgetSpec",
    fields: &[Field {
        strategy: Strategy::Replace,
        ..atomic("selector")
    }],
};

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    name: "ServiceAccount",
    fields: &[
        nested("metadata", &OBJECT_META),
        keyed("secrets", "name", None),
    ],
};

/// A type with no fields of interest (e.g. `DeploymentStrategy`).
static EMPTY: TypeDef = TypeDef {
    name: "Empty",
    fields: &[],
};

/// A top-level object: `metadata`, and `spec`/`status` of the given types.
macro_rules! object {
    ($name:ident, $kind:literal, $spec:expr, $status:expr) => {
        static $name: TypeDef = TypeDef {
            name: $kind,
            fields: &[
                nested("metadata", &OBJECT_META),
                nested("spec", $spec),
                nested("status", $status),
            ],
        };
    };
}

object!(POD, "Pod", &POD_SPEC, &POD_STATUS);
object!(NODE, "Node", &NODE_SPEC, &NODE_STATUS);
object!(SERVICE, "Service", &SERVICE_SPEC, &CONDITIONS_STATUS);
object!(
    DEPLOYMENT,
    "Deployment",
    &DEPLOYMENT_SPEC,
    &CONDITIONS_STATUS
);
object!(WORKLOAD, "Workload", &WORKLOAD_SPEC, &CONDITIONS_STATUS);
object!(CRON_JOB, "CronJob", &CRON_JOB_SPEC, &EMPTY);
object!(
    REPLICATION_CONTROLLER,
    "ReplicationController",
    &REPLICATION_CONTROLLER_SPEC,
    &CONDITIONS_STATUS
);
object!(PDB, "PodDisruptionBudget", &PDB_SPEC, &CONDITIONS_STATUS);
object!(CONDITIONED, "Conditioned", &EMPTY, &CONDITIONS_STATUS);
object!(PLAIN, "Object", &EMPTY, &EMPTY);

/// Built-in kinds served with strategic merge patch whose only special field is `metadata`.
const PLAIN_KINDS: &[&str] = &[
    "APIService",
    "Binding",
    "CSIDriver",
    "CSINode",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "ConfigMap",
    "ControllerRevision",
    "CustomResourceDefinition",
    "EndpointSlice",
    "Endpoints",
    "Event",
    "FlowSchema",
    "Ingress",
    "IngressClass",
    "Lease",
    "LimitRange",
    "MutatingWebhookConfiguration",
    "NetworkPolicy",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "ResourceQuota",
    "Role",
    "RoleBinding",
    "RuntimeClass",
    "Scale",
    "Secret",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// The type of a top-level object of `kind`, or `None` for kinds that are not built in (custom resources),
/// which get JSON merge patch semantics.
pub fn root(kind: &str) -> Option<&'static TypeDef> {
    let ty = match kind {
        "Pod" => &POD,
        "Node" => &NODE,
        "Service" => &SERVICE,
        "Deployment" => &DEPLOYMENT,
        "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" => &WORKLOAD,
        "CronJob" => &CRON_JOB,
        "ReplicationController" => &REPLICATION_CONTROLLER,
        "PodTemplate" => &POD_TEMPLATE,
        "PodDisruptionBudget" => &PDB,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "Namespace" | "PersistentVolumeClaim" | "HorizontalPodAutoscaler" => &CONDITIONED,
        k if PLAIN_KINDS.contains(&k) => &PLAIN,
        _ => return None,
    };
    Some(ty)
}

/// Follows `path` (field names) from the root type of `kind`; `None` when a step has no schema.
pub fn lookup(kind: &str, path: &[&str]) -> Option<&'static Field> {
    let (last, parents) = path.split_last()?;
    let mut ty = root(kind)?;
    for step in parents {
        ty = ty.field(step)?.ty?;
    }
    ty.field(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_should_follow_templates_to_container_lists() {
        for kind in [
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "StatefulSet",
            "Job",
        ] {
            let env = lookup(kind, &["spec", "template", "spec", "containers"]).and_then(|f| f.ty);
            assert_eq!(
                env.and_then(|t| t.field("env")).and_then(Field::merge_key),
                Some("name"),
                "{kind}"
            );
        }
        let cron = lookup(
            "CronJob",
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "initContainers",
            ],
        );
        assert_eq!(cron.and_then(Field::merge_key), Some("name"));
    }

    #[test]
    fn lookup_should_report_the_upstream_merge_keys() {
        let cases: &[(&str, &[&str], Strategy)] = &[
            (
                "Pod",
                &["spec", "containers"],
                Strategy::Merge(Some("name")),
            ),
            ("Pod", &["spec", "volumes"], Strategy::Merge(Some("name"))),
            ("Pod", &["spec", "hostAliases"], Strategy::Merge(Some("ip"))),
            (
                "Pod",
                &["spec", "topologySpreadConstraints"],
                Strategy::Merge(Some("topologyKey")),
            ),
            (
                "Pod",
                &["status", "conditions"],
                Strategy::Merge(Some("type")),
            ),
            ("Pod", &["status", "podIPs"], Strategy::Merge(Some("ip"))),
            ("Pod", &["metadata", "finalizers"], Strategy::Merge(None)),
            (
                "Pod",
                &["metadata", "ownerReferences"],
                Strategy::Merge(Some("uid")),
            ),
            ("Service", &["spec", "ports"], Strategy::Merge(Some("port"))),
            (
                "Node",
                &["status", "addresses"],
                Strategy::Merge(Some("type")),
            ),
            ("Node", &["spec", "podCIDRs"], Strategy::Merge(None)),
            (
                "Deployment",
                &["status", "conditions"],
                Strategy::Merge(Some("type")),
            ),
            (
                "PodDisruptionBudget",
                &["spec", "selector"],
                Strategy::Replace,
            ),
        ];
        for (kind, path, strategy) in cases {
            assert_eq!(
                lookup(kind, path).map(|f| f.strategy),
                Some(*strategy),
                "{kind} {path:?}"
            );
        }
    }

    #[test]
    fn lookup_should_leave_atomic_lists_unlisted() {
        assert!(lookup("Pod", &["spec", "tolerations"]).is_none());
        assert!(lookup("Node", &["spec", "taints"]).is_none());
        assert!(lookup("Pod", &["spec", "containers", "args"]).is_none());
        assert!(root("Widget").is_none());
        assert!(root("ConfigMap").is_some());
    }

    #[test]
    fn lookup_should_mark_retain_keys_fields() {
        assert!(lookup("Deployment", &["spec", "strategy"]).is_some_and(|f| f.retain_keys));
        assert!(lookup("Pod", &["spec", "volumes"]).is_some_and(|f| f.retain_keys));
    }
}
