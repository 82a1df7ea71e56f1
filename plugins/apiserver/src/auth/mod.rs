//! Authentication: who sent a request.
//!
//! As kube-apiserver's union authenticator: an x509 client certificate verified
//! against the cluster CA (CN = user, O = groups), else a bearer token from the static
//! token file, a bootstrap token (see [`bootstrap_token`]) or a service-account
//! token (see [`serviceaccount`]), else — when the request carries no credentials at all — the anonymous
//! user `system:anonymous` in `system:unauthenticated`. Every authenticated user is
//! also in `system:authenticated`. Invalid credentials are refused with 401 and the
//! reason goes to the log only.
//!
//! Requests over the bus are their plugin's component identity
//! (`system:kube-scheduler`, ...); requests over the loopback-only plain-HTTP port
//! (`insecure_port`) are `system:unsecured` in `system:masters`, as upstream's old
//! insecure port was.

pub mod abac;
pub mod bootstrap;
pub mod bootstrap_token;
pub mod node;
pub mod rbac;
pub mod serviceaccount;

use std::collections::HashMap;
use std::path::Path;

use axum::http::HeaderMap;

/// Group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group of the anonymous user.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The anonymous user.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group whose members may do anything (upstream's privileged group).
pub const MASTERS: &str = "system:masters";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID, when the authenticator knows one.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, ...), in order.
    pub extra: Vec<(String, String)>,
    /// Whether the request came from a plugin of this process over the bus.
    pub bus: bool,
}

impl UserInfo {
    fn new(name: impl Into<String>, uid: impl Into<String>, mut groups: Vec<String>) -> UserInfo {
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo {
            name: name.into(),
            uid: uid.into(),
            groups,
            extra: Vec::new(),
            bus: false,
        }
    }

    /// The anonymous user.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.into(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED.into()],
            extra: Vec::new(),
            bus: false,
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// How a request reached the apiserver: a request extension set by each transport.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The TLS port; the client certificate's user when the client sent a valid one.
    Tls(Option<UserInfo>),
    /// The loopback-only plain-HTTP port.
    Insecure,
    /// A plugin of this process, over the bus.
    Bus(String),
}

/// Why a request was not authenticated (logged, never sent).
#[derive(Debug)]
pub struct Unauthenticated(pub String);

/// The user of a client certificate already verified against the cluster CA:
/// CN is the user name, each O a group.
pub fn user_from_certificate(der: &[u8]) -> Result<UserInfo, String> {
    let (name, groups) = kubernel_pki::certificate_subject(der)?;
    Ok(UserInfo::new(name, "", groups))
}

/// A user named `name` in exactly `groups` (tests).
#[cfg(test)]
pub(crate) fn test_user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Vec::new(),
        bus: false,
    }
}

/// The identity of a plugin calling over the bus.
pub fn bus_user(plugin: &str) -> UserInfo {
    let name = match plugin {
        "scheduler" => "system:kube-scheduler".to_string(),
        "controller-manager" => "system:kube-controller-manager".to_string(),
        "proxy" => "system:kube-proxy".to_string(),
        "kubelet" => "system:kubelet".to_string(),
        other => format!("system:kubernel:{other}"),
    };
    let mut user = UserInfo::new(name, "", Vec::new());
    if plugin == "kubelet" {
        user.groups.insert(0, "system:nodes".into());
    }
    user.bus = true;
    user
}

