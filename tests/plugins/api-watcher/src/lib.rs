//! API watcher test plugin: starts and stops watches over the bus for the tests, and records the events and ends it receives.

use std::collections::HashMap;

use kubernel_sdk::api::rest::{ApiWatch, ApiWatchEnded, ApiWatchEvents, ApiWatchStop};
use kubernel_sdk::api::Message;
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply};
use serde::{Deserialize, Serialize};

/// What the tests ask: the record of one watch id (the tests define the same type).
#[derive(Debug, Serialize, Deserialize)]
pub struct WatchLog {
    /// The watch id.
    pub id: String,
}

/// What was received for one watch id.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WatchRecord {
    /// The watch lines, in the order received.
    pub lines: Vec<String>,
    /// Number of `api.WatchEvents` messages (one per chunk).
    pub messages: u64,
    /// The `api.WatchEnded` reason, once ended.
    pub ended: Option<String>,
    /// Messages received after the end (must stay 0).
    pub after_end: u64,
}

impl Message for WatchLog {
    const KIND: &'static str = "test.WatchLog";
    type Reply = WatchRecord;
}

/// The watcher plugin instance.
pub struct ApiWatcher {
    ctx: Context,
    records: HashMap<String, WatchRecord>,
}

impl Plugin for ApiWatcher {
    type Config = serde::de::IgnoredAny;

    fn init(ctx: Context, _config: serde::de::IgnoredAny) -> Result<Self, PluginError> {
        Ok(ApiWatcher {
            ctx,
            records: HashMap::new(),
        })
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        match msg.kind {
            // From the test: watch or stop as this plugin, over the bus.
            ApiWatch::KIND => msg.reply::<ApiWatch>(|w| {
                let id = w.id.clone();
                let answer = self.ctx.request("@apiserver", &w)?;
                // Its events wait in this plugin's mailbox until this handler returns.
                if answer.status == 200 {
                    self.records.insert(id, WatchRecord::default());
                }
                Ok(answer)
            }),
            ApiWatchStop::KIND => {
                msg.reply::<ApiWatchStop>(|s| Ok(self.ctx.request("@apiserver", &s)?))
            }
            WatchLog::KIND => {
                msg.reply::<WatchLog>(|q| Ok(self.records.get(&q.id).cloned().unwrap_or_default()))
            }
            // From the apiserver.
            ApiWatchEvents::KIND => msg.reply::<ApiWatchEvents>(|e| {
                let record = self.records.entry(e.id).or_default();
                if record.ended.is_some() {
                    record.after_end += 1;
                }
                record.messages += 1;
                record
                    .lines
                    .extend(String::from_utf8_lossy(&e.lines).lines().map(str::to_owned));
                Ok(())
            }),
            ApiWatchEnded::KIND => msg.reply::<ApiWatchEnded>(|e| {
                let record = self.records.entry(e.id).or_default();
                if record.ended.is_some() {
                    record.after_end += 1;
                }
                record.ended = Some(e.reason);
                Ok(())
            }),
            other => Err(PluginError::UnknownKind(other.to_string())),
        }
    }
}

kubernel_sdk::export_plugin!(
    ApiWatcher,
    name = "api-watcher",
    kind = "test",
    state_version = 1
);
