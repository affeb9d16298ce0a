//! The payload of a compact JWS (`header.payload.signature`, RFC 7515 §7.1): found and
//! base64url-decoded, nothing else. The header and the signature are not looked at.

use super::{MAX_CLAIMS_LEN, MAX_JWT_LEN};
use crate::error::{Error, Result};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// base64url as JWS writes it (no padding); padding is tolerated, stray bits are not.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Payloads up to this many decoded bytes are decoded on the stack.
const STACK_PAYLOAD: usize = 2048;

/// The base64url text of the payload segment of `jwt`.
pub(crate) fn payload_segment(jwt: &[u8]) -> Result<&[u8]> {
    if jwt.is_empty() {
        return Err(Error::invalid("the JWT is empty"));
    }
    if jwt.len() > MAX_JWT_LEN {
        return Err(Error::invalid(format!(
            "the JWT is {} bytes long; the limit is {MAX_JWT_LEN}",
            jwt.len()
        )));
    }
    let mut parts = jwt.splitn(4, |&c| c == b'.');
    let (_header, payload, signature) = (parts.next(), parts.next(), parts.next());
    let (Some(payload), Some(_), None) = (payload, signature, parts.next()) else {
        let dots = jwt.iter().filter(|&&c| c == b'.').count();
        return Err(Error::invalid(format!(
            "the JWT is not a compact JWS (header.payload.signature): it has {} part{}{}",
            dots + 1,
            if dots == 0 { "" } else { "s" },
            if dots == 4 {
                " (an encrypted JWE cannot be read)"
            } else {
                ""
            }
        )));
    };
    if payload.is_empty() {
        return Err(Error::invalid("the JWT payload is empty"));
    }
    Ok(payload)
}

/// Decodes the payload of `jwt` and calls `f` with the JSON bytes.
pub(crate) fn with_payload<R>(jwt: &[u8], f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    let segment = payload_segment(jwt)?;
    // base64 gives 3 bytes per 4 characters; a partial quantum gives at most 2 more.
    let estimate = segment.len() / 4 * 3 + 2;
    if estimate > MAX_CLAIMS_LEN + 2 {
        return Err(Error::invalid(format!(
            "the JWT payload decodes to more than {MAX_CLAIMS_LEN} bytes, the limit"
        )));
    }
    let bad = |e: base64::DecodeSliceError| {
        Error::invalid(format!("the JWT payload is not base64url: {e}"))
    };
    if estimate <= STACK_PAYLOAD {
        let mut buf = [0u8; STACK_PAYLOAD];
        let n = BASE64URL.decode_slice(segment, &mut buf).map_err(bad)?;
        f(&buf[..n])
    } else {
        let mut buf = vec![0u8; estimate];
        let n = BASE64URL.decode_slice(segment, &mut buf).map_err(bad)?;
        f(&buf[..n])
    }
}

/// The decoded payload of `jwt`, owned (for tools; checks decode on the stack).
pub(crate) fn payload(jwt: &[u8]) -> Result<Vec<u8>> {
    with_payload(jwt, |json| Ok(json.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_payload_of_three_parts_only() {
        assert_eq!(payload_segment(b"h.p.s").unwrap(), b"p");
        assert_eq!(payload_segment(b"h.p.").unwrap(), b"p");
        for (jwt, needle) in [
            (&b""[..], "empty"),
            (b"abc", "it has 1 part"),
            (b"h.p", "it has 2 parts"),
            (b"a.b.c.d.e", "JWE"),
            (b"h..s", "payload is empty"),
        ] {
            let e = payload_segment(jwt).unwrap_err().to_string();
            assert!(e.contains(needle), "{jwt:?}: {e}");
        }
        let long = vec![b'a'; MAX_JWT_LEN + 1];
        assert!(payload_segment(&long)
            .unwrap_err()
            .to_string()
            .contains("limit"));
    }

    #[test]
    fn decodes_base64url_with_or_without_padding() {
        // {"a":1} → eyJhIjoxfQ (no padding in JWS)
        assert_eq!(payload(b"x.eyJhIjoxfQ.y").unwrap(), br#"{"a":1}"#);
        assert_eq!(payload(b"x.eyJhIjoxfQ==.y").unwrap(), br#"{"a":1}"#);
        // '+' and '/' are base64, not base64url.
        let e = payload(b"x.eyJh+joxfQ.y").unwrap_err().to_string();
        assert!(e.contains("not base64url"), "{e}");
        // A big payload goes through the heap buffer.
        let json = format!(r#"{{"a":"{}"}}"#, "x".repeat(STACK_PAYLOAD * 2));
        let jwt = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&json)
        );
        assert_eq!(payload(jwt.as_bytes()).unwrap(), json.as_bytes());
    }
}
