//! The kubernel controller-manager plugin: reconcile loops that keep the cluster at its desired state.
