//! The apiserver's side of `kubernel store export` / `import` (see
//! `kubernel_api::store`): pages of every stored object out, objects written into the
//! store as they are (uid, timestamps, owner references and status kept) in.

use kubernel_api::store::{parse_lines, StoreExport, StoreExportPage, StoreImport, StoreImported};
use serde_json::Value;

use crate::allocator::ServiceAllocator;
use crate::store::{ListOptions, Store, StoreError};

/// Objects per export page when the request does not say.
const DEFAULT_PAGE: usize = 1000;

/// True for a key under a served resource's prefix (`pods/...`, `deployments.apps/...`).
fn is_object_key(key: &str) -> bool {
    let prefix = key.split('/').next().unwrap_or_default();
    kubernel_api::resources::RESOURCES
        .iter()
        .any(|r| r.storage_prefix() == prefix)
}

/// One page of every stored object after `req.start_after`, in key order.
pub fn export_page(store: &dyn Store, req: &StoreExport) -> Result<StoreExportPage, String> {
    let limit = match req.limit {
        0 => DEFAULT_PAGE,
        n => usize::try_from(n).unwrap_or(DEFAULT_PAGE),
    };
    let page = store
        .list(&ListOptions {
            prefix: String::new(),
            start_after: (!req.start_after.is_empty()).then(|| req.start_after.clone()),
            limit: Some(limit),
            ..ListOptions::default()
        })
        .map_err(|e| format!("reading the store: {e}"))?;
    let mut lines = String::new();
    for item in page.items.iter().filter(|i| is_object_key(&i.key)) {
        lines.push_str(&String::from_utf8_lossy(&item.json));
        lines.push('\n');
    }
    let next = match page.items.last() {
        Some(last) if page.remaining > 0 => last.key.to_string(),
        _ => String::new(),
    };
    Ok(StoreExportPage {
        lines,
        next,
        revision: page.revision,
    })
}

/// Writes every object of `req` that is not stored yet; checks every line first.
/// Services bring their cluster IPs and node ports into the allocator.
pub async fn import(
    store: &dyn Store,
    services: &ServiceAllocator,
    req: StoreImport,
) -> Result<StoreImported, String> {
    let parsed = parse_lines(&req.lines, req.first_line).map_err(|errors| errors.join("; "))?;
    let mut done = StoreImported {
        created: 0,
        existing: 0,
    };
    let mut any_service = false;
    for (key, mut object) in parsed {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        match store.create(&key, object).await {
            Ok(_) => {
                done.created += 1;
                any_service |= key.starts_with("services/");
            }
            Err(StoreError::AlreadyExists { .. }) => done.existing += 1,
            Err(e) => {
                return Err(format!(
                    "writing {key}: {e} ({} objects written before it)",
                    done.created
                ))
            }
        }
    }
    if any_service {
        let all = store
            .list(&ListOptions {
                prefix: "services/".into(),
                ..ListOptions::default()
            })
            .map_err(|e| format!("reading the services back: {e}"))?;
        services.rebuild(&all.items);
    }
    Ok(done)
}
