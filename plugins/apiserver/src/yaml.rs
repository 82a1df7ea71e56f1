//! YAML request bodies into JSON values, after a linear check of their nesting depth and alias expansion.
//!
//! `serde_yaml_ng` loads a whole document before applying its recursion limit,
//! and its libyaml scanner is quadratic in the nesting of flow collections: a
//! 400 KB body of `{a: {a: ...` keeps a core busy for half a minute. So a body
//! is first streamed event by event through a port of the same libyaml parser
//! (`libyaml-safer`), which stops at the first collection deeper than
//! [`MAX_DEPTH`] (after a few hundred bytes, whatever the body's size), rejects
//! aliases that would expand the document past one value per byte of the body
//! (billion laughs), and only then is the body decoded.

use std::collections::HashMap;

use libyaml_safer::{EventData, Mark, Parser};
use serde_json::Value;

/// Deepest nesting of collections (flow or block) a YAML body may have;
/// `serde_yaml_ng` itself stops at 128, so no body it would accept is refused.
pub const MAX_DEPTH: usize = 100;

/// Values an alias-expanded document may hold beyond one per byte of its body.
const VALUE_ALLOWANCE: usize = 10_000;

/// Why a YAML body was refused. None of these is helped by retrying the same body.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Collections nest deeper than [`MAX_DEPTH`].
    #[error(
        "yaml: collections nest deeper than {MAX_DEPTH} levels at line {line}, column {column}"
    )]
    TooDeep {
        /// 1-based line of the collection that went past the limit.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// Aliases expand the document to more values than the limit.
    #[error("yaml: aliases expand the document to more than {limit} values (a {bytes}-byte body may hold at most {limit}) at line {line}, column {column}")]
    TooManyValues {
        /// The limit: the body's size in bytes plus an allowance.
        limit: usize,
        /// The body's size.
        bytes: usize,
        /// 1-based line of the alias that went past the limit.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// An alias refers to the collection that contains it.
    #[error("yaml: alias *{anchor} at line {line}, column {column} refers to a collection that contains it")]
    RecursiveAlias {
        /// The anchor's name.
        anchor: String,
        /// 1-based line of the alias.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// The body is not well-formed YAML.
    #[error("yaml: {0}")]
    Syntax(#[from] libyaml_safer::Error),
    /// The YAML scanner gave up on the body (a construct its port of libyaml
    /// leaves unhandled, such as a tag followed by `,` in a flow collection).
    #[error("yaml: could not scan the body: {0}")]
    Unscannable(String),
    /// The body is YAML that does not convert to JSON.
    #[error("{0}")]
    Decode(#[from] serde_yaml_ng::Error),
}

/// Decodes a YAML body into a JSON value once [`check`] has passed it.
pub fn from_slice(body: &[u8]) -> Result<Value, YamlError> {
    check(body)?;
    Ok(serde_yaml_ng::from_slice(body)?)
}

/// Streams `body`'s parse events and fails on the first collection deeper than
/// [`MAX_DEPTH`], on aliases that expand past the value limit, on recursive
/// aliases, or on a syntax error. Linear in the body's size.
pub fn check(body: &[u8]) -> Result<(), YamlError> {
    let limit = body.len().saturating_add(VALUE_ALLOWANCE);
    let mut input = body;
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    // Open collections: their anchor and the value count before them.
    let mut open: Vec<(Option<String>, usize)> = Vec::new();
    // Values each anchored node expands to.
    let mut anchored: HashMap<String, usize> = HashMap::new();
    let mut values = 0usize;
    loop {
        // libyaml-safer panics (a `todo`) on a few malformed inputs instead of
        // returning an error: those bodies are refused like any other syntax error.
        let event = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser.parse()))
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the scanner failed".into());
                YamlError::Unscannable(why)
            })??;
        let at = event.start_mark;
        match event.data {
            EventData::StreamEnd => return Ok(()),
            EventData::DocumentStart { .. } => anchored.clear(),
            EventData::SequenceStart { anchor, .. } | EventData::MappingStart { anchor, .. } => {
                if open.len() >= MAX_DEPTH {
                    let (line, column) = position(at);
                    return Err(YamlError::TooDeep { line, column });
                }
                open.push((anchor, values));
                values += 1;
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                if let Some((Some(anchor), before)) = open.pop() {
                    anchored.insert(anchor, values - before);
                }
            }
            EventData::Scalar { anchor, .. } => {
                values += 1;
                if let Some(anchor) = anchor {
                    anchored.insert(anchor, 1);
                }
            }
            EventData::Alias { anchor } => {
                if open
                    .iter()
                    .any(|(a, _)| a.as_deref() == Some(anchor.as_str()))
                {
                    let (line, column) = position(at);
                    return Err(YamlError::RecursiveAlias {
                        anchor,
                        line,
                        column,
                    });
                }
                values = values.saturating_add(anchored.get(&anchor).copied().unwrap_or(1));
            }
            _ => {}
        }
        if values > limit {
            let (line, column) = position(at);
            return Err(YamlError::TooManyValues {
                limit,
                bytes: body.len(),
                line,
                column,
            });
        }
    }
}

