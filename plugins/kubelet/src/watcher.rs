//! An uncached list+watch loop: hands every listed and watched object to a callback and
//! keeps nothing itself, so a kubelet holding 100,000 pods stores only what it needs.

use std::time::Duration;

use futures::StreamExt;
use kubernel_client::{
    Api, Backoff, CancellationToken, ClientError, ListParams, ObjectResource, WatchEvent,
};

/// What the watch loop saw.
#[derive(Debug)]
pub enum Seen<K> {
    /// One page of a full list (at start and after every relist): these objects exist.
    Page(Vec<K>),
    /// The full list is complete: objects not in any of its pages are gone.
    Listed,
    /// An object was added or changed.
    Applied(K),
    /// An object was deleted; its last state.
    Deleted(K),
}

/// Lists (in pages of `params.limit`) then watches `api` with `params` until `shutdown`, relisting when the watch's
/// revision expires (410 Gone) and backing off after failures; `on` runs for every event.
pub async fn run<K: ObjectResource>(
    api: Api<K>,
    params: ListParams,
    shutdown: CancellationToken,
    mut on: impl FnMut(Seen<K>) + Send,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        let listed = tokio::select! {
            _ = shutdown.cancelled() => return,
            listed = list(&api, &params, &mut on) => listed,
        };
        let mut revision = match listed {
            Ok(revision) => {
                on(Seen::Listed);
                revision
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "list failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        loop {
            let end = tokio::select! {
                _ = shutdown.cancelled() => return,
                end = watch_from(&api, &params, &mut revision, &mut on) => end,
            };
            match end {
                End::Closed => backoff.reset(),
                End::Expired => break,
                End::Failed(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "watch failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// Lists page by page, handing each page over as it arrives; returns the list's revision.
async fn list<K: ObjectResource>(
    api: &Api<K>,
    params: &ListParams,
    on: &mut (impl FnMut(Seen<K>) + Send),
) -> Result<String, ClientError> {
    let mut token: Option<String> = None;
    loop {
        let (page, next) = api.list_page(params, token.as_deref()).await?;
        on(Seen::Page(page.items));
        match next {
            Some(t) => token = Some(t),
            None => return Ok(page.resource_version),
        }
    }
}

enum End {
    /// The server ended the watch (timeout): watch again from the same revision.
    Closed,
    /// The revision left the server's history: relist.
    Expired,
    /// The connection failed: back off, then watch again.
    Failed(String),
}

async fn watch_from<K: ObjectResource>(
    api: &Api<K>,
    params: &ListParams,
    revision: &mut String,
    on: &mut (impl FnMut(Seen<K>) + Send),
) -> End {
    let mut stream = match api.watch(params, revision).await {
        Ok(s) => Box::pin(s),
        Err(e) if e.code() == Some(410) => return End::Expired,
        Err(e) => return End::Failed(e.to_string()),
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                *revision = resource_version(&o);
                on(Seen::Applied(o));
            }
            Ok(WatchEvent::Deleted(o)) => {
                *revision = resource_version(&o);
                on(Seen::Deleted(o));
            }
            Ok(WatchEvent::Bookmark(r)) => *revision = r,
            Ok(WatchEvent::Error { code: 410, .. }) => return End::Expired,
            Ok(WatchEvent::Error { code, message }) => {
                return End::Failed(format!("watch error {code}: {message}"))
            }
            Err(e) => return End::Failed(e.to_string()),
        }
    }
    End::Closed
}

fn resource_version<K: ObjectResource>(o: &K) -> String {
    o.metadata().resource_version.clone().unwrap_or_default()
}
