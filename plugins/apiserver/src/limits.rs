//! Request limits besides in-flight counts and body size: the per-request timeout
//! and the size of the request line plus headers.
//!
//! As kube-apiserver: a request that is not long-running (watches, log follows,
//! exec, attach, port-forward and proxy are) gets `request_timeout` (60 s), or the
//! shorter `?timeout=` it asks for, and past it a 504 `Timeout` `Status`; its
//! handler keeps running to the end (a write past the deadline still lands, as
//! upstream), only the answer is given up. Headers over `max_header_bytes` are
//! refused by the HTTP layer (431 on HTTP/1.1, a stream error on HTTP/2).

use std::time::Duration;

use hyper_util::rt::TokioExecutor;

use crate::config::ApiServerConfig;
use crate::handlers::Query;
use crate::request::{RequestInfo, Verb};
use crate::status::ApiError;

/// The smallest HTTP/1 read buffer hyper accepts.
const MIN_HTTP1_BUFFER: usize = 8192;

/// Whether a request may run past the request timeout (upstream's long-running requests).
pub fn long_running(info: &RequestInfo, query: &Query) -> bool {
    let follow = matches!(query.get("follow").map(String::as_str), Some("true" | "1"));
    info.verb == Verb::Watch
        || matches!(
            info.subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        )
        || (info.subresource == "log" && follow)
}

/// How long a request may take: `request_timeout`, or a shorter `?timeout=` (a Go
/// duration such as `32s` or `1m30s`; one that does not parse is ignored).
pub fn request_timeout(config: &ApiServerConfig, query: &Query) -> Duration {
    query
        .get("timeout")
        .and_then(|t| go_duration(t))
        .filter(|t| !t.is_zero())
        .map_or(config.request_timeout, |t| t.min(config.request_timeout))
}

/// Parses a Go duration: a sequence of decimal numbers with units `ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h` (`1m30s`, `1.5s`, `250ms`).
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The 504 of a request past its timeout (upstream's text).
pub fn timed_out() -> ApiError {
    ApiError::timeout("Timeout: request did not complete within the allotted timeout")
}

/// The HTTP/1.1 and HTTP/2 connection builder, refusing a request line plus headers
/// over `max_header_bytes`.
pub fn http_builder(
    max_header_bytes: usize,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(max_header_bytes.max(MIN_HTTP1_BUFFER));
    builder
        .http2()
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_timeout_should_take_the_shorter_of_config_and_query() {
        let config = ApiServerConfig::default();
        assert_eq!(
            request_timeout(&config, &query(&[])),
            Duration::from_secs(60)
        );
        assert_eq!(
            request_timeout(&config, &query(&[("timeout", "32s")])),
            Duration::from_secs(32)
        );
        assert_eq!(
            request_timeout(&config, &query(&[("timeout", "1m30s")])),
            Duration::from_secs(60)
        );
        assert_eq!(
            request_timeout(&config, &query(&[("timeout", "1.5ms")])),
            Duration::from_micros(1500)
        );
        for bad in ["", "0s", "5", "5x", "-1s", "s"] {
            assert_eq!(
                request_timeout(&config, &query(&[("timeout", bad)])),
                Duration::from_secs(60),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn long_running_should_cover_watch_and_follow() {
        let r = kubernel_api::resources::find("", "v1", "pods").expect("pods");
        let mut info = RequestInfo {
            verb: Verb::List,
            resource: r,
            subresource: String::new(),
            namespace: "default".into(),
            name: String::new(),
        };
        assert!(!long_running(&info, &query(&[])));
        info.verb = Verb::Watch;
        assert!(long_running(&info, &query(&[])));
        info.verb = Verb::Get;
        info.subresource = "log".into();
        assert!(!long_running(&info, &query(&[])));
        assert!(long_running(&info, &query(&[("follow", "true")])));
        info.subresource = "exec".into();
        assert!(long_running(&info, &query(&[])));
    }
}
