//! Record encoding: how one rule becomes bytes in the log, and back. Pure functions over
//! byte slices; docs/FORMAT.md §3 is the byte-for-byte description.

use crate::error::{Error, Result};
use crate::position::{StreamId, StreamPosition};
use crate::rule::{Rule, Scope, MAX_KEY_LEN};

/// Frames start at multiples of this many bytes.
pub const FRAME_ALIGN: usize = 8;
/// `len: u32` then `crc32: u32`.
pub const FRAME_HEADER_LEN: usize = 8;
/// Fixed part of a payload, before the tenant and key bytes.
pub const PAYLOAD_HEADER_LEN: usize = 24;
/// Largest payload a valid frame can announce.
pub const MAX_PAYLOAD_LEN: usize = PAYLOAD_HEADER_LEN + 2 * MAX_KEY_LEN;

/// `kind` byte of a rule record.
pub const KIND_RULE: u8 = 1;
/// `kind` byte of a configuration record (raises `max_token_lifetime`).
pub const KIND_CONFIG: u8 = 2;
/// `kind` byte of a stream position record (docs/FORMAT.md §3.4).
pub const KIND_POSITION: u8 = 3;
/// `key_len` of a stream position record: the entry id, two `u64`.
pub const POSITION_ID_LEN: usize = 16;

/// One decoded record, borrowing its key bytes from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// An invalidation rule.
    Rule(Rule<'a>),
    /// The ledger's `max_token_lifetime` was raised to this many seconds.
    Config {
        /// New maximum token lifetime in seconds.
        max_token_lifetime: i64,
    },
    /// How far into a stream the ledger has applied, and when it last heard from it.
    /// The last such record of the log is the ledger's position.
    Position {
        /// Name of the stream.
        stream: &'a [u8],
        /// Id of the last entry applied.
        last_id: StreamId,
        /// Unix seconds at which the stream last answered.
        last_heard: i64,
        /// Why the ledger may lack rules (0: it does not); [`StreamPosition::degraded`].
        degraded: u8,
    },
}

/// What sits at one frame offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete frame whose checksum holds; the next frame starts at `next`.
    Valid {
        /// The decoded record.
        record: Record<'a>,
        /// Byte offset (relative to the slice) of the next frame.
        next: usize,
        /// Offset of the payload, relative to the slice.
        payload_at: usize,
    },
    /// Zero bytes where a frame header would be: the end of the written log.
    End,
    /// Something that is not a valid frame (torn write, or corruption).
    Invalid(&'static str),
}

/// Bytes a frame holding a payload of `payload_len` bytes takes, padding included.
pub fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len).next_multiple_of(FRAME_ALIGN)
}

/// Bytes the frame of a rule takes.
pub fn rule_frame_len(rule: &Rule) -> usize {
    frame_len(PAYLOAD_HEADER_LEN + rule.tenant.len() + rule.key.len())
}

fn crc(len_le: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len_le);
    h.update(payload);
    h.finalize()
}

fn encode_payload(out: &mut Vec<u8>, kind: u8, scope: u8, tenant: &[u8], key: &[u8], at: i64) {
    let payload_len = PAYLOAD_HEADER_LEN + tenant.len() + key.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.push(kind);
    out.push(scope);
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&(tenant.len() as u32).to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(tenant);
    out.extend_from_slice(key);
    let c = crc(
        (payload_len as u32).to_le_bytes(),
        &out[start + FRAME_HEADER_LEN..],
    );
    out[start + 4..start + 8].copy_from_slice(&c.to_le_bytes());
    out.resize(start + frame_len(payload_len), 0);
}

/// Appends the frame of `rule` to `out`. The rule must have passed [`Rule::validate`].
pub fn encode_rule(out: &mut Vec<u8>, rule: &Rule) {
    encode_payload(
        out,
        KIND_RULE,
        rule.scope as u8,
        rule.tenant,
        rule.key,
        rule.at,
    );
}

