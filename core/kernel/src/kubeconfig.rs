//! `kubernel kubeconfig`: a client certificate signed by the cluster CA, in a kubeconfig.

use std::path::Path;

/// What to issue.
pub struct Request<'a> {
    /// The kernel's data dir (holds `pki/` and `admin.kubeconfig`).
    pub data_dir: &'a Path,
    /// User name (CN).
    pub user: &'a str,
    /// Groups (O).
    pub groups: &'a [String],
    /// Output file; standard output when `None`.
    pub output: Option<&'a Path>,
    /// Apiserver URL; the admin kubeconfig's when `None`.
    pub server: Option<&'a str>,
    /// Validity in days.
    pub days: u32,
}

/// Issues the certificate and writes the kubeconfig; the process exit code.
pub fn issue(req: &Request<'_>) -> i32 {
    match run(req) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kubernel kubeconfig: {e}");
            1
        }
    }
}

fn run(req: &Request<'_>) -> Result<(), String> {
    if req.user.trim().is_empty() {
        return Err("--user must not be empty".into());
    }
    if req.days == 0 {
        return Err("--days must be at least 1".into());
    }
    let ca = kubernel_pki::load_ca(&req.data_dir.join("pki"))?;
    let server = match req.server {
        Some(s) => s.to_string(),
        None => admin_server(&req.data_dir.join("admin.kubeconfig"))?,
    };
    if !server.starts_with("https://") {
        return Err(format!("--server {server:?} is not an https:// URL"));
    }
    let pair = kubernel_pki::issue_client(&ca, req.user, req.groups, i64::from(req.days))?;
    let text = kubernel_pki::kubeconfig(&server, &ca.cert_pem, req.user, &pair);
    match req.output {
        Some(path) => kubernel_pki::write_private(path, &text),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The `server:` of the admin kubeconfig the apiserver wrote.
fn admin_server(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "reading {} for the server URL (start the apiserver once, or give --server): {e}",
            path.display()
        )
    })?;
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server:")
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{} has no server: give --server", path.display()))
}
