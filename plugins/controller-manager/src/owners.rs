//! Adoption and release (client-go's `ControllerRefManager`): a controller owns the
//! objects its selector matches, adopting orphans and releasing objects it no
//! longer selects, by patching their `ownerReferences`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kubernel_client::{Api, ClientError, ObjectResource, Patch};
use serde_json::json;

use crate::pods::controller_of;
use crate::selector;

/// What a controller does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already controlled by this controller and still selected.
    Owned,
    /// An orphan the selector matches: take it.
    Adopt,
    /// Controlled by this controller but no longer selected: let it go.
    Release,
    /// Someone else's, or not selected.
    Ignore,
}

/// Decides what the controller with `owner_uid` (being deleted when
/// `owner_deleting`) does with the object `child`.
pub fn claim(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    child: &ObjectMeta,
) -> Claim {
    let selected = selector::matches(selector, child.labels.as_ref());
    match controller_of(child) {
        Some(r) if r.uid == owner_uid => {
            if selected {
                Claim::Owned
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if selected && !owner_deleting && child.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Makes `owner` the controller of the object `name` (uid `uid`) with a strategic merge patch.
pub async fn adopt<K: ObjectResource>(
    api: &Api<K>,
    name: &str,
    uid: &str,
    owner: &OwnerReference,
) -> Result<K, ClientError> {
    let patch = json!({"metadata": {"ownerReferences": [owner], "uid": uid}});
    api.patch(name, &Patch::Strategic(patch)).await
}

/// Removes the owner reference to `owner_uid` from the object `name` (uid `uid`).
pub async fn release<K: ObjectResource>(
    api: &Api<K>,
    name: &str,
    uid: &str,
    owner_uid: &str,
) -> Result<K, ClientError> {
    let patch = json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
        "uid": uid,
    }});
    api.patch(name, &Patch::Strategic(patch)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn claim_should_adopt_orphans_and_release_unselected_children() {
        let sel = selector::from_map(&[("app".to_string(), "web".to_string())].into());
        assert_eq!(
            claim("u", false, &sel, &meta(&[("app", "web")], None)),
            Claim::Adopt
        );
        assert_eq!(
            claim("u", true, &sel, &meta(&[("app", "web")], None)),
            Claim::Ignore
        );
        assert_eq!(
            claim("u", false, &sel, &meta(&[("app", "web")], Some("u"))),
            Claim::Owned
        );
        assert_eq!(
            claim("u", false, &sel, &meta(&[("app", "db")], Some("u"))),
            Claim::Release
        );
        assert_eq!(
            claim("u", false, &sel, &meta(&[("app", "web")], Some("x"))),
            Claim::Ignore
        );
    }
}
