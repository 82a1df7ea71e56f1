//! ServiceAccount tokens: JWTs signed with the cluster's service-account key (ES256),
//! issued through the TokenRequest subresource (`serviceaccounts/<name>/token`) and
//! accepted as bearer tokens, as kube-apiserver's bound service-account tokens are.
//!
//! A token names its ServiceAccount (and, when bound, the Pod or Secret it is bound
//! to) by name and UID; it authenticates only while those objects still exist with
//! the same UID, so deleting a pod revokes the tokens projected into it. The user is
//! `system:serviceaccount:<namespace>:<name>` in `system:serviceaccounts` and
//! `system:serviceaccounts:<namespace>`.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::UserInfo;
use crate::store::Store;

/// The issuer (`iss`) of our tokens, and the audience the API accepts by default:
/// kube-apiserver's default `--service-account-issuer` of kubeadm clusters.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Shortest lifetime a TokenRequest may ask for (upstream: 10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// Lifetime when a TokenRequest names none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The lifetime the kubelet's projected volumes ask for; such pod-bound tokens are
/// issued for a year instead, as kube-apiserver's
/// `--service-account-extend-token-expiration` (on by default) does, so that
/// clients that never re-read the file keep working.
pub const PROJECTED_EXPIRATION_SECONDS: i64 = 3607;

/// Lifetime of an extended projected token: one year.
const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 3600;

/// Group of every service account.
pub const ALL_GROUP: &str = "system:serviceaccounts";

/// What a token is bound to besides its ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    /// Object name.
    pub name: String,
    /// Object UID.
    pub uid: String,
}

/// The `kubernetes.io` claim: what the token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: Ref,
    /// The Pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    /// The Secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    /// After this time (seconds since the epoch) an extended token should have
    /// been refreshed (upstream's `warnafter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// What the token names.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// What a TokenRequest asks for, after defaulting and validation.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: Ref,
    /// Audiences (empty: the API's).
    pub audiences: Vec<String>,
    /// Requested lifetime.
    pub expiration_seconds: i64,
    /// Bound Pod.
    pub pod: Option<Ref>,
    /// Bound Secret.
    pub secret: Option<Ref>,
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// Its audiences (the API's when the request named none).
    pub audiences: Vec<String>,
    /// Its expiry, seconds since the epoch.
    pub expires: i64,
}

/// Signs and verifies service-account tokens with the cluster's key.
pub struct TokenIssuer {
    signing: EncodingKey,
    verifying: DecodingKey,
    issuer: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// The issuer of the key pair `sa.key`/`sa.pub` (PEM, ECDSA P-256) in `pki`.
    pub fn load(pki: &Path, issuer: &str) -> Result<TokenIssuer, String> {
        let read = |name: &str| {
            let path = pki.join(name);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let key = read(kubernel_pki::SA_KEY)?;
        let public = read(kubernel_pki::SA_PUB)?;
        Self::from_pem(&key, &public, issuer)
    }

    /// The issuer of a PEM key pair (PKCS#8 private key, SPKI public key).
    pub fn from_pem(key: &[u8], public: &[u8], issuer: &str) -> Result<TokenIssuer, String> {
        Ok(TokenIssuer {
            signing: EncodingKey::from_ec_pem(key)
                .map_err(|e| format!("service-account key: {e}"))?,
            verifying: DecodingKey::from_ec_pem(public)
                .map_err(|e| format!("service-account public key: {e}"))?,
            issuer: issuer.to_string(),
        })
    }

    /// The audiences the API accepts: the issuer.
    pub fn api_audiences(&self) -> Vec<String> {
        vec![self.issuer.clone()]
    }

    /// Signs a token for `spec` at `now` (seconds since the epoch).
    pub fn issue(&self, spec: &TokenSpec, now: i64) -> Result<Issued, String> {
        let audiences = if spec.audiences.is_empty() {
            self.api_audiences()
        } else {
            spec.audiences.clone()
        };
        let extend = spec.pod.is_some() && spec.expiration_seconds == PROJECTED_EXPIRATION_SECONDS;
        let lifetime = if extend {
            EXTENDED_EXPIRATION_SECONDS
        } else {
            spec.expiration_seconds
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: format!(
                "system:serviceaccount:{}:{}",
                spec.namespace, spec.serviceaccount.name
            ),
            aud: audiences.clone(),
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: crate::objects::new_uid(),
            kubernetes: KubernetesClaim {
                namespace: spec.namespace.clone(),
                serviceaccount: spec.serviceaccount.clone(),
                pod: spec.pod.clone(),
                secret: spec.secret.clone(),
                warnafter: extend.then_some(now + spec.expiration_seconds),
            },
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.signing)
            .map_err(|e| format!("signing the token: {e}"))?;
        Ok(Issued {
            token,
            audiences,
            // A token's reported expiry is the one asked for, even when extended.
            expires: now + spec.expiration_seconds,
        })
    }

    /// The claims of a token this issuer signed for the API, checked: signature,
    /// issuer, audience, expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.api_audiences());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation)
            .map(|data| data.claims)
            .map_err(|e| format!("service account token: {e}"))
    }

