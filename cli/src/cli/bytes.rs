//! Byte strings on the command line and in text output: keys are bytes, not text.
//!
//! Text form (used by `dump` and read back by `revoke-batch`): `-` is the empty string;
//! printable non-space characters stand for themselves; every other byte, and `\` and a
//! lone `-`, is written `\xNN`. Hex form (`--hex`): two hex digits per byte.

use super::CliError;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The bytes of a command-line value: its raw bytes, or decoded from hex with `--hex`.
pub fn arg_bytes(what: &str, value: &OsStr, hex: bool) -> Result<Vec<u8>, CliError> {
    if hex {
        let text = value.to_str().ok_or_else(|| {
            CliError::new(format!("--{what} is not hex (with --hex, give hex digits)"))
        })?;
        from_hex(text).map_err(|why| CliError::new(format!("--{what} {text:?}: {why}")))
    } else {
        Ok(value.as_bytes().to_vec())
    }
}

/// Decodes `00ff`-style hex (upper or lower case; an empty string is the empty key).
pub fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    t.chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16);
            let lo = (p[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(format!(
                    "{:?} is not a pair of hex digits",
                    String::from_utf8_lossy(p)
                )),
            }
        })
        .collect()
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text form of `bytes` (see the module documentation); never contains whitespace.
pub fn escape(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    if bytes == b"-" {
        return "\\x2d".into();
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_whitespace() || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reads the text form back (see [`escape`]).
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    if text == "-" {
        return Ok(Vec::new());
    }
    let t = text.as_bytes();
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'\\' {
            let hex = t
                .get(i + 1..i + 4)
                .filter(|h| h[0] == b'x')
                .ok_or_else(|| format!("{text:?}: a backslash must start \\xNN"))?;
            let v = from_hex(std::str::from_utf8(&hex[1..]).unwrap_or("?"))
                .map_err(|why| format!("{text:?}: {why}"))?;
            out.extend_from_slice(&v);
            i += 4;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_every_kind_of_byte_string() {
        let cases: [&[u8]; 8] = [
            b"",
            b"-",
            b"acme",
            b"a b\tc",
            b"back\\slash",
            "müller".as_bytes(),
            b"\xff\x00bin\xc3",
            b"--x",
        ];
        for c in cases {
            let e = escape(c);
            assert!(!e.contains(char::is_whitespace), "{e:?}");
            assert_eq!(unescape(&e).unwrap(), c, "via {e:?}");
        }
        assert_eq!(escape("müller".as_bytes()), "müller");
        assert_eq!(escape(b"a b"), "a\\x20b");
    }

    #[test]
    fn unescape_refuses_broken_escapes() {
        assert!(unescape("a\\").is_err());
        assert!(unescape("a\\x4").is_err());
        assert!(unescape("a\\y41").is_err());
        assert!(unescape("a\\xzz").is_err());
    }

    #[test]
    fn hex_round_trips_and_refuses_bad_digits() {
        assert_eq!(from_hex("00ffA0").unwrap(), vec![0, 255, 160]);
        assert_eq!(to_hex(&[0, 255, 160]), "00ffa0");
        assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }
}
