//! Runs the shared table of cases (tests/vectors/cases.txt) through the Rust API.

use revledger::{Error, Ledger, Rule, Scope, Token, Verdict, WriterOptions};

fn unescape(field: &str) -> Vec<u8> {
    if field == "-" {
        return Vec::new();
    }
    if let Some(rest) = field.strip_prefix('*') {
        let (n, c) = rest.split_once('*').expect("*N*C");
        return vec![c.as_bytes()[0]; n.parse().expect("repeat count")];
    }
    let b = field.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&field[i + 1..i + 3], 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn roles(field: &str) -> Vec<Vec<u8>> {
    if field == "-" {
        return Vec::new();
    }
    field.split(',').map(unescape).collect()
}

fn status_name(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument(_) => "INVALID_ARGUMENT",
        Error::Io { .. } => "IO",
        Error::Corrupt { .. } => "CORRUPT",
        Error::Locked(_) => "LOCKED",
        Error::ReadOnly => "READ_ONLY",
        Error::Incompatible(_) => "INCOMPATIBLE",
        Error::Internal(_) => "INTERNAL",
    }
}

/// A scope field: a name, or an integer (out-of-range integers are invalid arguments).
fn scope(field: &str) -> Result<Scope, &'static str> {
    match field.parse::<u64>() {
        Ok(n) => u8::try_from(n)
            .ok()
            .and_then(Scope::from_u8)
            .ok_or("INVALID_ARGUMENT"),
        Err(_) => Ok(Scope::parse(field).expect("scope name")),
    }
}

struct Check {
    line: usize,
    fields: Vec<String>,
}

fn run_check(ledger: &Ledger, c: &Check) {
    let f = &c.fields;
    let (tenant, subject, client, session, jti) = (
        unescape(&f[1]),
        unescape(&f[2]),
        unescape(&f[4]),
        unescape(&f[5]),
        unescape(&f[6]),
    );
    let role_bytes = roles(&f[3]);
    let role_refs: Vec<&[u8]> = role_bytes.iter().map(Vec::as_slice).collect();
    let token = Token {
        tenant: &tenant,
        subject: &subject,
        roles: &role_refs,
        client: &client,
        session: &session,
        token_id: &jti,
        issued_at: f[7].parse().expect("iat"),
    };
    let got = ledger.check(&token);
    match f[0].as_str() {
        "check" => {
            let want = match f[8].as_str() {
                "valid" => Verdict::Valid,
                "revoked" => Verdict::Revoked {
                    scope: scope(&f[9]).expect("scope"),
                    cutoff: f[10].parse().expect("cutoff"),
                },
                other => panic!("line {}: unknown verdict {other}", c.line),
            };
            assert_eq!(got.ok(), Some(want), "line {}: {}", c.line, f.join(" "));
        }
        "check-error" => {
            let e = got.expect_err(&format!("line {} should fail", c.line));
            assert_eq!(status_name(&e), f[8], "line {}", c.line);
        }
        _ => unreachable!(),
    }
}

#[test]
fn shared_vectors() {
    let text = include_str!("vectors/cases.txt");
    let dir = tempfile::tempdir().unwrap();
    let mut cases = 0;
    let mut ledger: Option<(Ledger, std::path::PathBuf)> = None;
    let mut checks: Vec<Check> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
        match fields[0].as_str() {
            "case" => {
                let path = dir.path().join(&fields[1]);
                let l = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
                ledger = Some((l, path));
                checks.clear();
            }
            "rule" | "rule-error" => {
                let (l, _) = ledger.as_ref().expect("rule outside a case");
                let result = scope(&fields[1]).map_err(str::to_owned).and_then(|s| {
                    let (t, k) = (unescape(&fields[2]), unescape(&fields[3]));
                    let r = Rule::new(s, &t, &k, fields[4].parse().expect("at"));
                    l.revoke(&r).map_err(|e| status_name(&e).to_owned())
                });
                if fields[0] == "rule" {
                    assert_eq!(result, Ok(()), "line {line_no}");
                } else {
                    assert_eq!(result, Err(fields[5].clone()), "line {line_no}");
                }
            }
            "check" | "check-error" => {
                let (l, _) = ledger.as_ref().expect("check outside a case");
                let c = Check {
                    line: line_no,
                    fields,
                };
                run_check(l, &c);
                checks.push(c);
            }
            "end" => {
                let (writer, path) = ledger.take().expect("end outside a case");
                let reader = Ledger::open_reader(&path).unwrap();
                drop(writer);
                let reopened = Ledger::open_reader(&path).unwrap();
                for c in &checks {
                    run_check(&reader, c);
                    run_check(&reopened, c);
                }
                cases += 1;
            }
            other => panic!("line {line_no}: unknown statement {other}"),
        }
    }
    assert!(cases >= 15, "only {cases} cases ran");
}
