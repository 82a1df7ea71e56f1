//! The controller runtime every controller shares: a rate-limited work queue of
//! object keys fed by informer changes, and workers that reconcile one key at a
//! time (never two workers on the same key) and requeue as the reconcile asks.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use kubernel_client::{CancellationToken, Change, ObjectResource, WorkQueue};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Instrument as _;

/// What a reconcile asks for once it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile the key again after this long even without a change.
    Requeue(Duration),
    /// Nothing to do until an informer reports a change.
    AwaitChange,
}

/// The work queue key of an object: `namespace/name`, or `name` when cluster-scoped
/// (the informer cache's key).
pub fn key_of<K: ObjectResource>(object: &K) -> String {
    let meta = object.metadata();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a `namespace/name` key (a cluster-scoped key has an empty namespace).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Runs `f` on every change an informer reports until the stream ends or `shutdown`.
pub fn on_change<K, F>(
    mut changes: UnboundedReceiver<Change<K>>,
    shutdown: CancellationToken,
    mut f: F,
) where
    K: ObjectResource,
    F: FnMut(Change<K>) + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = changes.recv() => c,
            };
            match change {
                Some(c) => f(c),
                None => return,
            }
        }
    });
}

/// Starts `workers` tasks that take keys from `queue` and reconcile them; the
/// queue shuts down with `shutdown`. A failed reconcile is retried with the
/// queue's growing delay; a successful one forgets the key's failures.
pub fn run_workers<F, Fut, E>(
    controller: &'static str,
    queue: WorkQueue<String>,
    workers: usize,
    shutdown: CancellationToken,
    reconcile: F,
) where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let q = queue.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        q.shut_down();
    });
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                let span = tracing::info_span!(
                    "reconcile",
                    otel.name = %format_args!("reconcile {controller}"),
                    controller,
                    key = key.as_str(),
                    result = tracing::field::Empty,
                );
                let result = reconcile(key.clone()).instrument(span.clone()).await;
                span.record(
                    "result",
                    match &result {
                        Ok(Action::AwaitChange) => "success",
                        Ok(Action::Requeue(_)) => "requeue",
                        Err(_) => "error",
                    },
                );
                drop(span);
                match result {
                    Ok(Action::AwaitChange) => queue.forget(&key),
                    Ok(Action::Requeue(after)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), after);
                    }
                    Err(e) => {
                        tracing::warn!(controller, key = %key, retries = queue.retries(&key), error = %e, "reconcile failed; retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_key_should_separate_namespace_and_name() {
        assert_eq!(split_key("ns/web"), ("ns", "web"));
        assert_eq!(split_key("node-1"), ("", "node-1"));
    }

    #[tokio::test]
    async fn workers_should_requeue_failures_and_stop_on_shutdown() {
        let queue = WorkQueue::with_delays(
            "t",
            None,
            Duration::from_millis(1),
            Duration::from_millis(5),
        );
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = attempts.clone();
        run_workers(
            "t",
            queue.clone(),
            2,
            shutdown.clone(),
            move |key: String| {
                let tx = tx.clone();
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let _ = tx.send(key);
                    if n < 2 {
                        Err("not yet")
                    } else {
                        Ok(Action::AwaitChange)
                    }
                }
            },
        );
        queue.add("a".to_string());
        for _ in 0..3 {
            let key = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .expect("reconciled");
            assert_eq!(key.as_deref(), Some("a"));
        }
        assert_eq!(
            queue.retries(&"a".to_string()),
            0,
            "forgotten after success"
        );
        shutdown.cancel();
    }
}
