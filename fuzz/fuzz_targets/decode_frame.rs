//! Decoding one record frame (and the header) from arbitrary bytes: never a panic, and
//! whatever decodes as valid encodes back to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger::header::Header;
use revledger::record::{
    decode_frame, encode_config, encode_position, encode_rule, rule_keys_at, Frame, Record,
    FRAME_ALIGN, FRAME_HEADER_LEN,
};
use revledger::StreamPosition;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, bytes)) = input.split_first() else {
        return;
    };
    let mut buf = bytes.to_vec();
    if mode & 1 != 0 {
        // Let the fuzzer past the CRC so it explores payload decoding.
        revledger_fuzz::fix_frame_crcs(&mut buf, 0);
    }

    match decode_frame(&buf) {
        Frame::Valid {
            record,
            next,
            payload_at,
        } => {
            assert!(next <= buf.len(), "next {next} past {}", buf.len());
            assert_eq!(next % FRAME_ALIGN, 0);
            assert_eq!(payload_at, FRAME_HEADER_LEN);
            let mut again = Vec::new();
            match record {
                Record::Rule(r) => {
                    r.validate().expect("a decoded rule is a valid rule");
                    encode_rule(&mut again, &r);
                    assert_eq!(
                        rule_keys_at(&buf[payload_at..]),
                        Some((r.tenant, r.key)),
                        "key bytes read back differently"
                    );
                }
                Record::Config { max_token_lifetime } => {
                    assert!(max_token_lifetime >= 0);
                    encode_config(&mut again, max_token_lifetime);
                }
                Record::Position {
                    stream,
                    last_id,
                    last_heard,
                    degraded,
                } => {
                    let mut p = StreamPosition::new(stream, last_id, last_heard);
                    p.degraded = degraded;
                    p.validate()
                        .expect("a decoded position is a valid position");
                    encode_position(&mut again, &p);
                }
            }
            assert_eq!(again, &buf[..next], "a valid frame did not round-trip");
        }
        Frame::End => assert!(
            buf.len() < FRAME_HEADER_LEN || buf[..FRAME_HEADER_LEN].iter().all(|&b| b == 0),
            "End for a non-zero frame header"
        ),
        Frame::Invalid(why) => assert!(!why.is_empty()),
    }
    let _ = rule_keys_at(&buf);

    if let Ok(h) = Header::decode(&buf) {
        assert_eq!(
            Header::decode(&h.encode(h.log_start)).expect("re-decodes"),
            h
        );
        assert!(h.max_token_lifetime >= 0 && h.leeway >= 0);
    }
});
