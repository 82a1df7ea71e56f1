//! Server-side apply field sets: which fields a manager owns, in the `fieldsV1` format of `metadata.managedFields`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::merge_keys::{Field, Strategy, TypeDef};
use super::strategic::{is_directive, Object};

/// Metadata fields no manager owns (upstream strips them from every set), besides `apiVersion` and `kind`.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
];

/// A node of a field set: whether the path to it is owned, and the owned paths below it.
///
/// Children are keyed by path elements: `f:<field>`, `k:{"<key>":<value>}` for an element of a list
/// merged by key, `v:<json>` for a value of a primitive set; in `fieldsV1`, `.` marks a node owned as a
/// whole that also has children.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// A field another manager owns that an apply would change: the path in set form and as upstream prints it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Conflict {
    /// Path elements (`f:spec`, `f:replicas`).
    pub path: Vec<String>,
    /// Printed path, e.g. `.spec.replicas`.
    pub display: String,
}

/// Where a walk is: the type of the map at hand and the field whose value it is (for list elements).
#[derive(Clone, Copy)]
struct Node {
    ty: Option<&'static TypeDef>,
    field: Option<&'static Field>,
}

impl FieldSet {
    fn leaf() -> FieldSet {
        FieldSet {
            member: true,
            children: BTreeMap::new(),
        }
    }

    /// Whether the set owns nothing.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// The fields an applied configuration of type `ty` sets.
    pub fn of_applied(ty: Option<&'static TypeDef>, config: &Object) -> FieldSet {
        let mut set = of_map(ty, config);
        set.children.remove("f:apiVersion");
        set.children.remove("f:kind");
        if let Some(meta) = set.children.get_mut("f:metadata") {
            for name in UNOWNED_METADATA {
                meta.children.remove(&format!("f:{name}"));
            }
            if meta.children.is_empty() {
                set.children.remove("f:metadata");
            }
        }
        set
    }

    /// Reads a `fieldsV1` value; anything unreadable is an empty set.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        for (name, child) in value.as_object().into_iter().flatten() {
            if name == "." {
                set.member = true;
                continue;
            }
            let mut node = FieldSet::from_fields_v1(child);
            if node.children.is_empty() {
                node.member = true;
            }
            set.children.insert(name.clone(), node);
        }
        set
    }

    /// The `fieldsV1` value of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (name, child) in &self.children {
            map.insert(name.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Gives up ownership of `path`; drops nodes left owning nothing.
    pub fn disown(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((head, rest)) => {
                if let Some(child) = self.children.get_mut(head) {
                    child.disown(rest);
                    if child.is_empty() {
                        self.children.remove(head);
                    }
                }
            }
        }
    }

    /// Fields this set (an apply) shares with `other` whose applied value differs from the live one.
    pub fn conflicts_with(
        &self,
        other: &FieldSet,
        ty: Option<&'static TypeDef>,
        live: &Value,
        applied: &Value,
    ) -> Vec<Conflict> {
        let mut out = Vec::new();
        let node = Node { ty, field: None };
        walk_conflicts(
            self,
            other,
            node,
            Some(live),
            Some(applied),
            &mut Vec::new(),
            "",
            &mut out,
        );
        out
    }
}

fn of_map(ty: Option<&'static TypeDef>, map: &Object) -> FieldSet {
    let children = map
        .iter()
        .filter(|(k, v)| !v.is_null() && !is_directive(k))
        .map(|(k, v)| (format!("f:{k}"), of_value(ty.and_then(|t| t.field(k)), v)))
        .collect();
    FieldSet {
        member: false,
        children,
    }
}

fn of_value(field: Option<&'static Field>, value: &Value) -> FieldSet {
    let atomic = field.is_some_and(|f| f.atomic);
    match (value, field) {
        (Value::Object(map), _) if !atomic => {
            let set = of_map(field.and_then(|f| f.ty), map);
            if set.children.is_empty() {
                FieldSet::leaf()
            } else {
                set
            }
        }
        (Value::Array(items), Some(f))
            if !items.is_empty() && matches!(f.strategy, Strategy::Merge(_)) =>
        {
            let mut children = BTreeMap::new();
            for item in items {
                let Some(name) = element_name(Some(f), item) else {
                    return FieldSet::leaf();
                };
                let node = match item {
                    Value::Object(map) => FieldSet {
                        member: true,
                        children: of_map(f.ty, map).children,
                    },
                    _ => FieldSet::leaf(),
                };
                children.insert(name, node);
            }
            FieldSet {
                member: false,
                children,
            }
        }
        _ => FieldSet::leaf(),
    }
}

