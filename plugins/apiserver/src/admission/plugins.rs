//! Which admission plugins run (`--enable-admission-plugins`,
//! `--disable-admission-plugins`): every one of ours is on by default; a config
//! turns some off, or names them again to keep them on.

/// Our admission plugins, in the order they run on a pod create.
pub const ALL: [&str; 8] = [
    "NamespaceLifecycle",
    "Priority",
    "LimitRanger",
    "ServiceAccount",
    "PodSecurity",
    "DefaultTolerationSeconds",
    "NodeRestriction",
    "ResourceQuota",
];

/// The admission plugins that run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPlugins {
    on: [bool; ALL.len()],
}

impl Default for AdmissionPlugins {
    fn default() -> Self {
        AdmissionPlugins {
            on: [true; ALL.len()],
        }
    }
}

impl AdmissionPlugins {
    /// The defaults, plus `enable`, minus `disable` (a name in both is refused, as
    /// upstream does); unknown names are refused with the known ones listed.
    pub fn from_lists(enable: &[String], disable: &[String]) -> Result<Self, String> {
        let index = |key: &str, name: &str| {
            ALL.iter().position(|n| *n == name).ok_or_else(|| {
                format!(
                    "config: key {key}: unknown admission plugin {name:?}; known: {}",
                    ALL.join(", ")
                )
            })
        };
        let mut plugins = AdmissionPlugins::default();
        for name in enable {
            index("enable_admission_plugins", name)?;
            if disable.contains(name) {
                return Err(format!(
                    "config: admission plugin {name:?} is both enabled and disabled"
                ));
            }
        }
        for name in disable {
            plugins.on[index("disable_admission_plugins", name)?] = false;
        }
        Ok(plugins)
    }

    /// Whether `name` (one of [`ALL`]) runs.
    pub fn enabled(&self, name: &str) -> bool {
        ALL.iter()
            .position(|n| *n == name)
            .is_some_and(|i| self.on[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_plugin_should_run_unless_disabled() {
        let p = AdmissionPlugins::from_lists(&[], &names(&["LimitRanger"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.enabled("LimitRanger"));
        assert!(p.enabled("PodSecurity"));
        assert!(AdmissionPlugins::default().enabled("ResourceQuota"));
    }

    #[test]
    fn unknown_and_contradictory_names_should_be_refused() {
        let err = AdmissionPlugins::from_lists(&names(&["AlwaysPullImages"]), &[])
            .err()
            .unwrap_or_default();
        assert!(err.contains("enable_admission_plugins") && err.contains("AlwaysPullImages"));
        let err = AdmissionPlugins::from_lists(&names(&["Priority"]), &names(&["Priority"]))
            .err()
            .unwrap_or_default();
        assert!(err.contains("both enabled and disabled"), "{err}");
    }
}
