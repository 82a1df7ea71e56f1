//! RBAC through the real kubectl with per-user kubeconfigs issued by `kubernel
//! kubeconfig`: the bootstrap roles, view/edit/admin bindings, group subjects,
//! upstream's 403 text and `kubectl auth can-i`.

use anyhow::Result;
use kubernel_e2e::{kubectl_as, kubernel, Cluster};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  containers:
  - name: c
    image: busybox:1.36
"#;

fn pod(name: &str) -> String {
    POD.replace("NAME", name)
}

#[test]
fn bootstrap_roles_should_exist() -> Result<()> {
    let c = Cluster::start("")?;
    let roles = c.ok(&["get", "clusterroles", "-o", "name"])?;
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node-proxier",
        "system:discovery",
        "system:basic-user",
    ] {
        assert!(
            roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
            "{role} missing:\n{roles}"
        );
    }
    let bindings = c.ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "json"])?;
    let binding: serde_json::Value = serde_json::from_str(&bindings)?;
    assert_eq!(binding["subjects"][0]["name"], "system:masters");
    Ok(())
}

#[test]
fn view_and_edit_should_allow_what_upstream_allows() -> Result<()> {
    let c = Cluster::start("")?;
    let dir = tempfile::tempdir()?;
    let viewer = c.issue_kubeconfig(dir.path(), "viewer", &[])?;
    let editor = c.issue_kubeconfig(dir.path(), "editor", &[])?;
    let nobody = c.issue_kubeconfig(dir.path(), "nobody", &[])?;
    let devs = c.issue_kubeconfig(dir.path(), "carol", &["devs"])?;
    c.ok(&[
        "create",
        "rolebinding",
        "viewer-view",
        "--clusterrole=view",
        "--user=viewer",
    ])?;
    c.ok(&[
        "create",
        "rolebinding",
        "editor-edit",
        "--clusterrole=edit",
        "--user=editor",
    ])?;
    c.ok(&[
        "create",
        "rolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
    ])?;
    c.ok_stdin(&["create", "-f", "-"], &pod("seed"))?;

    // view: get and list, not create.
    let (ok, out, err) = kubectl_as(&viewer, &["get", "pods"], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("seed"), "{out}");
    let (ok, _, err) = kubectl_as(&viewer, &["get", "pod", "seed"], "")?;
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_as(&viewer, &["create", "-f", "-"], &pod("by-viewer"))?;
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): error when creating \"STDIN\": pods is forbidden: User \"viewer\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(&viewer, &["get", "secrets"], "")?;
    assert!(!ok, "view reads no secrets");
    assert!(err.contains("secrets is forbidden: User \"viewer\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""), "{err}");
    // Bound in default only.
    let (ok, _, err) = kubectl_as(&viewer, &["get", "pods", "-n", "kube-system"], "")?;
    assert!(!ok);
    assert!(err.contains("in the namespace \"kube-system\""), "{err}");

    // edit: create, not bind roles.
    let (ok, _, err) = kubectl_as(&editor, &["create", "-f", "-"], &pod("by-editor"))?;
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_as(&editor, &["delete", "pod", "by-editor", "--wait=false"], "")?;
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_as(
        &editor,
        &[
            "create",
            "rolebinding",
            "sneaky",
            "--clusterrole=admin",
            "--user=editor",
        ],
        "",
    )?;
    assert!(!ok);
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io is forbidden: User \"editor\" cannot create resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the namespace \"default\""),
        "{err}"
    );

    // No binding at all: the exact upstream message.
    let (ok, _, err) = kubectl_as(&nobody, &["get", "pods"], "")?;
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): pods is forbidden: User \"nobody\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(&nobody, &["get", "nodes"], "")?;
    assert!(!ok);
    assert!(err.contains("nodes is forbidden: User \"nobody\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"), "{err}");
    let (ok, _, err) = kubectl_as(&nobody, &["get", "pod", "seed"], "")?;
    assert!(!ok);
    assert!(err.contains("pods \"seed\" is forbidden: User \"nobody\" cannot get resource \"pods\" in API group \"\" in the namespace \"default\""), "{err}");

    // A group subject, from the certificate's O.
    let (ok, out, err) = kubectl_as(&devs, &["get", "pods"], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("seed"), "{out}");
    Ok(())
}