/// Appends the frame of a configuration record to `out`.
pub fn encode_config(out: &mut Vec<u8>, max_token_lifetime: i64) {
    encode_payload(out, KIND_CONFIG, 0, &[], &[], max_token_lifetime);
}

/// Appends the frame of a stream position record to `out`. The position must have
/// passed [`StreamPosition::validate`].
pub fn encode_position(out: &mut Vec<u8>, position: &StreamPosition) {
    let mut id = [0u8; POSITION_ID_LEN];
    id[..8].copy_from_slice(&position.last_id.ms.to_le_bytes());
    id[8..].copy_from_slice(&position.last_id.seq.to_le_bytes());
    encode_payload(
        out,
        KIND_POSITION,
        position.degraded,
        &position.stream,
        &id,
        position.last_heard,
    );
}

/// Callers have checked that `b` holds `at + 4` bytes (one range check, not four).
#[inline]
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// Decodes the frame starting at `buf[0]`. Never panics, whatever `buf` holds.
pub fn decode_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Invalid("frame header cut short")
        };
    }
    let len = le_u32(buf, 0) as usize;
    let stored_crc = le_u32(buf, 4);
    if len == 0 && stored_crc == 0 {
        return Frame::End;
    }
    if !(PAYLOAD_HEADER_LEN..=MAX_PAYLOAD_LEN).contains(&len) {
        return Frame::Invalid("frame length out of range");
    }
    let total = frame_len(len);
    if buf.len() < total {
        return Frame::Invalid("frame cut short");
    }
    let payload = &buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    if buf[FRAME_HEADER_LEN + len..total].iter().any(|&b| b != 0) {
        return Frame::Invalid("frame padding is not zero");
    }
    if crc((len as u32).to_le_bytes(), payload) != stored_crc {
        return Frame::Invalid("CRC32 mismatch");
    }
    match decode_payload(payload) {
        Ok(record) => Frame::Valid {
            record,
            next: total,
            payload_at: FRAME_HEADER_LEN,
        },
        Err(why) => Frame::Invalid(why),
    }
}

fn decode_payload(p: &[u8]) -> Result<Record<'_>, &'static str> {
    let kind = p[0];
    let scope = p[1];
    if p[2] != 0 || p[3] != 0 || le_u32(p, 12) != 0 {
        return Err("reserved payload bytes are not zero");
    }
    let tenant_len = le_u32(p, 4) as usize;
    let key_len = le_u32(p, 8) as usize;
    let at = le_i64(p, 16);
    if tenant_len > MAX_KEY_LEN || key_len > MAX_KEY_LEN {
        return Err("key length over the limit");
    }
    if PAYLOAD_HEADER_LEN + tenant_len + key_len != p.len() {
        return Err("key lengths disagree with the frame length");
    }
    let tenant = &p[PAYLOAD_HEADER_LEN..PAYLOAD_HEADER_LEN + tenant_len];
    let key = &p[PAYLOAD_HEADER_LEN + tenant_len..];
    match kind {
        KIND_RULE => {
            let scope = Scope::from_u8(scope).ok_or("unknown scope")?;
            let rule = Rule::new(scope, tenant, key, at);
            rule.validate().map_err(|_| "rule breaks the key rules")?;
            Ok(Record::Rule(rule))
        }
        KIND_CONFIG if scope == 0 && tenant_len == 0 && key_len == 0 && at >= 0 => {
            Ok(Record::Config {
                max_token_lifetime: at,
            })
        }
        KIND_CONFIG => Err("malformed configuration record"),
        KIND_POSITION
            if scope & !StreamPosition::DEGRADED_BITS == 0
                && tenant_len > 0
                && key_len == POSITION_ID_LEN =>
        {
            let id = &p[PAYLOAD_HEADER_LEN + tenant_len..];
            Ok(Record::Position {
                stream: tenant,
                last_id: StreamId::new(le_u64(id, 0), le_u64(id, 8)),
                last_heard: at,
                degraded: scope,
            })
        }
        KIND_POSITION => Err("malformed stream position record"),
        _ => Err("unknown record kind"),
    }
}

