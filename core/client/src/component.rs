//! The tokio runtime a component plugin runs its loops on: built when the plugin starts
//! or resumes, stopped (its tasks cancelled, then the runtime shut down within a
//! deadline) when it quiesces, is swapped or shuts down. Every component
//! (controller-manager, kubelet, proxy, scheduler) holds one.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A running component: its runtime and the token that stops its tasks.
pub struct ComponentRuntime {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    /// Receives once the component's main task has returned.
    finished: std::sync::mpsc::Receiver<()>,
}

impl ComponentRuntime {
    /// Builds a runtime of `worker_threads` threads named `name` and spawns
    /// `run(stop)` on it; `stop` is cancelled by [`ComponentRuntime::stop`] or with
    /// `parent` (the plugin's shutdown signal).
    pub fn start<F, Fut>(
        name: &str,
        worker_threads: usize,
        parent: &CancellationToken,
        run: F,
    ) -> Result<ComponentRuntime, String>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the {name} runtime: {e}"))?;
        let shutdown = parent.child_token();
        let (done, finished) = std::sync::mpsc::channel();
        let main = run(shutdown.clone());
        runtime.spawn(async move {
            main.await;
            let _ = done.send(());
        });
        Ok(ComponentRuntime {
            runtime,
            shutdown,
            finished,
        })
    }

    /// The runtime, to spawn more tasks or block on one from a plugin thread.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// Cancels the component's tasks, lets its main task finish its cleanup (closing
    /// listeners, removing rules) for at most `deadline`, then shuts the runtime down.
    /// Waits on a plain channel: callers may be on another runtime's thread.
    pub fn stop(self, deadline: Duration) {
        self.shutdown.cancel();
        let _ = self.finished.recv_timeout(deadline);
        self.runtime.shutdown_timeout(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn stop_should_cancel_the_component_task() {
        let parent = CancellationToken::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = stopped.clone();
        let rt = ComponentRuntime::start("t", 1, &parent, move |stop| async move {
            stop.cancelled().await;
            // Cleanup that awaits still runs before the runtime goes.
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen.store(true, Ordering::SeqCst);
        })
        .unwrap_or_else(|e| panic!("{e}"));
        rt.stop(Duration::from_secs(1));
        assert!(stopped.load(Ordering::SeqCst));
    }
}
