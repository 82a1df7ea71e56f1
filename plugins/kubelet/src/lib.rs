//! The kubernel kubelet plugin: node agent with the process and sim runtimes.