/// The rule whose payload starts at `buf[0]`, read without checking the frame's CRC: for
/// offsets the index holds, whose frames were checked or written by the writer. `None`
/// when the bytes there are not a well-formed rule payload (a damaged index).
#[inline]
pub fn rule_at(buf: &[u8]) -> Option<Rule<'_>> {
    if buf.len() < PAYLOAD_HEADER_LEN || buf[0] != KIND_RULE {
        return None;
    }
    let scope = Scope::from_u8(buf[1])?;
    let tenant_len = le_u32(buf, 4) as usize;
    let key_len = le_u32(buf, 8) as usize;
    if tenant_len > MAX_KEY_LEN || key_len > MAX_KEY_LEN {
        return None;
    }
    let end = PAYLOAD_HEADER_LEN + tenant_len + key_len;
    let keys = buf.get(PAYLOAD_HEADER_LEN..end)?;
    let (tenant, key) = keys.split_at(tenant_len);
    Some(Rule::new(scope, tenant, key, le_i64(buf, 16)))
}

/// Key bytes of the rule record whose payload starts at `buf[0]`: `(tenant, key)`.
/// `None` when the bytes there are not a rule payload (never for offsets the index holds).
#[inline]
pub fn rule_keys_at(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    rule_at(buf).map(|r| (r.tenant, r.key))
}

/// `a == b` for key bytes: the lengths most names have (8 to 32 bytes) are compared
/// in two loads of each side instead of a call to `memcmp` (a found key compares two).
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        8..=16 => {
            a.first_chunk::<8>() == b.first_chunk::<8>()
                && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        17..=32 => {
            a.first_chunk::<16>() == b.first_chunk::<16>()
                && a.last_chunk::<16>() == b.last_chunk::<16>()
        }
        _ => a == b,
    }
}

