//! `kubernel store export` / `kubernel store import`: a running cluster's objects out
//! to JSON lines and back in, through the apiserver plugin on the bus of the kernel
//! whose admin endpoint is given (see `kubernel_api::store` for the format).

use std::io::Write;
use std::path::Path;

use kubernel_api::codec;
use kubernel_api::store::{parse_lines, StoreExport, StoreExportPage, StoreImport, StoreImported};
use kubernel_api::Message;

use crate::cli::agent;

/// Objects per request.
const BATCH: usize = 500;

/// Sends `msg` to the apiserver plugin over the admin endpoint's bus route.
fn ask<M: Message>(base: &str, msg: &M) -> Result<M::Reply, String> {
    let body = codec::encode(M::KIND, msg).map_err(|e| format!("encoding {}: {e}", M::KIND))?;
    let url = format!("{base}/bus/request/@apiserver/{}", M::KIND);
    let mut resp = agent().post(&url).send(&body[..]).map_err(|e| {
        format!("cannot reach the admin endpoint at {base}: {e} (is `kubernel run` running? see --admin-addr)")
    })?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| format!("reading the answer: {e}"))?;
    if status != 200 {
        return Err(format!(
            "the apiserver refused: {}",
            String::from_utf8_lossy(&bytes).trim()
        ));
    }
    codec::decode(M::KIND, &bytes).map_err(|e| format!("decoding the answer: {e}"))
}

/// Writes every stored object to `output` (stdout when `None`); exit code.
pub fn export(base: &str, output: Option<&Path>) -> i32 {
    let mut out: Box<dyn Write> = match output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("kubernel: {}: {e}", path.display());
                return 1;
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut request = StoreExport {
        start_after: String::new(),
        limit: u32::try_from(BATCH).unwrap_or(500),
    };
    let mut objects = 0;
    let mut revision = 0;
    loop {
        let page: StoreExportPage = match ask(base, &request) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("kubernel: store export: {e}");
                return 1;
            }
        };
        objects += page.lines.lines().count();
        revision = revision.max(page.revision);
        if let Err(e) = out.write_all(page.lines.as_bytes()) {
            eprintln!("kubernel: store export: writing: {e}");
            return 1;
        }
        if page.next.is_empty() {
            break;
        }
        request.start_after = page.next;
    }
    if let Err(e) = out.flush() {
        eprintln!("kubernel: store export: writing: {e}");
        return 1;
    }
    eprintln!("exported {objects} objects (store revision {revision})");
    0
}

/// Imports the objects of `file` (JSON lines); checks every line before writing any.
pub fn import(base: &str, file: &Path) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kubernel: {}: {e}", file.display());
            return 1;
        }
    };
    if let Err(errors) = parse_lines(&text, 1) {
        for e in errors.iter().take(20) {
            eprintln!("kubernel: {}: {e}", file.display());
        }
        if errors.len() > 20 {
            eprintln!("kubernel: ... and {} more", errors.len() - 20);
        }
        eprintln!("kubernel: nothing imported");
        return 1;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut total = StoreImported {
        created: 0,
        existing: 0,
    };
    for (i, chunk) in lines.chunks(BATCH).enumerate() {
        let request = StoreImport {
            lines: chunk.join("\n"),
            first_line: u64::try_from(i * BATCH + 1).unwrap_or(0),
        };
        match ask(base, &request) {
            Ok(done) => {
                total.created += done.created;
                total.existing += done.existing;
            }
            Err(e) => {
                eprintln!(
                    "kubernel: store import: {e} ({} objects imported before this batch)",
                    total.created
                );
                return 1;
            }
        }
    }
    eprintln!(
        "imported {} objects ({} already present, left as they were)",
        total.created, total.existing
    );
    0
}
