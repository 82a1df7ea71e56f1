//! Label and node selectors, compiled once per pod and matched against label maps.
//!
//! Semantics follow apimachinery: a null `LabelSelector` matches nothing, an empty
//! one everything; node selector terms are ORed, a term's requirements ANDed, and a
//! term without requirements matches nothing. A requirement with an unknown
//! operator or a malformed `Gt`/`Lt` value matches nothing (upstream rejects it).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector as ApiNodeSelector, NodeSelectorRequirement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as ApiLabelSelector, LabelSelectorRequirement,
};

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// An empty label map, for objects without labels.
pub static NO_LABELS: Labels = BTreeMap::new();

/// A selector operator.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
    Invalid,
}

/// One compiled requirement: `key op values`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn new(key: &str, operator: &str, values: &[String]) -> Self {
        let number = || match values {
            [v] => v.parse::<i64>().ok(),
            _ => None,
        };
        let op = match operator {
            "In" if !values.is_empty() => Op::In,
            "NotIn" if !values.is_empty() => Op::NotIn,
            "Exists" if values.is_empty() => Op::Exists,
            "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
            "Gt" => number().map_or(Op::Invalid, Op::Gt),
            "Lt" => number().map_or(Op::Invalid, Op::Lt),
            _ => Op::Invalid,
        };
        Requirement {
            key: key.to_string(),
            op,
            values: values.to_vec(),
        }
    }

    /// Whether the requirement holds for the value of its key (`None` when absent).
    fn matches_value(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            _ => false,
        }
    }

    /// Whether the requirement holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// A compiled `metav1.LabelSelector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Compiles an API selector; `None` (null) matches nothing.
    pub fn new(selector: Option<&ApiLabelSelector>) -> Self {
        let Some(sel) = selector else {
            return LabelSelector::nothing();
        };
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, "In", std::slice::from_ref(v)));
        }
        for LabelSelectorRequirement {
            key,
            operator,
            values,
        } in sel.match_expressions.iter().flatten()
        {
            // Label selectors have no Gt/Lt: only the four set operators are valid.
            let op = match operator.as_str() {
                "In" | "NotIn" | "Exists" | "DoesNotExist" => operator.as_str(),
                _ => "",
            };
            requirements.push(Requirement::new(key, op, values.as_deref().unwrap_or(&[])));
        }
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// A selector matching nothing.
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// A selector matching `key in (value)` for each pair, added to `self`.
    pub fn and_equal(mut self, key: &str, value: &str) -> Self {
        self.requirements
            .push(Requirement::new(key, "In", &[value.to_string()]));
        self
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// One compiled `NodeSelectorTerm`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    expressions: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Term {
    fn new(exprs: &[NodeSelectorRequirement], fields: &[NodeSelectorRequirement]) -> Self {
        let compile = |r: &NodeSelectorRequirement| {
            Requirement::new(&r.key, &r.operator, r.values.as_deref().unwrap_or(&[]))
        };
        // `metadata.name` is the only supported field, with In and NotIn.
        let field = |r: &NodeSelectorRequirement| {
            let ok = r.key == "metadata.name" && matches!(r.operator.as_str(), "In" | "NotIn");
            let op = if ok { r.operator.as_str() } else { "" };
            Requirement::new(&r.key, op, r.values.as_deref().unwrap_or(&[]))
        };
        Term {
            expressions: exprs.iter().map(compile).collect(),
            fields: fields.iter().map(field).collect(),
        }
    }

    fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches_value(Some(node_name)))
    }
}

/// A compiled `NodeSelector`: ORed terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelector {
    terms: Vec<Term>,
}

impl NodeSelector {
    /// Compiles an API node selector.
    pub fn new(selector: &ApiNodeSelector) -> Self {
        let terms = selector
            .node_selector_terms
            .iter()
            .map(|t| {
                Term::new(
                    t.match_expressions.as_deref().unwrap_or(&[]),
                    t.match_fields.as_deref().unwrap_or(&[]),
                )
            })
            .collect();
        NodeSelector { terms }
    }

    /// Compiles one preferred-scheduling term.
    pub fn single(term: &k8s_openapi::api::core::v1::NodeSelectorTerm) -> Self {
        NodeSelector {
            terms: vec![Term::new(
                term.match_expressions.as_deref().unwrap_or(&[]),
                term.match_fields.as_deref().unwrap_or(&[]),
            )],
        }
    }

    /// Whether a node with this name and labels matches any term.
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn label_selector_should_treat_null_as_nothing_and_empty_as_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!LabelSelector::new(None).matches(&l));
        assert!(LabelSelector::new(Some(&ApiLabelSelector::default())).matches(&l));
        let sel = ApiLabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(LabelSelector::new(Some(&sel)).matches(&l));
        assert!(!LabelSelector::new(Some(&sel)).matches(&labels(&[("app", "web"), ("tier", "x")])));
    }

    #[test]
    fn node_selector_should_or_terms_and_and_requirements() {
        let sel = ApiNodeSelector {
            node_selector_terms: vec![
                NodeSelectorTerm {
                    match_expressions: Some(vec![
                        req("zone", "In", &["a", "b"]),
                        req("cores", "Gt", &["4"]),
                    ]),
                    match_fields: None,
                },
                NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "In", &["n9"])]),
                },
                NodeSelectorTerm::default(),
            ],
        };
        let s = NodeSelector::new(&sel);
        assert!(s.matches("n1", &labels(&[("zone", "a"), ("cores", "8")])));
        assert!(!s.matches("n1", &labels(&[("zone", "a"), ("cores", "4")])));
        assert!(!s.matches("n1", &labels(&[("zone", "a"), ("cores", "many")])));
        assert!(s.matches("n9", &NO_LABELS));
        assert!(!s.matches("n2", &NO_LABELS));
    }

    #[test]
    fn requirement_should_match_nothing_for_a_bad_operator() {
        let r = Requirement::new("a", "Near", &[]);
        assert!(!r.matches(&labels(&[("a", "1")])));
        assert!(!Requirement::new("a", "Gt", &["x".into()]).matches(&labels(&[("a", "1")])));
    }
}