    /// The user of a valid token whose ServiceAccount (and bound object) still
    /// exist with the UIDs it names; `None` when the token is not one of ours
    /// (another authenticator may know it).
    pub fn authenticate(&self, store: &dyn Store, token: &str) -> Option<Result<UserInfo, String>> {
        if !looks_like_jwt(token) {
            return None;
        }
        Some(
            self.verify(token)
                .and_then(|claims| user_of(store, &claims)),
        )
    }
}

/// Three base64url parts separated by dots, the first a JSON object.
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// Checks that what the claims name still exists, and makes the user.
fn user_of(store: &dyn Store, claims: &Claims) -> Result<UserInfo, String> {
    let k = &claims.kubernetes;
    let ns = &k.namespace;
    let exists = |resource: &str, r: &Ref| -> Result<(), String> {
        let key = format!("{resource}/{ns}/{}", r.name);
        match store.get(&key) {
            Ok(Some(o)) if o.object["metadata"]["uid"] == r.uid.as_str() => Ok(()),
            Ok(Some(_)) => Err(format!(
                "{resource} {ns}/{} was re-created (its UID is not the token's)",
                r.name
            )),
            Ok(None) => Err(format!("{resource} {ns}/{} no longer exists", r.name)),
            Err(e) => Err(format!("reading {key}: {e}")),
        }
    };
    exists("serviceaccounts", &k.serviceaccount)?;
    if let Some(pod) = &k.pod {
        exists("pods", pod)?;
    }
    if let Some(secret) = &k.secret {
        exists("secrets", secret)?;
    }
    let mut user = UserInfo::new(
        claims.sub.clone(),
        k.serviceaccount.uid.clone(),
        vec![ALL_GROUP.to_string(), format!("{ALL_GROUP}:{ns}")],
    );
    if let Some(pod) = &k.pod {
        user.extra.push((
            "authentication.kubernetes.io/pod-name".into(),
            pod.name.clone(),
        ));
        user.extra.push((
            "authentication.kubernetes.io/pod-uid".into(),
            pod.uid.clone(),
        ));
    }
    user.extra.push((
        "authentication.kubernetes.io/credential-id".into(),
        format!("JTI={}", claims.jti),
    ));
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen_key();
        TokenIssuer::from_pem(key.0.as_bytes(), key.1.as_bytes(), DEFAULT_ISSUER).expect("keys")
    }

    fn rcgen_key() -> (String, String) {
        let dir = tempfile::tempdir().expect("tmp");
        let names = kubernel_pki::ServingNames::default();
        kubernel_pki::ensure(dir.path(), &names).expect("pki");
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).expect("read");
        (read(kubernel_pki::SA_KEY), read(kubernel_pki::SA_PUB))
    }

    fn spec(expiration_seconds: i64, pod: bool) -> TokenSpec {
        TokenSpec {
            namespace: "default".into(),
            serviceaccount: Ref {
                name: "default".into(),
                uid: "u1".into(),
            },
            audiences: Vec::new(),
            expiration_seconds,
            pod: pod.then(|| Ref {
                name: "p".into(),
                uid: "u2".into(),
            }),
            secret: None,
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    #[test]
    fn a_token_should_verify_and_name_its_service_account() {
        let i = issuer();
        let issued = i.issue(&spec(3600, false), now()).expect("issue");
        assert_eq!(issued.audiences, [DEFAULT_ISSUER]);
        let claims = i.verify(&issued.token).expect("verify");
        assert_eq!(claims.sub, "system:serviceaccount:default:default");
        assert_eq!(claims.kubernetes.serviceaccount.uid, "u1");
        assert!(looks_like_jwt(&issued.token));
    }

    #[test]
    fn expired_foreign_and_other_audience_tokens_should_be_refused() {
        let i = issuer();
        let old = i.issue(&spec(600, false), now() - 3600).expect("issue");
        assert!(i
            .verify(&old.token)
            .expect_err("expired")
            .contains("Expired"));
        let other = issuer().issue(&spec(600, false), now()).expect("issue");
        assert!(i.verify(&other.token).is_err(), "another key's token");
        let mut s = spec(600, false);
        s.audiences = vec!["vault".into()];
        let aud = i.issue(&s, now()).expect("issue");
        assert!(i.verify(&aud.token).is_err(), "an audience the API is not");
        assert!(i.verify("eyJhbGciOiJub25lIn0.e30.").is_err(), "alg none");
    }

    #[test]
    fn projected_pod_tokens_should_be_extended_and_say_when_to_refresh() {
        let i = issuer();
        let t = now();
        let issued = i
            .issue(&spec(PROJECTED_EXPIRATION_SECONDS, true), t)
            .expect("issue");
        assert_eq!(issued.expires, t + PROJECTED_EXPIRATION_SECONDS);
        let claims = i.verify(&issued.token).expect("verify");
        assert_eq!(claims.exp, t + EXTENDED_EXPIRATION_SECONDS);
        assert_eq!(
            claims.kubernetes.warnafter,
            Some(t + PROJECTED_EXPIRATION_SECONDS)
        );
        assert_eq!(claims.kubernetes.pod.expect("pod").uid, "u2");
    }
}
