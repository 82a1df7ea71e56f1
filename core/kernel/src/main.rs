//! The `kubernel` command: run the kernel, list and hot-swap its plugins, run benchmarks.

mod bench;
mod cli;
mod kubeconfig;
mod store;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// kubernel: a Kubernetes-compatible lab cluster in one binary of swappable plugins.
#[derive(Parser)]
#[command(name = "kubernel", version)]
struct Cli {
    /// Directory where the kernel and every plugin keep their state.
    #[arg(
        long,
        global = true,
        env = "KUBERNEL_DATA_DIR",
        default_value = "./.kubernel"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the kernel and the plugins its config names; SIGTERM drains them.
    Run {
        /// Config file (TOML); `KUBERNEL_<SECTION>__<KEY>` variables override its keys.
        #[arg(
            long,
            short,
            env = "KUBERNEL_CONFIG",
            default_value = "config/all-in-one.toml"
        )]
        config: PathBuf,
    },
    /// List the loaded plugins of a running kernel.
    Plugins {
        /// Admin endpoint (default: the address recorded in the data dir, else 127.0.0.1:10260).
        #[arg(long, env = "KUBERNEL_ADMIN_ADDR")]
        admin_addr: Option<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        output: cli::Output,
    },
    /// Hot-swap a running plugin to another build of it, without stopping the process.
    Swap {
        /// Plugin instance name (as in `kubernel plugins`), or `PLUGIN:EXTENSION` to
        /// swap one extension inside it (e.g. `scheduler:binpack`, a scheduler framework plugin).
        name: String,
        /// Path of the new plugin library (`.so`).
        path: PathBuf,
        /// Admin endpoint (default: the address recorded in the data dir, else 127.0.0.1:10260).
        #[arg(long, env = "KUBERNEL_ADMIN_ADDR")]
        admin_addr: Option<String>,
    },
    /// Move a cluster's objects between stores (embedded, etcd) as JSON lines.
    Store {
        #[command(subcommand)]
        what: StoreCommand,
        /// Admin endpoint of the kernel running the apiserver (default: the address
        /// recorded in the data dir, else 127.0.0.1:10260).
        #[arg(long, env = "KUBERNEL_ADMIN_ADDR", global = true)]
        admin_addr: Option<String>,
    },
    /// Issue a client certificate signed by the cluster CA (`<data-dir>/pki/`) and
    /// write a kubeconfig for it: `kubernel kubeconfig --user alice --group dev -o alice.kubeconfig`.
    Kubeconfig {
        /// User name (the certificate's CN).
        #[arg(long)]
        user: String,
        /// Group (an O of the certificate); at most two.
        #[arg(long)]
        group: Vec<String>,
        /// Output file, written 0600 (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Apiserver URL (default: the server of `<data-dir>/admin.kubeconfig`).
        #[arg(long)]
        server: Option<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Benchmarks printed, not asserted.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Write every stored object (uid, status and owner references included) as JSON lines.
    Export {
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write the objects of a `store export` file into the store; objects already
    /// present are left as they are; a bad line refuses the whole file.
    Import {
        /// A file written by `kubernel store export`.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Simulated nodes, pods created through the API: pods/s and latency to bound.
    Scheduler {
        /// Simulated nodes (the kubelet's `sim` runtime).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Pods to create.
        #[arg(long, default_value_t = 10000)]
        pods: usize,
        /// Concurrent clients creating pods.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// TOML lines for the scheduler's `[plugin.config]` (see `config/bench/`).
        #[arg(long)]
        scheduler_config: Option<PathBuf>,
        /// Give up waiting for bindings after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
        /// How the scheduler and the simulated kubelets reach the apiserver: `bus`
        /// (the kernel bus, the default in one process) or `http` (HTTPS).
        #[arg(long, default_value = "bus", value_parser = ["bus", "http"])]
        transport: String,
        /// Whether the simulated nodes run the pods bound to them (report them
        /// Running). `false` measures the scheduler alone, as upstream
        /// scheduler_perf does with its fake nodes.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        run_pods: bool,
    },
}

/// mimalloc for the kernel's own allocations. With its `override` feature it also
/// replaces `malloc` itself, which the plugins' Rust allocator (`System`) calls:
/// one allocator for the whole process. glibc's malloc spent about a fifth of the
/// apiserver's CPU on etcd (`cargo bench -p kubernel-apiserver --bench etcd`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // One TLS crypto provider for the process (the OTLP exporter's HTTP client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config } => kubernel_kernel::run::run(&config, &cli.data_dir),
        Command::Plugins { admin_addr, output } => {
            cli::plugins(&cli::admin_base(admin_addr, &cli.data_dir), output)
        }
        Command::Swap {
            name,
            path,
            admin_addr,
        } => cli::swap(&cli::admin_base(admin_addr, &cli.data_dir), &name, &path),
        Command::Store { what, admin_addr } => {
            let base = cli::admin_base(admin_addr, &cli.data_dir);
            match what {
                StoreCommand::Export { output } => store::export(&base, output.as_deref()),
                StoreCommand::Import { file } => store::import(&base, &file),
            }
        }
        Command::Kubeconfig {
            user,
            group,
            output,
            server,
            days,
        } => kubeconfig::issue(&kubeconfig::Request {
            data_dir: &cli.data_dir,
            user: &user,
            groups: &group,
            output: output.as_deref(),
            server: server.as_deref(),
            days,
        }),
        Command::Bench {
            what:
                BenchCommand::Scheduler {
                    nodes,
                    pods,
                    concurrency,
                    scheduler_config,
                    timeout_seconds,
                    transport,
                    run_pods,
                },
        } => bench::scheduler(
            &bench::SchedulerBench {
                nodes,
                pods,
                concurrency,
                scheduler_config,
                timeout: std::time::Duration::from_secs(timeout_seconds),
                transport,
                run_pods,
            },
            &cli.data_dir,
        ),
    };
    std::process::exit(code);
}
