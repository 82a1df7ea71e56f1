//! The compact binary codec (postcard) used for every message on the bus.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A message could not be encoded or decoded; retrying the same bytes fails again.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed.
    #[error("encoding {kind}: {source}")]
    Encode {
        /// Message kind or type being encoded.
        kind: String,
        /// The codec's error.
        source: postcard::Error,
    },
    /// Decoding failed: wrong kind, truncated bytes, or an incompatible schema.
    #[error("decoding {kind}: {source}")]
    Decode {
        /// Message kind or type being decoded.
        kind: String,
        /// The codec's error.
        source: postcard::Error,
    },
}

/// Encodes a value, naming `kind` in the error.
pub fn encode<T: Serialize + ?Sized>(kind: &str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|source| CodecError::Encode {
        kind: kind.to_string(),
        source,
    })
}

/// Appends the encoding of a value to `out`.
pub fn encode_into<T: Serialize + ?Sized>(
    kind: &str,
    value: &T,
    out: Vec<u8>,
) -> Result<Vec<u8>, CodecError> {
    postcard::to_extend(value, out).map_err(|source| CodecError::Encode {
        kind: kind.to_string(),
        source,
    })
}

/// Decodes a value, naming `kind` in the error.
pub fn decode<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|source| CodecError::Decode {
        kind: kind.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_should_round_trip_and_name_the_kind_on_error() {
        let bytes = encode("t", &(7u64, "x".to_string())).expect("encode");
        let back: (u64, String) = decode("t", &bytes).expect("decode");
        assert_eq!(back, (7, "x".to_string()));
        let err = decode::<(u64, String)>("echo.Add", &[]).expect_err("truncated");
        assert!(err.to_string().starts_with("decoding echo.Add"), "{err}");
    }
}