/// Bearer tokens of a static token file (`--token-auth-file`).
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    /// Reads Kubernetes' CSV format: `token,user,uid[,"group1,group2,..."]`, one user per
    /// line; blank lines and lines starting with `#` are skipped.
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("config: key token_auth_file: {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| format!("config: key token_auth_file: {}: {e}", path.display()))
    }

    /// Parses the CSV text of a token file.
    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = csv_fields(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            if fields.len() < 3 {
                return Err(format!(
                    "line {}: want at least 3 fields (token,user,uid), got {}",
                    n + 1,
                    fields.len()
                ));
            }
            let (token, user, uid) = (&fields[0], &fields[1], &fields[2]);
            if token.is_empty() || user.is_empty() {
                return Err(format!(
                    "line {}: the token and the user must not be empty",
                    n + 1
                ));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if tokens
                .insert(
                    token.clone(),
                    UserInfo::new(user.clone(), uid.clone(), groups),
                )
                .is_some()
            {
                return Err(format!("line {}: duplicate token", n + 1));
            }
        }
        Ok(TokenFile { tokens })
    }

    fn user(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// Splits one CSV line; fields may be double-quoted (`""` is a quote inside one).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// Authenticates a request: its user, or why it is refused (401). `accounts`
/// checks service-account tokens against the objects they name in `store`.
pub fn authenticate(
    caller: &Caller,
    headers: &HeaderMap,
    tokens: &TokenFile,
    accounts: Option<(&serviceaccount::TokenIssuer, &dyn crate::store::Store)>,
    anonymous: bool,
) -> Result<UserInfo, Unauthenticated> {
    match caller {
        Caller::Bus(plugin) => return Ok(bus_user(plugin)),
        Caller::Insecure => {
            return Ok(UserInfo::new(
                "system:unsecured",
                "",
                vec![MASTERS.to_string()],
            ))
        }
        Caller::Tls(Some(user)) => return Ok(user.clone()),
        Caller::Tls(None) => {}
    }
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return if anonymous {
            Ok(UserInfo::anonymous())
        } else {
            Err(Unauthenticated(
                "no credentials and anonymous requests are off".into(),
            ))
        };
    };
    if values.next().is_some() {
        return Err(Unauthenticated("several Authorization headers".into()));
    }
    let text = value
        .to_str()
        .map_err(|_| Unauthenticated("an Authorization header that is not ASCII".into()))?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Unauthenticated(format!(
            "Authorization scheme {:?} is not supported (Bearer only)",
            scheme.chars().take(16).collect::<String>()
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Unauthenticated("an empty bearer token".into()));
    }
    if let Some(user) = tokens.user(token) {
        return Ok(user.clone());
    }
    if let Some((issuer, store)) = accounts {
        if let Some(result) = bootstrap_token::authenticate(store, token, jiff::Timestamp::now()) {
            return result.map_err(Unauthenticated);
        }
        if let Some(result) = issuer.authenticate(store, token) {
            return result.map_err(Unauthenticated);
        }
    }
    Err(Unauthenticated("invalid bearer token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = auth.parse() {
            h.insert(axum::http::header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn token_file_should_read_kubernetes_csv() {
        let f = TokenFile::parse(
            "# comment\nt1,alice,1001,\"dev,ops\"\nt2,bob,1002\n\n\"t3\",carol,1003,qa\n",
        )
        .expect("parse");
        let alice = f.user("t1").expect("alice");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, ["dev", "ops", AUTHENTICATED]);
        assert_eq!(f.user("t2").expect("bob").groups, [AUTHENTICATED]);
        assert_eq!(f.user("t3").expect("carol").groups, ["qa", AUTHENTICATED]);
    }

    #[test]
    fn token_file_should_name_the_bad_line() {
        let err = TokenFile::parse("t1,alice,1\nonly-two,fields\n").expect_err("bad");
        assert!(err.contains("line 2"), "{err}");
        let err = TokenFile::parse("t1,alice,1,\"dev\n").expect_err("bad");
        assert!(
            err.contains("line 1") && err.contains("unterminated"),
            "{err}"
        );
    }

    #[test]
    fn authenticate_should_refuse_garbage_and_allow_anonymous() {
        let tokens = TokenFile::parse("good,alice,1").expect("parse");
        let tls = Caller::Tls(None);
        let ok = authenticate(&tls, &headers("Bearer good"), &tokens, None, true).expect("token");
        assert_eq!(ok.name, "alice");
        for bad in [
            "Bearer nope",
            "Basic YWxpY2U6eA==",
            "Bearer ",
            "garbage",
            "Bearer good extra",
        ] {
            assert!(
                authenticate(&tls, &headers(bad), &tokens, None, true).is_err(),
                "{bad:?} accepted"
            );
        }
        let anon = authenticate(&tls, &HeaderMap::new(), &tokens, None, true).expect("anonymous");
        assert_eq!(anon.name, ANONYMOUS);
        assert!(authenticate(&tls, &HeaderMap::new(), &tokens, None, false).is_err());
    }
}
