//! The plugin registry: name -> factory, rejecting duplicates.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::interface::*;

/// A plugin's configured `args` (`plugin_config = [{ name, args }]`), if any.
pub type PluginArgs = Option<toml::Value>;

/// What a factory knows about the profile it builds for.
#[derive(Clone, Debug)]
pub struct FactoryContext {
    /// The profile's scheduler name.
    pub profile: String,
    /// The scheduler's pods waiting on Permit (to allow or reject them).
    pub waiting_pods: Arc<super::WaitingPods>,
}

/// A plugin could not be created; retrying the same configuration fails the same way.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The plugin's `args` are invalid.
    #[error("plugin {plugin}: invalid args: {message}")]
    BadArgs {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// An out-of-tree plugin's library refused to create an instance.
    #[error("plugin {plugin}: {message}")]
    External {
        /// Plugin name.
        plugin: String,
        /// The library's message.
        message: String,
    },
}

impl PluginError {
    /// Deserialises `args` into `T` (defaults when absent), naming the plugin on error.
    pub fn parse_args<T>(plugin: &str, args: &PluginArgs) -> Result<T, PluginError>
    where
        T: serde::de::DeserializeOwned + Default,
    {
        match args {
            None => Ok(T::default()),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| PluginError::BadArgs {
                    plugin: plugin.to_string(),
                    message: e.message().to_string(),
                }),
        }
    }
}

/// One created plugin: the extension points it implements.
///
/// A factory wraps one plugin object in every point it extends:
/// `PluginInstance::new(name).filter(p.clone()).score(p)`.
#[derive(Clone, Default)]
pub struct PluginInstance {
    /// Plugin name.
    pub name: String,
    /// QueueSort.
    pub queue_sort: Option<Arc<dyn QueueSortPlugin>>,
    /// PreFilter.
    pub pre_filter: Option<Arc<dyn PreFilterPlugin>>,
    /// Filter.
    pub filter: Option<Arc<dyn FilterPlugin>>,
    /// PostFilter.
    pub post_filter: Option<Arc<dyn PostFilterPlugin>>,
    /// PreScore.
    pub pre_score: Option<Arc<dyn PreScorePlugin>>,
    /// Score.
    pub score: Option<Arc<dyn ScorePlugin>>,
    /// Reserve.
    pub reserve: Option<Arc<dyn ReservePlugin>>,
    /// Permit.
    pub permit: Option<Arc<dyn PermitPlugin>>,
    /// PreBind.
    pub pre_bind: Option<Arc<dyn PreBindPlugin>>,
    /// Bind.
    pub bind: Option<Arc<dyn BindPlugin>>,
    /// PostBind.
    pub post_bind: Option<Arc<dyn PostBindPlugin>>,
}

impl fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginInstance({}: {:?})", self.name, self.points())
    }
}

macro_rules! setter {
    ($($field:ident: $trait:ident),* $(,)?) => {
        impl PluginInstance {
            $(
                #[doc = concat!("Registers the plugin at the `", stringify!($field), "` extension point.")]
                pub fn $field(mut self, p: Arc<dyn $trait>) -> Self {
                    self.$field = Some(p);
                    self
                }
            )*
        }
    };
}

setter!(
    queue_sort: QueueSortPlugin,
    pre_filter: PreFilterPlugin,
    filter: FilterPlugin,
    post_filter: PostFilterPlugin,
    pre_score: PreScorePlugin,
    score: ScorePlugin,
    reserve: ReservePlugin,
    permit: PermitPlugin,
    pre_bind: PreBindPlugin,
    bind: BindPlugin,
    post_bind: PostBindPlugin,
);

impl PluginInstance {
    /// An instance implementing no point yet.
    pub fn new(name: &str) -> Self {
        PluginInstance {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Config names of the points this instance implements.
    pub fn points(&self) -> Vec<&'static str> {
        let all = [
            ("queue_sort", self.queue_sort.is_some()),
            ("pre_filter", self.pre_filter.is_some()),
            ("filter", self.filter.is_some()),
            ("post_filter", self.post_filter.is_some()),
            ("pre_score", self.pre_score.is_some()),
            ("score", self.score.is_some()),
            ("reserve", self.reserve.is_some()),
            ("permit", self.permit.is_some()),
            ("pre_bind", self.pre_bind.is_some()),
            ("bind", self.bind.is_some()),
            ("post_bind", self.post_bind.is_some()),
        ];
        all.iter().filter(|(_, on)| *on).map(|(p, _)| *p).collect()
    }
}

/// Creates a plugin from its args.
pub type Factory =
    Arc<dyn Fn(&PluginArgs, &FactoryContext) -> Result<PluginInstance, PluginError> + Send + Sync>;

/// The registry was asked to register a name twice; the first registration stands.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {0:?} is already registered")]
pub struct DuplicatePlugin(pub String);

/// Plugin factories by name, each with a revision bumped when it is replaced.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, (Factory, u64)>,
    next_revision: u64,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `factory` under `name`; refuses a name already registered.
    pub fn register(&mut self, name: &str, factory: Factory) -> Result<(), DuplicatePlugin> {
        if self.factories.contains_key(name) {
            return Err(DuplicatePlugin(name.to_string()));
        }
        self.replace(name, factory);
        Ok(())
    }

    /// Registers or replaces `name` (hot swap of a plugin library); returns its new revision.
    pub fn replace(&mut self, name: &str, factory: Factory) -> u64 {
        self.next_revision += 1;
        self.factories
            .insert(name.to_string(), (factory, self.next_revision));
        self.next_revision
    }

    /// The factory and revision of `name`.
    pub fn get(&self, name: &str) -> Option<(&Factory, u64)> {
        self.factories.get(name).map(|(f, r)| (f, *r))
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory() -> Factory {
        Arc::new(|_, _| Ok(PluginInstance::new("X")))
    }

    #[test]
    fn registry_should_reject_duplicates_and_bump_revisions_on_replace() {
        let mut r = Registry::new();
        r.register("X", factory()).expect("first");
        assert_eq!(
            r.register("X", factory()).err().map(|e| e.to_string()),
            Some("plugin \"X\" is already registered".to_string())
        );
        let before = r.get("X").map(|(_, rev)| rev);
        r.replace("X", factory());
        assert!(r.get("X").map(|(_, rev)| rev) > before);
        assert_eq!(r.names().collect::<Vec<_>>(), vec!["X"]);
    }
}
