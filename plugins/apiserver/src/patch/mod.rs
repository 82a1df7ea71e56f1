//! PATCH bodies applied to stored objects: JSON patch, JSON merge patch, strategic merge patch and server-side apply.

mod apply;
mod fieldset;
mod json;
mod list;
pub mod merge_keys;
mod strategic;

use std::fmt::Display;

use serde_json::Value;

use crate::status::ApiError;

/// The PATCH content types kube-apiserver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes strategic merge patch.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply of a YAML or JSON configuration.
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` value, ignoring parameters such as `;charset=utf-8`.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        [
            ("application/json-patch+json", PatchType::Json),
            ("application/merge-patch+json", PatchType::Merge),
            (
                "application/strategic-merge-patch+json",
                PatchType::Strategic,
            ),
            ("application/apply-patch+yaml", PatchType::Apply),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(media))
        .map(|(_, t)| t)
    }
}

/// Whether `kind` is built in, so that strategic merge patch uses its schema (custom resources are not).
pub fn supports_strategic(kind: &str) -> bool {
    merge_keys::root(kind).is_some()
}

/// Why a patch failed, kept small inside this module; [`apply_patch`] answers it as an [`ApiError`].
#[derive(Debug)]
enum Failure {
    /// 400 BadRequest with this message.
    BadRequest(String),
    /// 422 Invalid: kube-apiserver's generic message for a patch it cannot apply, then this detail.
    Invalid(String),
    /// Any other answer, built in full.
    Api(Box<ApiError>),
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        match f {
            Failure::BadRequest(message) => ApiError::bad_request(message),
            Failure::Invalid(detail) => {
                let mut e = ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {detail}"
                ));
                e.code = 422;
                e.reason = "Invalid";
                e
            }
            Failure::Api(e) => *e,
        }
    }
}

/// Applies `patch` (the raw request body) to `original` (the stored object as JSON) for an object of
/// `kind` (e.g. `Pod`, `Deployment`, `Node`, `Scale`).
///
/// For [`PatchType::Apply`], `original` is `Value::Null` when the object does not exist yet, and
/// `field_manager`/`force` are the request's `fieldManager` and `force`; other types ignore them.
/// Checking that the result keeps the name, namespace and uid is the caller's job.
///
/// Errors follow kube-apiserver: a body that does not parse, or a malformed patch document, is
/// 400 BadRequest naming the patch type and the parser error; a well-formed JSON patch whose operation
/// fails against the object (`test` mismatch, missing path) is 422 Invalid with upstream's message
/// `the server rejected our request due to an error in our request`, followed here by the failing
/// operation; a server-side apply conflict is 409 Conflict with `FieldManagerConflict` causes.
/// Strategic merge patch of a kind with no schema (custom resources) falls back to a JSON merge
/// patch, where kube-apiserver answers 415; [`supports_strategic`] tells the two apart.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_type: PatchType,
    patch: &[u8],
    field_manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let result = match patch_type {
        PatchType::Json => json::json_patch(original, patch),
        PatchType::Merge => json::merge_patch(original, patch),
        PatchType::Strategic => strategic_patch(kind, original, patch),
        PatchType::Apply => apply::apply(kind, original, patch, field_manager, force),
    };
    result.map_err(ApiError::from)
}

/// Strategic merge patch with the schema of `kind`; JSON merge patch for kinds without one.
fn strategic_patch(kind: &str, original: &Value, body: &[u8]) -> Result<Value, Failure> {
    let Value::Object(patch) = parse_json("strategic merge patch", body)? else {
        return Err(bad_request("strategic merge patch", "expected an object"));
    };
    let Some(ty) = merge_keys::root(kind) else {
        let mut doc = original.clone();
        json_patch::merge(&mut doc, &Value::Object(patch));
        return Ok(doc);
    };
    let live = match original {
        Value::Object(o) => o.clone(),
        Value::Null => strategic::Object::new(),
        _ => {
            return Err(Failure::Api(Box::new(ApiError::internal(format!(
                "stored {kind} is not a JSON object"
            )))))
        }
    };
    strategic::merge_map(Some(ty), live, patch).map(Value::Object)
}

/// Parses a JSON body; 400 naming `patch_type` when it does not parse.
fn parse_json(patch_type: &str, body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| bad_request(patch_type, format!("invalid JSON: {e}")))
}

/// 400 BadRequest: `<patch type>: <detail>`.
fn bad_request(patch_type: &str, detail: impl Display) -> Failure {
    Failure::BadRequest(format!("{patch_type}: {detail}"))
}

/// 422 Invalid: a well-formed patch that cannot apply to the object.
fn unprocessable(detail: impl Display) -> Failure {
    Failure::Invalid(detail.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A PATCH and what must hold afterwards: JSON pointers and their values (`null`: absent), or an error code.
    pub(super) struct Case {
        name: &'static str,
        kind: &'static str,
        original: Value,
        patch_type: PatchType,
        body: String,
        expect: Result<Vec<(&'static str, Value)>, u16>,
    }

    pub(super) fn case(
        name: &'static str,
        kind: &'static str,
        original: Value,
        patch_type: PatchType,
        body: Value,
    ) -> Case {
        Case {
            name,
            kind,
            original,
            patch_type,
            body: body.to_string(),
            expect: Ok(Vec::new()),
        }
    }

    impl Case {
        pub(super) fn holds(mut self, checks: Vec<(&'static str, Value)>) -> Case {
            self.expect = Ok(checks);
            self
        }
        pub(super) fn fails(mut self, code: u16) -> Case {
            self.expect = Err(code);
            self
        }
        pub(super) fn raw(mut self, body: &str) -> Case {
            self.body = body.to_string();
            self
        }
    }

    pub(super) fn run(cases: Vec<Case>) {
        for c in cases {
            let got = apply_patch(
                c.kind,
                &c.original,
                c.patch_type,
                c.body.as_bytes(),
                "kubectl",
                false,
            );
            match (got, c.expect) {
                (Ok(out), Ok(checks)) => {
                    for (pointer, want) in checks {
                        let value = out.pointer(pointer).cloned().unwrap_or(Value::Null);
                        assert_eq!(value, want, "{}: {pointer} in {out}", c.name);
                    }
                    assert!(
                        !out.to_string().contains("\"$"),
                        "{}: directive left in {out}",
                        c.name
                    );
                }
                (Err(e), Err(code)) => assert_eq!(e.code, code, "{}: {e}", c.name),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
            }
        }
    }

    pub(super) fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.25", "args": ["a", "b"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}]}],
                    "tolerations": [{"key": "a", "operator": "Exists"}]}}}})
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "finalizers": ["a", "b"], "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}]}})
    }

    fn node() -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.0.0.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]}})
    }

    pub(super) const CONTAINER: &str = "/spec/template/spec/containers/0";

    #[test]
    fn strategic_patch_should_match_kubectl_behaviours() {
        use PatchType::Strategic as S;
        run(vec![
            case("apply second time: env changed, B deleted, C added", "Deployment", deployment(), S, json!({
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}], "containers": [{
                    "$setElementOrder/env": [{"name": "A"}, {"name": "C"}], "name": "web", "image": "nginx:1.27",
                    "env": [{"name": "A", "value": "10"}, {"name": "C", "value": "3"}, {"$patch": "delete", "name": "B"}]}]}}}}))
            .holds(vec![
                ("/spec/template/spec/containers/0/env", json!([{"name": "A", "value": "10"}, {"name": "C", "value": "3"}])),
                ("/spec/template/spec/containers/0/image", json!("nginx:1.27")),
                ("/spec/template/spec/containers/0/ports/1/containerPort", json!(8080)),
                ("/metadata/labels/app", json!("web")),
                ("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration", json!("{}")),
            ]),
            case("container port deleted by $patch: delete", "Deployment", deployment(), S, json!({
                "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}], "containers": [{
                    "$setElementOrder/ports": [{"containerPort": 8080}], "name": "web",
                    "ports": [{"$patch": "delete", "containerPort": 80}]}]}}}}))
            .holds(vec![("/spec/template/spec/containers/0/ports", json!([{"containerPort": 8080, "protocol": "TCP"}]))]),
            case("labels: null removes the field", "Deployment", deployment(), S, json!({"metadata": {"labels": null}}))
                .holds(vec![("/metadata/labels", Value::Null), ("/metadata/name", json!("web"))]),
            case("strategy: null and replicas", "Deployment", deployment(), S, json!({"spec": {"strategy": null, "replicas": 3}}))
                .holds(vec![("/spec/strategy", Value::Null), ("/spec/replicas", json!(3))]),
            case("atomic args and tolerations are replaced", "Deployment", deployment(), S, json!({
                "spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}],
                    "containers": [{"name": "web", "args": ["c"]}]}}}}))
            .holds(vec![
                ("/spec/template/spec/containers/0/args", json!(["c"])),
                ("/spec/template/spec/tolerations", json!([{"key": "b", "operator": "Exists"}])),
            ]),
            case("a new container without $setElementOrder comes first, as upstream", "Deployment", deployment(), S,
                json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy"}]}}}}))
            .holds(vec![("/spec/template/spec/containers/0/name", json!("sidecar")), ("/spec/template/spec/containers/1/name", json!("web"))]),
            case("cordon", "Node", node(), S, json!({"spec": {"unschedulable": true}}))
                .holds(vec![("/spec/unschedulable", json!(true)), ("/spec/taints/0/key", json!("k"))]),
            case("uncordon", "Node", json!({"kind": "Node", "spec": {"unschedulable": true, "podCIDR": "x"}}), S,
                json!({"spec": {"unschedulable": null}}))
            .holds(vec![("/spec/unschedulable", Value::Null), ("/spec/podCIDR", json!("x"))]),
            case("node taints are atomic", "Node", node(), S, json!({"spec": {"taints": [{"key": "j", "effect": "NoExecute"}]}}))
                .holds(vec![("/spec/taints", json!([{"key": "j", "effect": "NoExecute"}]))]),
            case("finalizers are a set", "Pod", pod(), S, json!({"metadata": {"finalizers": ["b", "c"]}}))
                .holds(vec![("/metadata/finalizers", json!(["a", "b", "c"]))]),
            case("finalizer removed by $deleteFromPrimitiveList", "Pod", pod(), S,
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "$setElementOrder/finalizers": ["b"]}}))
            .holds(vec![("/metadata/finalizers", json!(["b"]))]),
            case("ownerReferences merge by uid", "Pod", pod(), S, json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "blockOwnerDeletion": true},
                {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u2"}]}}))
            .holds(vec![
                ("/metadata/ownerReferences/0/name", json!("rs1")),
                ("/metadata/ownerReferences/0/blockOwnerDeletion", json!(true)),
                ("/metadata/ownerReferences/1/uid", json!("u2")),
            ]),
            case("conditions merge by type", "Pod", pod(), S, json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
                .holds(vec![
                    ("/status/conditions", json!([{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}])),
                    ("/status/phase", json!("Pending")),
                ]),
            case("volumes honour $retainKeys", "Pod", pod(), S, json!({"spec": {"volumes": [
                {"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}))
            .holds(vec![
                ("/spec/volumes/0", json!({"name": "data", "hostPath": {"path": "/x"}})),
                ("/spec/volumes/1/name", json!("cfg")),
            ]),
            case("$patch: replace on a list", "Pod", pod(), S, json!({"spec": {"volumes": [{"name": "v"}, {"$patch": "replace"}]}}))
                .holds(vec![("/spec/volumes", json!([{"name": "v"}]))]),
            case("unknown kinds get merge patch semantics", "Widget",
                json!({"spec": {"items": [{"name": "a"}], "keep": 1, "gone": 2}}), S,
                json!({"spec": {"items": [{"name": "b"}], "gone": null}}))
            .holds(vec![("/spec/items", json!([{"name": "b"}])), ("/spec/keep", json!(1)), ("/spec/gone", Value::Null)]),
            case("element without its merge key", "Pod", pod(), S, json!({"spec": {"containers": [{"image": "x"}]}})).fails(400),
            case("unknown directive", "Pod", pod(), S, json!({"spec": {"$patch": "explode"}})).fails(400),
            case("body is not JSON", "Pod", pod(), S, json!(null)).raw("{spec:").fails(400),
            case("body is not an object", "Pod", pod(), S, json!([1])).fails(400),
        ]);
    }

    #[test]
    fn from_content_type_should_ignore_parameters_and_case() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                "Application/Strategic-Merge-Patch+JSON",
                Some(PatchType::Strategic),
            ),
            (
                "application/apply-patch+yaml;charset=utf-8",
                Some(PatchType::Apply),
            ),
            ("application/json", None),
            ("", None),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
        }
    }
}
