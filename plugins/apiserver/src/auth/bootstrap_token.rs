//! Bootstrap tokens, as kube-apiserver's `--enable-bootstrap-token-auth`: a bearer
//! token `<id>.<secret>` (6 and 16 characters of `[a-z0-9]`) authenticates as
//! `system:bootstrap:<id>` in `system:bootstrappers` (and the Secret's
//! `auth-extra-groups`) while the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token` holds that secret, allows authentication and has
//! not expired. Deleting the Secret revokes the token.

use base64::Engine;
use serde_json::Value;

use super::UserInfo;
use crate::store::Store;

/// The group of every bootstrap token.
pub const GROUP: &str = "system:bootstrappers";

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

/// `<id>.<secret>` split, when `token` has that shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// The user of a bootstrap token; `None` when the token does not have the shape
/// of one (another authenticator may know it).
pub fn authenticate(
    store: &dyn Store,
    token: &str,
    now: jiff::Timestamp,
) -> Option<Result<UserInfo, String>> {
    let (id, secret) = parse(token)?;
    Some(check(store, id, secret, now))
}

fn check(
    store: &dyn Store,
    id: &str,
    secret: &str,
    now: jiff::Timestamp,
) -> Result<UserInfo, String> {
    let name = format!("bootstrap-token-{id}");
    let stored = store
        .get(&format!("secrets/kube-system/{name}"))
        .map_err(|e| format!("reading secret kube-system/{name}: {e}"))?
        .ok_or_else(|| format!("bootstrap token {id}: no secret kube-system/{name}"))?;
    let object = &stored.object;
    if object["type"] != SECRET_TYPE {
        return Err(format!(
            "secret kube-system/{name} is not of type {SECRET_TYPE}"
        ));
    }
    if object["metadata"]["deletionTimestamp"].is_string() {
        return Err(format!("secret kube-system/{name} is being deleted"));
    }
    let data = |key: &str| decoded(&object["data"][key]);
    if data("token-secret").as_deref() != Some(secret) {
        return Err(format!("bootstrap token {id}: the secret does not match"));
    }
    if data("usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(format!(
            "bootstrap token {id}: not usable for authentication"
        ));
    }
    if let Some(expiration) = data("expiration") {
        let at: jiff::Timestamp = expiration
            .parse()
            .map_err(|e| format!("bootstrap token {id}: expiration {expiration:?}: {e}"))?;
        if at <= now {
            return Err(format!("bootstrap token {id} expired at {expiration}"));
        }
    }
    let mut groups = vec![GROUP.to_string()];
    for g in data("auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !g.starts_with("system:bootstrappers:") {
            return Err(format!(
                "bootstrap token {id}: extra group {g:?} must start with system:bootstrappers:"
            ));
        }
        groups.push(g.to_string());
    }
    Ok(UserInfo::new(format!("system:bootstrap:{id}"), "", groups))
}

/// A Secret `data` value: base64 text, decoded to UTF-8.
fn decoded(v: &Value) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_upstream_shape_should_be_a_bootstrap_token() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef.0123456789ABCDEF",
            "abcde.0123456789abcdef",
            "abcdef0123456789abcdef",
            "eyJ.x.y",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