/// 1-based line and column of a parser mark.
fn position(mark: Mark) -> (u64, u64) {
    (mark.line + 1, mark.column + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{}1{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn from_slice_should_decode_ordinary_manifests() {
        let body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {app: web}\ndata:\n  x: |\n    {[{[ not flow ]}]}\n";
        let v = from_slice(body).ok();
        assert_eq!(
            v.as_ref().and_then(|v| v.pointer("/metadata/labels")),
            Some(&json!({"app": "web"}))
        );
        assert_eq!(
            v.as_ref().and_then(|v| v.pointer("/data/x")),
            Some(&json!("{[{[ not flow ]}]}\n"))
        );
    }

    #[test]
    fn check_should_refuse_a_tag_before_a_comma_in_a_flow_collection_instead_of_panicking() {
        // Found by the stable fuzz test: libyaml-safer's scanner panics on it.
        for body in ["[a, !canary, b]", "{k: !t,}", "[!!str,"] {
            assert!(
                matches!(check(body.as_bytes()), Err(YamlError::Unscannable(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn check_should_accept_nesting_up_to_the_limit() {
        assert!(check(nested("[", "]", MAX_DEPTH).as_bytes()).is_ok());
        assert!(check(nested("{a: ", "}", MAX_DEPTH).as_bytes()).is_ok());
    }

    #[test]
    fn check_should_refuse_deep_flow_nesting_early() {
        for (open, width) in [
            ("[", 1),
            ("{a: ", 4),
            ("{\"\": [", 6),
            ("!!map {a: &x ", 13),
        ] {
            // 3 MB of nesting: refused at the first level past the limit.
            let body = open.repeat(3_000_000 / open.len());
            match check(body.as_bytes()) {
                Err(YamlError::TooDeep { line, column }) => {
                    assert_eq!(line, 1, "{open}");
                    assert!(
                        column <= (MAX_DEPTH as u64 + 1) * width,
                        "{open}: column {column}"
                    );
                }
                other => panic!("{open}: expected TooDeep, got {other:?}"),
            }
        }
    }

    #[test]
    fn check_should_count_block_nesting_too() {
        let mut body = String::new();
        for i in 0..=MAX_DEPTH {
            body.push_str(&" ".repeat(i));
            body.push_str("a:\n");
        }
        let err = check(body.as_bytes()).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("yaml: collections nest deeper than 100 levels at line 101, column 101")
        );
        let dashes = "- ".repeat(MAX_DEPTH + 1) + "x\n";
        assert!(matches!(
            check(dashes.as_bytes()),
            Err(YamlError::TooDeep { .. })
        ));
    }

    #[test]
    fn check_should_refuse_billion_laughs() {
        let mut body = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        let names: Vec<char> = ('a'..='i').collect();
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let refs = vec![format!("*{prev}"); 9].join(", ");
            body.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        match check(body.as_bytes()) {
            Err(YamlError::TooManyValues { limit, bytes, .. }) => {
                assert_eq!(bytes, body.len());
                assert_eq!(limit, body.len() + VALUE_ALLOWANCE);
            }
            other => panic!("expected TooManyValues, got {other:?}"),
        }
    }

    #[test]
    fn check_should_allow_modest_aliases() {
        let body = b"base: &base {cpu: 100m, memory: 64Mi}\nrequests: *base\nlimits: *base\n";
        let v = from_slice(body).ok();
        assert_eq!(
            v.as_ref().and_then(|v| v.pointer("/limits/memory")),
            Some(&json!("64Mi"))
        );
    }

    #[test]
    fn check_should_refuse_recursive_aliases() {
        let err = check(b"a: &a [1, *a]\n").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("yaml: alias *a at line 1, column 11 refers to a collection that contains it")
        );
    }

    #[test]
    fn check_should_report_syntax_errors() {
        let err = check(b"a: [1\n").err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.starts_with("yaml: ")),
            "{err:?}"
        );
    }
}