/// The path element naming `item` in a list of `field`: `k:{…}` by merge key, `v:<json>` in a set.
fn element_name(field: Option<&Field>, item: &Value) -> Option<String> {
    let field = field?;
    match field.strategy {
        Strategy::Merge(Some(key)) => {
            let mut keys: Vec<(&str, Value)> = vec![(key, item.get(key)?.clone())];
            for (name, default) in field.extra_keys {
                match (item.get(*name), default) {
                    (Some(v), _) if !v.is_null() => keys.push((name, v.clone())),
                    (_, Some(d)) => keys.push((name, Value::String((*d).to_string()))),
                    _ => {}
                }
            }
            keys.sort_by(|a, b| a.0.cmp(b.0));
            let map: Map<String, Value> =
                keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            Some(format!("k:{}", Value::Object(map)))
        }
        Strategy::Merge(None) => Some(format!("v:{item}")),
        _ => None,
    }
}

/// Steps from `value` at `node` to the child named `name`, returning it and its node.
fn step<'v>(value: Option<&'v Value>, node: Node, name: &str) -> (Option<&'v Value>, Node, String) {
    if let Some(key) = name.strip_prefix("f:") {
        let field = node.ty.and_then(|t| t.field(key));
        let child = value.and_then(|v| v.get(key));
        return (
            child,
            Node {
                ty: field.and_then(|f| f.ty),
                field,
            },
            format!(".{key}"),
        );
    }
    let items = value.and_then(Value::as_array);
    let child = items.and_then(|items| {
        items
            .iter()
            .find(|i| element_name(node.field, i).as_deref() == Some(name))
    });
    let display = match (name.strip_prefix("k:"), name.strip_prefix("v:")) {
        (Some(keys), _) => {
            let keys: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("[{}]", parts.join(","))
        }
        (_, Some(v)) => format!("[={v}]"),
        _ => format!("[{name}]"),
    };
    (
        child,
        Node {
            ty: node.ty,
            field: None,
        },
        display,
    )
}

#[allow(clippy::too_many_arguments)]
fn walk_conflicts(
    mine: &FieldSet,
    other: &FieldSet,
    node: Node,
    live: Option<&Value>,
    applied: Option<&Value>,
    path: &mut Vec<String>,
    display: &str,
    out: &mut Vec<Conflict>,
) {
    for (name, my_child) in &mine.children {
        let Some(other_child) = other.children.get(name) else {
            continue;
        };
        let (live_child, child_node, step_display) = step(live, node, name);
        let (applied_child, _, _) = step(applied, node, name);
        let child_display = format!("{display}{step_display}");
        path.push(name.clone());
        let changed = if my_child.children.is_empty() {
            live_child != applied_child
        } else {
            live_child.is_none()
        };
        if my_child.member && other_child.member && changed {
            out.push(Conflict {
                path: path.clone(),
                display: child_display.clone(),
            });
        }
        walk_conflicts(
            my_child,
            other_child,
            child_node,
            live_child,
            applied_child,
            path,
            &child_display,
            out,
        );
        path.pop();
    }
}

/// Removes from `obj` (of type `ty`) the fields `old` owned that neither `new` nor any of `others` owns.
pub(super) fn prune(
    obj: &mut Object,
    ty: Option<&'static TypeDef>,
    old: &FieldSet,
    new: Option<&FieldSet>,
    others: &[&FieldSet],
) {
    for (name, old_child) in &old.children {
        let Some(key) = name.strip_prefix("f:") else {
            continue;
        };
        let new_child = new.and_then(|n| n.children.get(name));
        let other_children: Vec<&FieldSet> =
            others.iter().filter_map(|o| o.children.get(name)).collect();
        if old_child.member && new_child.is_none() && other_children.is_empty() {
            obj.remove(key);
            continue;
        }
        let field = ty.and_then(|t| t.field(key));
        match obj.get_mut(key) {
            Some(Value::Object(map)) => prune(
                map,
                field.and_then(|f| f.ty),
                old_child,
                new_child,
                &other_children,
            ),
            Some(Value::Array(items)) => {
                prune_items(items, field, old_child, new_child, &other_children)
            }
            _ => {}
        }
    }
}