#[test]
fn kubectl_auth_can_i_should_answer_from_rbac() -> Result<()> {
    let c = Cluster::start("")?;
    let dir = tempfile::tempdir()?;
    let viewer = c.issue_kubeconfig(dir.path(), "viewer", &[])?;
    c.ok(&[
        "create",
        "rolebinding",
        "viewer-view",
        "--clusterrole=view",
        "--user=viewer",
    ])?;
    let (ok, out, err) = kubectl_as(&viewer, &["auth", "can-i", "list", "pods"], "")?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "yes");
    let (ok, out, _) = kubectl_as(&viewer, &["auth", "can-i", "create", "pods"], "")?;
    assert!(!ok, "can-i exits 1 on no");
    assert_eq!(out.trim(), "no");
    let (ok, out, _) = kubectl_as(
        &viewer,
        &["auth", "can-i", "get", "pods", "-n", "kube-system"],
        "",
    )?;
    assert!(!ok);
    assert_eq!(out.trim(), "no");
    let (ok, out, err) = kubectl_as(&c.kubeconfig, &["auth", "can-i", "*", "*"], "")?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "yes");
    // `--list` (SelfSubjectRulesReview): the view role's rules in the namespace.
    let (ok, out, err) = kubectl_as(&viewer, &["auth", "can-i", "--list"], "")?;
    assert!(ok, "{err}");
    let pods = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("pods"))
        .unwrap_or_default();
    assert!(pods.contains("[get list watch]"), "{out}");
    assert!(
        out.lines().any(
            |l| l.contains("selfsubjectaccessreviews.authorization.k8s.io")
                && l.contains("[create]")
        ),
        "{out}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("secrets ")),
        "view does not read secrets: {out}"
    );
    let (ok, out, err) = kubectl_as(
        &viewer,
        &["auth", "can-i", "--list", "-n", "kube-system"],
        "",
    )?;
    assert!(ok, "{err}");
    assert!(
        !out.lines()
            .any(|l| l.split_whitespace().next() == Some("pods")),
        "{out}"
    );
    Ok(())
}

#[test]
fn subject_access_reviews_should_answer_for_another_user() -> Result<()> {
    let c = Cluster::start("")?;
    let review = |path: &str, user: &str, ns: &str| -> Result<(u16, serde_json::Value)> {
        let body = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": if path.contains("local") { "LocalSubjectAccessReview" } else { "SubjectAccessReview" },
            "spec": {"user": user, "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": ns}},
        });
        let (code, text) = c.send(
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        )?;
        Ok((code, serde_json::from_str(&text)?))
    };
    let sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, r) = review(sar, "alice", "default")?;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["kind"], "SubjectAccessReview");
    assert_eq!(r["status"]["allowed"], false, "{r}");
    c.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ])?;
    let (_, r) = review(sar, "alice", "default")?;
    assert_eq!(r["status"]["allowed"], true, "{r}");
    let local = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";
    let (code, r) = review(local, "alice", "default")?;
    assert_eq!(
        (code, &r["status"]["allowed"]),
        (201, &serde_json::json!(true)),
        "{r}"
    );
    let (code, r) = review(local, "alice", "kube-system")?;
    assert_eq!(code, 422, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("must match metadata.namespace"),
        "{r}"
    );
    // Asking needs the right to: a user without it is refused.
    let dir = tempfile::tempdir()?;
    let nobody = c.issue_kubeconfig(dir.path(), "nobody", &[])?;
    let (ok, _, err) = kubectl_as(
        &nobody,
        &["create", "--raw", sar, "-f", "-"],
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods"}}}"#,
    )?;
    assert!(!ok);
    assert!(err.contains("forbidden"), "{err}");
    Ok(())
}

#[test]
fn aggregated_cluster_roles_should_follow_the_roles_they_select() -> Result<()> {
    let c = Cluster::start(&kubernel_e2e::component_entry(
        "controller-manager",
        "controller-manager",
        "",
    ))?;
    let aggregated = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: monitoring}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {example.com/aggregate-to-monitoring: 'true'}
rules: []
";
    c.ok_stdin(&["apply", "-f", "-"], aggregated)?;
    let source = |name: &str, resource: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {name}
  labels: {{example.com/aggregate-to-monitoring: 'true'}}
