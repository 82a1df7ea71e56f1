//! Out-of-tree scheduler score plugin: spread pods over the values of a node label (zone).
//!
//! Spreads the pods of one group (same controller, else same labels — the host's
//! `group` counts) over nodes and over the values of a node label, default
//! `topology.kubernetes.io/zone`, like upstream's SelectorSpread
//! (selector_spread.go): `node = 100·(maxNode − countNode)/maxNode` (100 when
//! `maxNode = 0`), `zone` likewise over zones, and
//! `score = node·(1 − 2/3) + zone·2/3` for a node with the label, else `node`.
//! Zone counts include every node of the zone, not only the candidates.
//! Arguments: `{ label = "..." }`.

use kubernel_scheduler_sdk::{export_scheduler_plugin, Cycle, Plugin, ScorePlugin};

/// Default label whose values are the spreading domains.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Weight of the zone score against the node score (upstream `zoneWeighting`).
const ZONE_WEIGHTING: f64 = 2.0 / 3.0;

/// The zone-spread scorer.
pub struct ZoneSpread {
    label: String,
}

/// `100·(max − count)/max`, or 100 when `max` is 0.
pub fn spread_score(max: u32, count: u32) -> f64 {
    if max == 0 {
        return 100.0;
    }
    100.0 * f64::from(max.saturating_sub(count)) / f64::from(max)
}

impl Plugin for ZoneSpread {
    const NAME: &'static str = "ZoneSpread";

    fn new(args: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(args).map_err(|e| format!("args: {e}"))?;
        let label = match v.get("label") {
            None | Some(serde_json::Value::Null) => ZONE_LABEL.to_string(),
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                return Err(format!(
                    "args: label must be a non-empty string, got {other}"
                ))
            }
        };
        Ok(ZoneSpread { label })
    }
}

impl ScorePlugin for ZoneSpread {
    fn score(&self, c: &Cycle<'_>, scores: &mut [i64]) -> Result<(), String> {
        let key = c.lookup(&self.label);
        let zone_of = |node: u32| key.and_then(|k| c.nodes.label(node, k));
        // Counts per node index, and per zone (few zones: a short list beats a map).
        let mut per_node = vec![0u32; c.nodes.len()];
        let mut per_zone: Vec<(u32, u32)> = Vec::new();
        for g in c.pod.group {
            if let Some(n) = per_node.get_mut(g.node as usize) {
                *n += g.count;
            }
            if let Some(z) = zone_of(g.node) {
                match per_zone.iter_mut().find(|(id, _)| *id == z) {
                    Some((_, n)) => *n += g.count,
                    None => per_zone.push((z, g.count)),
                }
            }
        }
        let count = |n: &u32| per_node.get(*n as usize).copied().unwrap_or(0);
        let max_node = c.candidates.iter().map(count).max().unwrap_or(0);
        let max_zone = per_zone.iter().map(|(_, n)| *n).max().unwrap_or(0);
        for (score, node) in scores.iter_mut().zip(c.candidates) {
            let mut s = spread_score(max_node, count(node));
            if let Some(z) = zone_of(*node) {
                let in_zone = per_zone
                    .iter()
                    .find(|(id, _)| *id == z)
                    .map_or(0, |(_, n)| *n);
                s = s * (1.0 - ZONE_WEIGHTING) + spread_score(max_zone, in_zone) * ZONE_WEIGHTING;
            }
            *score = s as i64;
        }
        Ok(())
    }
}

export_scheduler_plugin!(ZoneSpread, score);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_score_should_favour_empty_domains() {
        // max 4, count 1: 100·3/4 = 75; node 75 in a zone scoring 50: 75/3 + 50·2/3 = 58.3.
        assert_eq!(spread_score(4, 1), 75.0);
        assert_eq!(spread_score(0, 0), 100.0);
        let s = spread_score(4, 1) * (1.0 - ZONE_WEIGHTING) + spread_score(2, 1) * ZONE_WEIGHTING;
        assert_eq!(s as i64, 58);
    }

    #[test]
    fn new_should_default_the_label_and_refuse_a_bad_one() {
        assert_eq!(
            ZoneSpread::new("null").map(|z| z.label).as_deref(),
            Ok(ZONE_LABEL)
        );
        assert!(ZoneSpread::new(r#"{"label": 3}"#).is_err());
    }
}