/// Checks `rule` before it is written; the error names the problem.
pub fn validate_for_write(rule: &Rule) -> Result<()> {
    rule.validate()
        .map_err(|e| Error::invalid(format!("rule refused: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(rule: &Rule) -> Vec<u8> {
        let mut v = Vec::new();
        encode_rule(&mut v, rule);
        v
    }

    #[test]
    fn same_bytes_agrees_with_eq_at_every_length_and_position() {
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
            assert!(same_bytes(&a, &a.clone()), "len {len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x01;
                assert!(!same_bytes(&a, &b), "len {len}, byte {at} differs");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(
                !same_bytes(&a, &longer) && !same_bytes(&longer, &a),
                "len {len}"
            );
        }
    }

    #[test]
    fn rule_round_trips() {
        let r = Rule::new(Scope::Role, b"acme", b"super_admin", 1_700_000_000);
        let f = frame_of(&r);
        assert_eq!(f.len(), rule_frame_len(&r));
        assert_eq!(f.len() % FRAME_ALIGN, 0);
        match decode_frame(&f) {
            Frame::Valid { record, next, .. } => {
                assert_eq!(record, Record::Rule(r));
                assert_eq!(next, f.len());
            }
            other => panic!("not valid: {other:?}"),
        }
    }

    #[test]
    fn config_round_trips() {
        let mut v = Vec::new();
        encode_config(&mut v, 7200);
        assert!(matches!(
            decode_frame(&v),
            Frame::Valid {
                record: Record::Config {
                    max_token_lifetime: 7200
                },
                ..
            }
        ));
    }

    #[test]
    fn position_round_trips_and_misshapen_ones_are_refused() {
        let pos = StreamPosition::new(
            &b"revocations\xff"[..],
            StreamId::new(1_700_000_000_123, 4),
            1_700_000_001,
        );
        let mut v = Vec::new();
        encode_position(&mut v, &pos);
        assert_eq!(
            v.len(),
            frame_len(PAYLOAD_HEADER_LEN + 12 + POSITION_ID_LEN)
        );
        match decode_frame(&v) {
            Frame::Valid { record, next, .. } => {
                assert_eq!(
                    record,
                    Record::Position {
                        stream: b"revocations\xff",
                        last_id: pos.last_id,
                        last_heard: pos.last_heard,
                        degraded: 0,
                    }
                );
                assert_eq!(next, v.len());
            }
            other => panic!("not valid: {other:?}"),
        }
        // Same bytes with a scope, or an id of the wrong length, or no stream name: refused
        // even when the CRC is right.
        let reframe = |payload: &mut Vec<u8>| {
            let len = payload.len() as u32;
            let mut f = len.to_le_bytes().to_vec();
            f.extend_from_slice(&crc(len.to_le_bytes(), payload).to_le_bytes());
            f.extend_from_slice(payload);
            f.resize(frame_len(payload.len()), 0);
            f
        };
        let payload = v[FRAME_HEADER_LEN..FRAME_HEADER_LEN + PAYLOAD_HEADER_LEN + 12 + 16].to_vec();
        // Byte 1 holds the degraded bits (0..=7); any other bit is refused.
        let mut degraded = payload.clone();
        degraded[1] = StreamPosition::TRIMMED | StreamPosition::SKIPPED;
        assert!(matches!(
            decode_frame(&reframe(&mut degraded)),
            Frame::Valid {
                record: Record::Position { degraded: 5, .. },
                ..
            }
        ));
        let mut flagged = pos.clone();
        flagged.degraded = StreamPosition::REFUSED;
        let mut w = Vec::new();
        encode_position(&mut w, &flagged);
        assert_eq!(w[FRAME_HEADER_LEN + 1], StreamPosition::REFUSED);
        let mut scoped = payload.clone();
        scoped[1] = 8;
        assert!(matches!(
            decode_frame(&reframe(&mut scoped)),
            Frame::Invalid(_)
        ));
        let mut short_id = payload.clone();
        short_id[8..12].copy_from_slice(&15u32.to_le_bytes());
        short_id.pop();
        assert!(matches!(
            decode_frame(&reframe(&mut short_id)),
            Frame::Invalid(_)
        ));
        let mut nameless = payload[..PAYLOAD_HEADER_LEN].to_vec();
        nameless[4..8].copy_from_slice(&0u32.to_le_bytes());
        nameless.extend_from_slice(&payload[PAYLOAD_HEADER_LEN + 12..]);
        assert!(matches!(
            decode_frame(&reframe(&mut nameless)),
            Frame::Invalid(_)
        ));
        let mut kind9 = payload.clone();
        kind9[0] = 9;
        assert!(matches!(
            decode_frame(&reframe(&mut kind9)),
            Frame::Invalid(_)
        ));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let f = frame_of(&Rule::new(Scope::Subject, b"t", b"john", 42));
        for byte in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[byte] ^= 1 << bit;
                match decode_frame(&g) {
                    Frame::Valid { .. } => panic!("flip at {byte}.{bit} accepted"),
                    Frame::End => panic!("flip at {byte}.{bit} read as end"),
                    Frame::Invalid(_) => {}
                }
            }
        }
    }

    #[test]
    fn every_cut_is_invalid_and_zeros_are_end() {
        let f = frame_of(&Rule::new(Scope::Token, b"t", b"jti-1", 42));
        for cut in 1..f.len() - 3 {
            assert!(
                matches!(decode_frame(&f[..cut]), Frame::Invalid(_)),
                "cut at {cut}"
            );
        }
        assert_eq!(decode_frame(&[0u8; 32]), Frame::End);
        assert_eq!(decode_frame(&[]), Frame::End);
    }

    #[test]
    fn hostile_lengths_do_not_panic() {
        let mut f = frame_of(&Rule::new(Scope::Client, b"t", b"app", 1));
        f[FRAME_HEADER_LEN + 4..FRAME_HEADER_LEN + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_frame(&f), Frame::Invalid(_)));
        f[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_frame(&f), Frame::Invalid(_)));
        assert_eq!(rule_keys_at(&[0xff; 30]), None);
    }
}
