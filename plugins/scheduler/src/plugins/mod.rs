//! In-tree plugins and the registry that knows them.
//!
//! Upstream plugins by their upstream names, plus the legacy priority functions of
//! our source notes. Out-of-tree plugins come from `.so` files (see [`crate::external`]).

pub mod default_binder;
pub mod default_preemption;
pub mod helpers;
pub mod inter_pod_affinity;
pub mod legacy;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::{Factory, PluginArgs, PluginError, PluginInstance, Registry};

/// Refuses args for a plugin that takes none.
fn no_args(name: &str, args: &PluginArgs) -> Result<(), PluginError> {
    match args {
        None => Ok(()),
        Some(toml::Value::Table(t)) if t.is_empty() => Ok(()),
        Some(_) => Err(PluginError::BadArgs {
            plugin: name.into(),
            message: "this plugin takes no args".into(),
        }),
    }
}

fn factory(
    f: impl Fn(&PluginArgs) -> Result<PluginInstance, PluginError> + Send + Sync + 'static,
) -> Factory {
    Arc::new(move |args, _ctx| f(args))
}

/// A registry with every in-tree plugin.
pub fn in_tree_registry() -> Registry {
    let mut r = Registry::new();
    let entries: Vec<(&str, Factory)> = vec![
        (
            priority_sort::NAME,
            factory(|a| {
                no_args(priority_sort::NAME, a)?;
                Ok(PluginInstance::new(priority_sort::NAME)
                    .queue_sort(Arc::new(priority_sort::PrioritySort)))
            }),
        ),
        (
            node_unschedulable::NAME,
            factory(|a| {
                no_args(node_unschedulable::NAME, a)?;
                Ok(PluginInstance::new(node_unschedulable::NAME)
                    .filter(Arc::new(node_unschedulable::NodeUnschedulable)))
            }),
        ),
        (
            node_name::NAME,
            factory(|a| {
                no_args(node_name::NAME, a)?;
                Ok(PluginInstance::new(node_name::NAME).filter(Arc::new(node_name::NodeName)))
            }),
        ),
        (
            taint_toleration::NAME,
            factory(|a| {
                no_args(taint_toleration::NAME, a)?;
                let p = Arc::new(taint_toleration::TaintToleration);
                Ok(PluginInstance::new(taint_toleration::NAME)
                    .filter(p.clone())
                    .pre_score(p.clone())
                    .score(p))
            }),
        ),
        (
            node_affinity::NAME,
            factory(|a| {
                no_args(node_affinity::NAME, a)?;
                let p = Arc::new(node_affinity::NodeAffinity);
                Ok(PluginInstance::new(node_affinity::NAME)
                    .pre_filter(p.clone())
                    .filter(p.clone())
                    .pre_score(p.clone())
                    .score(p))
            }),
        ),
        (
            node_ports::NAME,
            factory(|a| {
                no_args(node_ports::NAME, a)?;
                let p = Arc::new(node_ports::NodePorts);
                Ok(PluginInstance::new(node_ports::NAME)
                    .pre_filter(p.clone())
                    .filter(p))
            }),
        ),
        (
            node_resources::NAME,
            factory(|a| {
                let p = Arc::new(node_resources::Fit::new(a)?);
                Ok(PluginInstance::new(node_resources::NAME)
                    .filter(p.clone())
                    .score(p))
            }),
        ),
        (
            node_resources::balanced::NAME,
            factory(|a| {
                let p = Arc::new(node_resources::balanced::BalancedAllocation::new(a)?);
                Ok(PluginInstance::new(node_resources::balanced::NAME)
                    .pre_score(p.clone())
                    .score(p))
            }),
        ),
        (
            pod_topology_spread::NAME,
            factory(|a| {
                no_args(pod_topology_spread::NAME, a)?;
                let p = Arc::new(pod_topology_spread::PodTopologySpread);
                Ok(PluginInstance::new(pod_topology_spread::NAME)
                    .pre_filter(p.clone())
                    .filter(p.clone())
                    .pre_score(p.clone())
                    .score(p))
            }),
        ),
        (
            inter_pod_affinity::NAME,
            factory(|a| {
                no_args(inter_pod_affinity::NAME, a)?;
                let p = Arc::new(inter_pod_affinity::InterPodAffinity);
                Ok(PluginInstance::new(inter_pod_affinity::NAME)
                    .pre_filter(p.clone())
                    .filter(p.clone())
                    .pre_score(p.clone())
                    .score(p))
            }),
        ),
        (
            default_preemption::NAME,
            factory(|a| {
                no_args(default_preemption::NAME, a)?;
                Ok(PluginInstance::new(default_preemption::NAME)
                    .post_filter(Arc::new(default_preemption::DefaultPreemption)))
            }),
        ),
        (
            default_binder::NAME,
            factory(|a| {
                no_args(default_binder::NAME, a)?;
                Ok(PluginInstance::new(default_binder::NAME)
                    .bind(Arc::new(default_binder::DefaultBinder)))
            }),
        ),
        (
            legacy::LEAST_REQUESTED,
            factory(|a| {
                no_args(legacy::LEAST_REQUESTED, a)?;
                Ok(PluginInstance::new(legacy::LEAST_REQUESTED)
                    .score(Arc::new(legacy::LeastRequestedPriority)))
            }),
        ),
        (
            legacy::BALANCED,
            factory(|a| {
                no_args(legacy::BALANCED, a)?;
                Ok(PluginInstance::new(legacy::BALANCED)
                    .score(Arc::new(legacy::BalancedResourceAllocation)))
            }),
        ),
        (
            legacy::NODE_LABEL,
            factory(|a| {
                Ok(PluginInstance::new(legacy::NODE_LABEL)
                    .score(Arc::new(legacy::NodeLabelPriority::new(a)?)))
            }),
        ),
    ];
    for (name, f) in entries {
        // In-tree names are distinct constants; `replace` cannot collide here.
        r.replace(name, f);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::FactoryContext;

    #[test]
    fn in_tree_registry_should_build_every_plugin_with_default_args() {
        let r = in_tree_registry();
        let ctx = FactoryContext {
            profile: "p".into(),
            waiting_pods: crate::framework::WaitingPods::new(),
        };
        for name in r.names() {
            if name == legacy::NODE_LABEL {
                continue;
            }
            let (f, _) = r.get(name).expect("registered");
            let inst = f(&None, &ctx).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(inst.name, name);
            assert!(!inst.points().is_empty(), "{name}");
        }
        let (f, _) = r.get(node_name::NAME).expect("registered");
        let args = Some(toml::Value::Integer(1));
        assert!(f(&args, &ctx).is_err());
    }
}
