//! The instance label every plugin sample carries in the kernel's exposition.

use prometheus::proto::{LabelPair, MetricFamily};

/// The label naming the plugin instance that exported a sample.
pub const INSTANCE_LABEL: &str = "plugin";

/// Where a metric has an `INSTANCE_LABEL` of its own (upstream's
/// `scheduler_plugin_execution_duration_seconds{plugin}` names a scheduler
/// plugin), the instance goes into this label instead: two labels of one name
/// make Prometheus refuse the whole scrape.
pub const INSTANCE_LABEL_ON_CONFLICT: &str = "kubernel_plugin";

/// Adds `plugin="<instance>"` (or `kubernel_plugin=` on a conflict) to every
/// metric of `families`, after its own labels.
pub fn label_instance(families: &mut [MetricFamily], instance: &str) {
    for family in families {
        for metric in family.mut_metric() {
            let mut labels = metric.take_label();
            let name = if labels.iter().any(|l| l.name() == INSTANCE_LABEL) {
                INSTANCE_LABEL_ON_CONFLICT
            } else {
                INSTANCE_LABEL
            };
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(instance.to_string());
            labels.push(pair);
            metric.set_label(labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

    fn exposition(registry: &Registry) -> String {
        let mut families = registry.gather();
        label_instance(&mut families, "scheduler");
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding of gathered families");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }

    #[test]
    fn label_instance_should_name_the_plugin_once_per_sample() {
        let registry = Registry::new();
        let swaps = IntCounterVec::new(Opts::new("swaps_total", "h"), &["plugin", "result"])
            .expect("valid metric");
        let attempts =
            IntCounterVec::new(Opts::new("attempts_total", "h"), &["result"]).expect("valid");
        registry.register(Box::new(swaps.clone())).expect("new");
        registry.register(Box::new(attempts.clone())).expect("new");
        swaps.with_label_values(&["Binpack", "success"]).inc();
        attempts.with_label_values(&["scheduled"]).inc();

        let text = exposition(&registry);
        assert!(
            text.contains(
                r#"swaps_total{plugin="Binpack",result="success",kubernel_plugin="scheduler"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"attempts_total{result="scheduled",plugin="scheduler"} 1"#),
            "{text}"
        );
    }
}