rules:
- {{apiGroups: [''], resources: [{resource}], verbs: [get, list]}}
"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], &source("read-pods", "pods"))?;
    c.ok_stdin(&["apply", "-f", "-"], &source("read-nodes", "nodes"))?;
    let rules = || {
        c.ok(&[
            "get",
            "clusterrole",
            "monitoring",
            "-o",
            "jsonpath={.rules[*].resources}",
        ])
    };
    kubernel_e2e::eventually(
        std::time::Duration::from_secs(10),
        "both roles' rules",
        || Ok(rules()? == r#"["nodes"] ["pods"]"#),
    )?;
    c.ok(&["delete", "clusterrole", "read-nodes"])?;
    kubernel_e2e::eventually(
        std::time::Duration::from_secs(10),
        "the deleted role's rules gone",
        || Ok(rules()? == r#"["pods"]"#),
    )?;
    Ok(())
}

#[test]
fn kubernel_kubeconfig_should_refuse_bad_input() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().display().to_string();
    let (status, _, err) = kubernel(&["--data-dir", &data, "kubeconfig", "--user", "a"], &[])?;
    assert!(!status.success());
    assert!(
        err.contains("no cluster CA in") && err.contains("ca.crt"),
        "{err}"
    );
    let c = Cluster::start("")?;
    let data = c.kernel.data_dir().display().to_string();
    let (status, _, err) = kubernel(
        &[
            "--data-dir",
            &data,
            "kubeconfig",
            "--user",
            "a",
            "--group",
            "1",
            "--group",
            "2",
            "--group",
            "3",
        ],
        &[],
    )?;
    assert!(!status.success());
    assert!(err.contains("at most two groups"), "{err}");
    let (status, out, err) = kubernel(
        &["--data-dir", &data, "kubeconfig", "--user", "stdout-user"],
        &[],
    )?;
    assert!(status.success(), "{err}");
    assert!(
        out.contains("client-certificate-data:") && out.contains("user: stdout-user"),
        "{out}"
    );
    Ok(())
}

#[test]
fn nobody_should_grant_what_they_do_not_hold() -> Result<()> {
    let c = Cluster::start("")?;
    let dir = tempfile::tempdir()?;
    let boss = c.issue_kubeconfig(dir.path(), "boss", &[])?;
    c.ok(&[
        "create",
        "rolebinding",
        "boss-admin",
        "--clusterrole=admin",
        "--user=boss",
    ])?;
    // admin holds everything edit grants: binding it is fine.
    let (ok, _, err) = kubectl_as(
        &boss,
        &[
            "create",
            "rolebinding",
            "helper-edit",
            "--clusterrole=edit",
            "--user=helper",
        ],
        "",
    )?;
    assert!(ok, "{err}");
    // cluster-admin is more than admin holds.
    let (ok, _, err) = kubectl_as(
        &boss,
        &[
            "create",
            "rolebinding",
            "me-root",
            "--clusterrole=cluster-admin",
            "--user=boss",
        ],
        "",
    )?;
    assert!(!ok);
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"me-root\" is forbidden: user \"boss\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{err}"
    );
    // A Role granting what admin lacks (nodes) is refused; one within admin is not.
    let (ok, _, err) = kubectl_as(
        &boss,
        &[
            "create",
            "role",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
        ],
        "",
    )?;
    assert!(!ok);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    assert!(err.contains("Resources:[\"nodes\"]"), "{err}");
    let (ok, _, err) = kubectl_as(
        &boss,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get",
            "--verb=list",
            "--resource=pods",
        ],
        "",
    )?;
    assert!(ok, "{err}");
    // A patch is checked on the role it would leave: merge, JSON and apply.
    for (kind, patch) in [
        (
            "merge",
            r#"{"rules":[{"apiGroups":[""],"resources":["nodes"],"verbs":["get"]}]}"#,
        ),
        (
            "json",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["get"]}}]"#,
        ),
    ] {
        let (ok, _, err) = kubectl_as(
            &boss,
            &["patch", "role", "pod-reader", "--type", kind, "-p", patch],
            "",
        )?;
        assert!(!ok, "a {kind} patch granting nodes");
        assert!(
            err.contains("is attempting to grant RBAC permissions not currently held"),
            "{err}"
        );
    }
    let (ok, _, err) = kubectl_as(
        &boss,
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: applied, namespace: default}\nrules:\n- {apiGroups: [''], resources: [nodes], verbs: [get]}\n",
    )?;
    assert!(!ok, "server-side apply creating a role with nodes");
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(
        &boss,
        &[
            "patch",
            "role",
            "pod-reader",
            "--type",
            "merge",
            "-p",
            r#"{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}"#,
        ],
        "",
    )?;
    assert!(ok, "a patch within admin: {err}");
    // The admin user may still do it all.
    c.ok(&[
        "create",
        "rolebinding",
        "root",
        "--clusterrole=cluster-admin",
        "--user=boss",
    ])?;
    Ok(())
}

#[test]
fn kubectl_auth_whoami_should_name_the_certificate_user() -> Result<()> {
    let c = Cluster::start("")?;
    let out = c.ok(&["auth", "whoami"])?;
    assert!(out.contains("kubernetes-admin"), "{out}");
    assert!(out.contains("system:masters"), "{out}");
    let dir = tempfile::tempdir()?;
    let carol = c.issue_kubeconfig(dir.path(), "carol", &["devs", "qa"])?;
    let (ok, out, err) = kubectl_as(&carol, &["auth", "whoami", "-o", "json"], "")?;
    assert!(ok, "{err}");
    let review: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(review["status"]["userInfo"]["username"], "carol");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "qa", "system:authenticated"])
    );
    Ok(())
}
