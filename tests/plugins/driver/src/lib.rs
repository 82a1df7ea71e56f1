//! Bench driver test plugin: runs timed requests or sends against another plugin.

use std::time::{Duration, Instant};

use kubernel_sdk::api::bench::{Drive, DriveMode, DriveReport};
use kubernel_sdk::api::echo::{Add, Echo, GetCount};
use kubernel_sdk::api::Message;
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply};

/// The driver plugin instance.
pub struct Driver {
    ctx: Context,
}

/// How long a `Send` run waits for the target to drain its mailbox.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

impl Driver {
    fn drive(&self, d: Drive) -> Result<DriveReport, PluginError> {
        let mut report = DriveReport {
            ok: 0,
            failed: 0,
            elapsed_ns: 0,
            latencies_ns: Vec::new(),
        };
        let start = Instant::now();
        match d.mode {
            DriveMode::Request => {
                report.latencies_ns.reserve(d.count as usize);
                let echo = Echo {
                    text: "ping".to_string(),
                };
                for _ in 0..d.count {
                    let t = Instant::now();
                    let ok = self.ctx.request(&d.target, &echo).is_ok();
                    report.latencies_ns.push(t.elapsed().as_nanos() as u64);
                    if ok {
                        report.ok += 1
                    } else {
                        report.failed += 1
                    }
                }
                report.latencies_ns.sort_unstable();
            }
            DriveMode::Send => {
                let before = self.ctx.request(&d.target, &GetCount)?.adds;
                for _ in 0..d.count {
                    match self.ctx.send(&d.target, &Add { n: 1 }) {
                        Ok(()) => report.ok += 1,
                        Err(_) => report.failed += 1,
                    }
                }
                let deadline = Instant::now() + DRAIN_TIMEOUT;
                while self.ctx.request(&d.target, &GetCount)?.adds < before + report.ok {
                    if Instant::now() > deadline {
                        return Err(PluginError::failed(
                            "target did not drain its mailbox in time",
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        report.elapsed_ns = start.elapsed().as_nanos() as u64;
        Ok(report)
    }
}

impl Plugin for Driver {
    type Config = serde::de::IgnoredAny;

    fn init(ctx: Context, _config: serde::de::IgnoredAny) -> Result<Self, PluginError> {
        Ok(Driver { ctx })
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        match msg.kind {
            Drive::KIND => msg.reply::<Drive>(|d| self.drive(d)),
            other => Err(PluginError::UnknownKind(other.to_string())),
        }
    }
}

kubernel_sdk::export_plugin!(Driver, name = "driver", kind = "bench", state_version = 1);
