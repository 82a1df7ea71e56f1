//! The `kubernel` command: run the kernel, list and hot-swap its plugins.

mod cli;

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
}

fn main() {
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
    };
    std::process::exit(code);
}
