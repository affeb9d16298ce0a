//! The payload of a compact JWS (`header.payload.signature`, RFC 7515 §7.1): found and
//! base64url-decoded, nothing else. The header and the signature are not looked at.

use super::{MAX_CLAIMS_LEN, MAX_JWT_LEN};
use crate::error::{Error, Result};
use std::mem::MaybeUninit;

/// Payloads up to this many decoded bytes are decoded on the stack.
const STACK_PAYLOAD: usize = 2048;

/// The base64url text of the payload segment of `jwt`: what lies between its first and
/// its last dot. A dot inside that text (more than three parts) is found by decoding it.
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
    // The first dot from the start and the last from the end: only the header and the
    // signature are scanned. A dot between them (more than three parts) is no base64url,
    // so decoding the payload finds it (`parts_error` then says what the JWT is).
    let (Some(first), Some(second)) = (memchr::memchr(b'.', jwt), memchr::memrchr(b'.', jwt))
    else {
        return Err(parts_error(jwt));
    };
    if first == second {
        return Err(parts_error(jwt));
    }
    let payload = &jwt[first + 1..second];
    if payload.is_empty() {
        return Err(Error::invalid("the JWT payload is empty"));
    }
    Ok(payload)
}

/// The JWT does not have three parts: how many it has.
#[cold]
fn parts_error(jwt: &[u8]) -> Error {
    let dots = memchr::memchr_iter(b'.', jwt).count();
    Error::invalid(format!(
        "the JWT is not a compact JWS (header.payload.signature): it has {} part{}{}",
        dots + 1,
        if dots == 0 { "" } else { "s" },
        if dots == 4 {
            " (an encrypted JWE cannot be read)"
        } else {
            ""
        }
    ))
}

/// Decodes the payload of `jwt` and calls `f` with the JSON bytes. base64url as JWS
/// writes it (RFC 7515 §2: no padding); trailing `=` are tolerated.
pub(crate) fn with_payload<R>(jwt: &[u8], f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    let mut segment = payload_segment(jwt)?;
    for _ in 0..2 {
        if let Some(rest) = segment.strip_suffix(b"=") {
            segment = rest;
        }
    }
    let b64 = base64_simd::URL_SAFE_NO_PAD;
    // At least the decoded length (a buffer too small would make the decoder panic).
    let estimate = b64.estimated_decoded_length(segment.len());
    if estimate > MAX_CLAIMS_LEN + 3 {
        return Err(Error::invalid(format!(
            "the JWT payload decodes to more than {MAX_CLAIMS_LEN} bytes, the limit"
        )));
    }
    let bad = |_| {
        if memchr::memchr(b'.', segment).is_some() {
            parts_error(jwt)
        } else {
            Error::invalid("the JWT payload is not base64url (RFC 4648 §5)")
        }
    };
    if estimate <= STACK_PAYLOAD {
        let mut buf = [MaybeUninit::<u8>::uninit(); STACK_PAYLOAD];
        let out = base64_simd::Out::from_uninit_slice(&mut buf);
        f(b64.decode(segment, out).map_err(bad)?)
    } else {
        let mut buf = vec![0u8; estimate];
        f(b64
            .decode(segment, base64_simd::Out::from_slice(&mut buf))
            .map_err(bad)?)
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
            (b"h.p.q.s", "it has 4 parts"),
            (b"h.eyJhIjoxfQ..s", "it has 4 parts"),
            (b"h...s", "it has 4 parts"),
            (b"h..s", "payload is empty"),
        ] {
            let e = payload(jwt).unwrap_err().to_string();
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
        // '+' and '/' are base64, not base64url; a lone trailing character is no base64.
        assert!(payload(b"x.eyJhIjoxfQa.y").is_err());
        let e = payload(b"x.eyJh+joxfQ.y").unwrap_err().to_string();
        assert!(e.contains("not base64url"), "{e}");
        // A big payload goes through the heap buffer.
        let json = format!(r#"{{"a":"{}"}}"#, "x".repeat(STACK_PAYLOAD * 2));
        let jwt = format!(
            "h.{}.s",
            base64_simd::URL_SAFE_NO_PAD.encode_to_string(&json)
        );
        assert_eq!(payload(jwt.as_bytes()).unwrap(), json.as_bytes());
    }
}
