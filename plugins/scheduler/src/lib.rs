//! The kubernel scheduler plugin: queue, cache, framework and in-tree plugins.