fn prune_items(
    items: &mut Vec<Value>,
    field: Option<&'static Field>,
    old: &FieldSet,
    new: Option<&FieldSet>,
    others: &[&FieldSet],
) {
    for (name, old_child) in &old.children {
        let new_child = new.and_then(|n| n.children.get(name));
        let other_children: Vec<&FieldSet> =
            others.iter().filter_map(|o| o.children.get(name)).collect();
        let Some(pos) = items
            .iter()
            .position(|i| element_name(field, i).as_deref() == Some(name))
        else {
            continue;
        };
        if old_child.member && new_child.is_none() && other_children.is_empty() {
            items.remove(pos);
        } else if let Some(Value::Object(map)) = items.get_mut(pos) {
            prune(
                map,
                field.and_then(|f| f.ty),
                old_child,
                new_child,
                &other_children,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge_keys::root;
    use serde_json::json;

    fn object(v: Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn of_applied_should_use_the_upstream_fields_v1_format() {
        let config = object(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}], "args": ["a"]},
            ]}}},
        }));
        let got = FieldSet::of_applied(root("Deployment"), &config).to_fields_v1();
        let want = json!({
            "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"x\"": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}},
            }}}},
        });
        assert_eq!(got, want);
        assert_eq!(FieldSet::from_fields_v1(&want).to_fields_v1(), want);
    }

    #[test]
    fn prune_should_remove_only_fields_nobody_else_owns() {
        let ty = root("Deployment");
        let old = FieldSet::of_applied(
            ty,
            &object(json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}}})),
        );
        let new = FieldSet::of_applied(ty, &object(json!({"metadata": {"labels": {"a": "1"}}})));
        let other = FieldSet::of_applied(ty, &object(json!({"metadata": {"labels": {"b": "2"}}})));
        let mut obj =
            object(json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3", "d": "4"}}}));
        prune(&mut obj, ty, &old, Some(&new), &[&other]);
        assert_eq!(
            Value::Object(obj),
            json!({"metadata": {"labels": {"a": "1", "b": "2", "d": "4"}}})
        );
    }

    #[test]
    fn prune_should_remove_list_elements_by_key() {
        let ty = root("Pod");
        let two = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let old = FieldSet::of_applied(ty, &object(two.clone()));
        let new = FieldSet::of_applied(
            ty,
            &object(json!({"spec": {"containers": [{"name": "a", "image": "x"}]}})),
        );
        let mut obj = object(two);
        prune(&mut obj, ty, &old, Some(&new), &[]);
        assert_eq!(
            Value::Object(obj),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}]}})
        );
    }

    #[test]
    fn conflicts_with_should_report_changed_shared_fields() {
        let ty = root("Deployment");
        let live = json!({"spec": {"replicas": 1, "paused": false, "template": {"spec": {"containers": [{"name": "w", "image": "a"}]}}}});
        let applied = json!({"spec": {"replicas": 3, "paused": false, "template": {"spec": {"containers": [{"name": "w", "image": "b"}]}}}});
        let mine = FieldSet::of_applied(ty, &object(applied.clone()));
        let other = FieldSet::of_applied(ty, &object(live.clone()));
        let got: Vec<String> = mine
            .conflicts_with(&other, ty, &live, &applied)
            .into_iter()
            .map(|c| c.display)
            .collect();
        assert_eq!(
            got,
            vec![
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"w\"].image"
            ]
        );
    }

    #[test]
    fn disown_should_drop_emptied_nodes() {
        let mut set = FieldSet::from_fields_v1(
            &json!({"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}),
        );
        set.disown(&["f:spec".to_string(), "f:replicas".to_string()]);
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:a": {}}}})
        );
    }
}
