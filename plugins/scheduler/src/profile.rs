//! Builds one [`Framework`] per profile from the configuration and a plugin registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{PluginSet, ProfileConfig, SchedulerConfig, DEFAULT_PLUGINS};
use crate::framework::*;
use crate::metrics::Metrics;

/// Most plugins at one Filter or Score point (skips are kept in a 64-bit mask).
pub const MAX_PLUGINS_PER_POINT: usize = 64;

/// A profile could not be built; the message names the profile and the plugin.
///
/// Retrying with the same configuration and registry fails the same way.
#[derive(Debug, Clone, thiserror::Error)]
#[error("profile {profile:?}: {message}")]
pub struct BuildError {
    /// The profile's scheduler name.
    pub profile: String,
    /// The plugin at fault, when one is.
    pub plugin: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A built profile: its framework, and what each plugin was built from (to detect swaps).
pub struct Profile {
    /// The framework.
    pub framework: Arc<Framework>,
    /// Per plugin: registry revision, args, points and weight, as text.
    pub identities: BTreeMap<String, String>,
}

/// Point names in [`crate::config::Plugins`] order, with the set of each.
fn point_sets(p: &ProfileConfig) -> [(&'static str, &PluginSet); 11] {
    let s = &p.plugins;
    [
        ("queue_sort", &s.queue_sort),
        ("pre_filter", &s.pre_filter),
        ("filter", &s.filter),
        ("post_filter", &s.post_filter),
        ("pre_score", &s.pre_score),
        ("score", &s.score),
        ("reserve", &s.reserve),
        ("permit", &s.permit),
        ("pre_bind", &s.pre_bind),
        ("bind", &s.bind),
        ("post_bind", &s.post_bind),
    ]
}

fn default_weight(name: &str) -> i64 {
    DEFAULT_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(1, |(_, w)| (*w).max(1))
}

/// Builds the framework of `profile`.
pub fn build_profile(
    global: &SchedulerConfig,
    profile: &ProfileConfig,
    registry: &Registry,
    metrics: &Metrics,
    waiting_pods: &Arc<WaitingPods>,
) -> Result<Profile, BuildError> {
    let name = profile.scheduler_name.clone();
    let fail = |plugin: Option<&str>, message: String| BuildError {
        profile: name.clone(),
        plugin: plugin.map(String::from),
        message,
    };
    let mp = &profile.plugins.multi_point;
    let mut multi: Vec<(String, i64)> = DEFAULT_PLUGINS
        .iter()
        .filter(|(n, _)| !mp.disables(n))
        .map(|(n, w)| (n.to_string(), *w))
        .collect();
    for e in &mp.enabled {
        match multi.iter_mut().find(|(n, _)| *n == e.name) {
            Some(entry) => entry.1 = e.weight,
            None => multi.push((e.name.clone(), e.weight)),
        }
    }
    let mut wanted: Vec<&str> = multi.iter().map(|(n, _)| n.as_str()).collect();
    for (_, set) in point_sets(profile) {
        wanted.extend(set.enabled.iter().map(|e| e.name.as_str()));
    }
    let ctx = FactoryContext {
        profile: name.clone(),
        waiting_pods: waiting_pods.clone(),
    };
    let mut instances: HashMap<&str, PluginInstance> = HashMap::new();
    let mut identities = BTreeMap::new();
    for plugin in wanted {
        if instances.contains_key(plugin) {
            continue;
        }
        let Some((factory, revision)) = registry.get(plugin) else {
            let known: Vec<&str> = registry.names().collect();
            return Err(fail(
                Some(plugin),
                format!(
                    "plugin {plugin:?}: no such plugin; known: {}",
                    known.join(", ")
                ),
            ));
        };
        let args = profile
            .plugin_config
            .iter()
            .find(|c| c.name == plugin)
            .map(|c| c.args.clone());
        let inst = factory(&args, &ctx).map_err(|e| fail(Some(plugin), e.to_string()))?;
        identities.insert(
            plugin.to_string(),
            format!("revision {revision}, args {args:?}"),
        );
        instances.insert(plugin, inst);
    }
    // Effective (name, weight) list per point: multi-point entries the plugin
    // implements and the point does not disable, then the point's own entries.
    let mut lists: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    for (point, set) in point_sets(profile) {
        let implements = |n: &str| {
            instances
                .get(n)
                .is_some_and(|i| i.points().contains(&point))
        };
        let mut list: Vec<(String, i64)> = multi
            .iter()
            .filter(|(n, _)| implements(n) && !set.disables(n))
            .cloned()
            .collect();
        for e in &set.enabled {
            if !implements(&e.name) {
                return Err(fail(
                    Some(&e.name),
                    format!(
                        "plugins.{point}.enabled: plugin {:?} does not implement {point}",
                        e.name
                    ),
                ));
            }
            match list.iter_mut().find(|(n, _)| *n == e.name) {
                Some(entry) => entry.1 = e.weight,
                None => list.push((e.name.clone(), e.weight)),
            }
        }
        if list.len() > MAX_PLUGINS_PER_POINT {
            return Err(fail(
                None,
                format!("plugins.{point}: more than {MAX_PLUGINS_PER_POINT} plugins"),
            ));
        }
        for (n, w) in &list {
            if let Some(id) = identities.get_mut(n) {
                id.push_str(&format!(", {point}"));
                if point == "score" {
                    id.push_str(&format!(" weight {w}"));
                }
            }
        }
        lists.insert(point, list);
    }
    macro_rules! collect {
        ($point:literal, $field:ident) => {
            lists[$point]
                .iter()
                .filter_map(|(n, _)| instances.get(n.as_str()).and_then(|i| i.$field.clone()))
                .collect::<Vec<_>>()
        };
    }
    let queue_sorts = collect!("queue_sort", queue_sort);
    let [queue_sort] = <[_; 1]>::try_from(queue_sorts).map_err(|v: Vec<_>| {
        fail(
            None,
            format!(
                "plugins.queue_sort: exactly one queue sort plugin is required, found {}",
                v.len()
            ),
        )
    })?;
    let bind = collect!("bind", bind);
    if bind.is_empty() {
        return Err(fail(
            None,
            "plugins.bind: at least one bind plugin is required".into(),
        ));
    }
    let score = lists["score"]
        .iter()
        .filter_map(|(n, w)| {
            let weight = if *w > 0 { *w } else { default_weight(n) };
            instances
                .get(n.as_str())
                .and_then(|i| i.score.clone())
                .map(|s| (s, weight))
        })
        .collect();
    let mut events = HashMap::new();
    for (n, i) in &instances {
        let e = i
            .filter
            .as_ref()
            .map(|p| p.events_to_register())
            .or_else(|| i.pre_filter.as_ref().map(|p| p.events_to_register()))
            .unwrap_or(ClusterEvent::ALL);
        events.insert(n.to_string(), e);
    }
    let percentage = profile
        .percentage_of_nodes_to_score
        .or(global.percentage_of_nodes_to_score)
        .filter(|p| *p > 0);
    let framework = Framework {
        profile: name.clone(),
        queue_sort,
        pre_filter: collect!("pre_filter", pre_filter),
        filter: collect!("filter", filter),
        post_filter: collect!("post_filter", post_filter),
        pre_score: collect!("pre_score", pre_score),
        score,
        reserve: collect!("reserve", reserve),
        permit: collect!("permit", permit),
        pre_bind: collect!("pre_bind", pre_bind),
        bind,
        post_bind: collect!("post_bind", post_bind),
        events,
        percentage_of_nodes_to_score: percentage,
        record_scores: profile.record_scores,
        // More threads than cores only adds spawning cost.
        parallelism: global
            .parallelism
            .min(std::thread::available_parallelism().map_or(1, |n| n.get())),
        timers: metrics.point_timers(&name),
        metrics: metrics.clone(),
    };
    Ok(Profile {
        framework: Arc::new(framework),
        identities,
    })
}

/// Builds every profile; all must share one QueueSort plugin (one queue serves them all).
pub fn build_profiles(
    config: &SchedulerConfig,
    registry: &Registry,
    metrics: &Metrics,
    waiting_pods: &Arc<WaitingPods>,
) -> Result<Vec<Profile>, BuildError> {
    let profiles = config
        .profiles
        .iter()
        .map(|p| build_profile(config, p, registry, metrics, waiting_pods))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = profiles.first() {
        let sort = first.framework.queue_sort.name().to_string();
        if let Some(other) = profiles
            .iter()
            .find(|p| p.framework.queue_sort.name() != sort)
        {
            return Err(BuildError {
                profile: other.framework.profile.clone(),
                plugin: Some(other.framework.queue_sort.name().to_string()),
                message: format!("all profiles must use the same queue sort plugin ({sort:?})"),
            });
        }
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests;
