//! Plugins exchange typed requests and replies through the kernel, by name or by kind.

use anyhow::Result;
use kubernel_api::echo::{Add, Echo, Forward, GetCount};
use kubernel_e2e::{kernel_section, plugin_entry, Kernel};

fn two_counters() -> Result<Kernel> {
    let config = kernel_section()
        + &plugin_entry("left", "counter")
        + &plugin_entry("right", "counter_next");
    Kernel::start(&config, &[])
}

#[test]
fn request_reply_should_cross_two_plugins() -> Result<()> {
    let k = two_counters()?;
    // `left` receives Forward and itself requests Echo from `right` through the kernel.
    let reply = k.ask(
        "left",
        &Forward {
            target: "right".into(),
            text: "hello".into(),
        },
    )?;
    assert_eq!(
        reply,
        Echo {
            text: "hello".into()
        }
    );
    // Addressing by kind: `@echo` is the first running plugin of kind "echo".
    let reply = k.ask(
        "right",
        &Forward {
            target: "@echo".into(),
            text: "by kind".into(),
        },
    )?;
    assert_eq!(reply.text, "by kind");
    // Each plugin keeps its own state.
    assert_eq!(k.ask("left", &Add { n: 5 })?, 5);
    assert_eq!(k.ask("right", &GetCount)?.total, 0);
    assert_eq!(k.ask("right", &GetCount)?.version, "0.2.0");
    let handled =
        k.metric("kubernel_bus_messages_total{from=\"left\",kind=\"echo.Echo\",to=\"right\"}")?;
    assert_eq!(handled, Some(1.0));
    Ok(())
}

#[test]
fn a_message_sent_while_the_plugin_starts_should_be_handled_once_it_runs() -> Result<()> {
    // The counter sends itself `Add { n: 7 }` from `init`, before its mailbox opens
    // (as a component's first API call is answered to its mailbox).
    let config = kernel_section()
        + &plugin_entry("counter", "counter")
        + "[plugin.config]\nstart = 10\nadd_on_start = 7\n";
    let mut k = Kernel::start(&config, &[])?;
    k.wait_until(
        std::time::Duration::from_secs(10),
        "the early Add handled",
        |k| Ok(k.ask("counter", &GetCount)?.total == 17),
    )?;
    assert_eq!(k.ask("counter", &Add { n: 0 })?, 17, "handled exactly once");
    Ok(())
}

#[test]
fn request_should_name_what_is_wrong() -> Result<()> {
    let k = two_counters()?;
    let err = k.request("nobody", &GetCount)?.expect_err("no such plugin");
    assert_eq!(err.status, "unavailable");
    assert!(
        err.message
            .contains("no plugin \"nobody\"; loaded: left, right"),
        "{}",
        err.message
    );

    let err = k
        .request(
            "left",
            &Forward {
                target: "left".into(),
                text: "loop".into(),
            },
        )?
        .expect_err("cycle");
    assert!(
        err.message
            .contains("already handling a message on this thread"),
        "{}",
        err.message
    );

    let err = k
        .request(
            "left",
            &kubernel_api::bench::Drive {
                target: "x".into(),
                count: 1,
                mode: kubernel_api::bench::DriveMode::Request,
            },
        )?
        .expect_err("unknown kind");
    assert_eq!(err.status, "unknown_kind");
    Ok(())
}

#[test]
fn published_events_should_reach_every_subscriber() -> Result<()> {
    let mut k = two_counters()?;
    k.publish(&kubernel_api::echo::Broadcast { n: 5 })?;
    k.wait_until(
        std::time::Duration::from_secs(10),
        "both subscribers",
        |k| Ok(k.ask("left", &GetCount)?.total == 5 && k.ask("right", &GetCount)?.total == 5),
    )?;
    assert_eq!(
        k.metric(
            "kubernel_bus_messages_total{from=\"admin\",kind=\"echo.Broadcast\",to=\"left\"}"
        )?,
        Some(1.0)
    );
    Ok(())
}

#[test]
fn a_plugin_built_before_the_traced_entry_points_should_load_and_answer() -> Result<()> {
    // Its descriptor stops before `handle_traced`: the kernel calls plain `handle`,
    // also for a message that carries trace context in its envelope.
    let k = Kernel::start(&(kernel_section() + &plugin_entry("old", "abi_base")), &[])?;
    let hello = Echo {
        text: "from an older SDK".into(),
    };
    assert_eq!(k.ask("old", &hello)?, hello);
    let traced = k.ask_traced(
        "old",
        &hello,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )?;
    assert_eq!(traced, hello);
    Ok(())
}
