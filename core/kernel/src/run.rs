//! `kubernel run`: start the kernel from a config file, serve the admin endpoint, drain on SIGTERM.

use std::path::Path;
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::Config;
use crate::kernel::Kernel;
use crate::{admin, logging, watch};

/// Exit code for a config or plugin the kernel cannot start with.
pub const EXIT_CONFIG: i32 = 2;

/// Runs the kernel until SIGTERM/SIGINT; returns the process exit code.
pub fn run(config_path: &Path, data_dir: &Path) -> i32 {
    let config = match Config::load(config_path, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kubernel: {e}");
            return EXIT_CONFIG;
        }
    };
    let (filter, filter_source) = match std::env::var("RUST_LOG") {
        Ok(f) => (f, "environment variable RUST_LOG".to_string()),
        Err(_) => (
            config.kernel.log_filter.clone(),
            format!("{}: kernel.log_filter", config_path.display()),
        ),
    };
    if let Err(e) = logging::check_filter(&filter) {
        eprintln!("kubernel: {filter_source}: invalid filter {filter:?}: {e}");
        return EXIT_CONFIG;
    }
    let guard = logging::init(config.kernel.log_format, &filter);
    if !config.kernel.transparent_huge_pages {
        if let Err(e) = disable_transparent_huge_pages() {
            tracing::warn!(error = %e, "cannot turn transparent huge pages off (kernel.transparent_huge_pages = false)");
        }
    }
    let system = actix::System::new();
    let code = system.block_on(serve(config, data_dir.to_path_buf()));
    guard.shutdown();
    code
}

/// Turns transparent huge pages off for this process (and children it forks), even
/// where the allocator asked for them with `madvise(MADV_HUGEPAGE)`.
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGTERM and SIGINT, registered before anything starts so no signal is missed.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

async fn serve(config: Config, data_dir: std::path::PathBuf) -> i32 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubernel: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let source = config.source.display().to_string();
    let admin_addr = config.kernel.admin_addr;
    let listener = match tokio::net::TcpListener::bind(admin_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kubernel: {source}: kernel.admin_addr {admin_addr}: {e}");
            return EXIT_CONFIG;
        }
    };
    let kernel = match Kernel::start(config, &data_dir) {
        Ok(k) => Arc::new(k),
        Err(e) => {
            eprintln!("kubernel: {source}: {e}");
            return EXIT_CONFIG;
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| admin_addr.to_string());
    // Written aside and renamed, so a reader never sees half an address.
    let staged = data_dir.join(".admin-addr.tmp");
    let recorded = std::fs::write(&staged, &bound)
        .and_then(|()| std::fs::rename(&staged, data_dir.join("admin-addr")));
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "cannot record the admin address in the data dir");
    }
    let router = admin::router(kernel.clone());
    actix_rt::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    actix_rt::spawn(watch::watch_config(kernel.clone()));
    tracing::info!(admin = %bound, plugins = kernel.bus.slots().len(), config = %source, "kubernel started");

    let first = signals.next().await;
    tracing::info!(
        signal = first,
        "shutting down: draining plugins in reverse start order"
    );
    tokio::select! {
        _ = kernel.drain() => {
            tracing::info!("all plugins drained; exiting");
            0
        }
        second = signals.next() => {
            tracing::warn!(signal = second, "second signal: exiting without finishing the drain");
            1
        }
    }
}
