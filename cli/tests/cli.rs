//! The `revledger` command line, run as a child process: every subcommand's happy path,
//! its exit codes, and its refusals.

use revledger::{unix_now_floor, Ledger, Scope, Token, Verdict, WriterOptions};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(args: &[&str]) -> Run {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run revledger")
        .into()
}

fn run_stdin(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn revledger");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait revledger").into()
}

#[track_caller]
fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, 0, "revledger {args:?}: {r:?}");
    r
}

#[track_caller]
fn fails(args: &[&str], needle: &str) -> Run {
    let r = run(args);
    assert_eq!(r.code, 2, "revledger {args:?}: {r:?}");
    assert!(
        r.stderr.contains(needle),
        "revledger {args:?}: stderr lacks {needle:?}: {r:?}"
    );
    r
}

/// A fresh ledger made by `revledger create`, in a temporary directory.
fn ledger(dir: &tempfile::TempDir) -> (PathBuf, String) {
    let path = dir.path().join("revocations.ledger");
    let s = path.to_str().expect("utf-8 temp path").to_string();
    ok(&["create", &s, "--max-token-lifetime", "3600"]);
    (path, s)
}

fn check_lib(path: &Path, token: &Token) -> Verdict {
    Ledger::open_reader(path)
        .expect("open reader")
        .check(token)
        .expect("check")
}

/// The number after `word ` in `text`.
fn number_after(text: &str, word: &str) -> i64 {
    let at = text
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {text:?}"))
        + word.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {word:?} in {text:?}"))
}

#[test]
fn create_records_settings_and_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let s = path.to_str().unwrap();
    let r = ok(&[
        "create",
        s,
        "--max-token-lifetime",
        "7200",
        "--leeway",
        "60",
    ]);
    assert!(r.stdout.contains("7200 s"), "{r:?}");
    let l = Ledger::open_reader(&path).unwrap();
    assert_eq!((l.max_token_lifetime(), l.leeway()), (7200, 60));
    fails(&["create", s], "already exists");
    let other = dir.path().join("neg");
    fails(
        &["create", other.to_str().unwrap(), "--leeway=-1"],
        "leeway must not be negative",
    );
    assert!(!other.exists(), "a refused create leaves no file");
}

#[test]
fn revoke_writes_every_scope_and_the_library_sees_each() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let r = ok(&["revoke", &l, "global", "--at", "100"]);
    assert!(r.stdout.contains("revoked global: cutoff 100"), "{r:?}");
    ok(&["revoke", &l, "tenant", "--tenant", "gone", "--at", "200"]);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", "300",
    ]);
    ok(&[
        "revoke",
        &l,
        "role",
        "--tenant",
        "acme",
        "super_admin",
        "--at",
        "400",
    ]);
    ok(&[
        "revoke", &l, "client", "--tenant", "acme", "spa", "--at", "500",
    ]);
    ok(&[
        "revoke", &l, "session", "--tenant", "acme", "s-1", "--at", "600", "--sync",
    ]);
    let r = ok(&[
        "revoke",
        &l,
        "token",
        "--tenant",
        "acme",
        "j-1",
        "--exp",
        "4000000000",
    ]);
    assert!(r.stdout.contains("exp 4000000000"), "{r:?}");

    let at = |scope, cutoff| Verdict::Revoked { scope, cutoff };
    let base = Token {
        tenant: b"acme",
        subject: b"bruce",
        issued_at: 50,
        ..Token::default()
    };
    assert_eq!(check_lib(&path, &base), at(Scope::Global, 100));
    let t = Token {
        issued_at: 700,
        ..base
    };
    assert_eq!(check_lib(&path, &t), Verdict::Valid);
    let gone = Token {
        tenant: b"gone",
        issued_at: 150,
        ..base
    };
    assert_eq!(check_lib(&path, &gone), at(Scope::Tenant, 200));
    let john = Token {
        subject: b"john",
        issued_at: 250,
        ..base
    };
    assert_eq!(check_lib(&path, &john), at(Scope::Subject, 300));
    let roles: &[&[u8]] = &[b"billing", b"super_admin"];
    assert_eq!(
        check_lib(
            &path,
            &Token {
                roles,
                issued_at: 350,
                ..base
            }
        ),
        at(Scope::Role, 400)
    );
    assert_eq!(
        check_lib(
            &path,
            &Token {
                client: b"spa",
                issued_at: 450,
                ..base
            }
        ),
        at(Scope::Client, 500)
    );
    assert_eq!(
        check_lib(
            &path,
            &Token {
                session: b"s-1",
                issued_at: 550,
                ..base
            }
        ),
        at(Scope::Session, 600)
    );
    assert_eq!(
        check_lib(
            &path,
            &Token {
                token_id: b"j-1",
                issued_at: 5000,
                ..base
            }
        ),
        at(Scope::Token, 4_000_000_000)
    );
}

#[test]
fn revoke_now_rounds_up_to_the_next_second() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let before = unix_now_floor();
    let r = ok(&["revoke", &l, "role", "--tenant", "acme", "super_admin"]);
    let after = unix_now_floor();
    let cutoff = number_after(&r.stdout, "cutoff");
    assert!(
        (before + 1..=after + 1).contains(&cutoff),
        "{cutoff} vs {before}..{after}: {r:?}"
    );
    let roles: &[&[u8]] = &[b"super_admin"];
    let same_second = Token {
        tenant: b"acme",
        roles,
        issued_at: cutoff - 1,
        ..Token::default()
    };
    assert!(check_lib(&path, &same_second).is_revoked());
    let refreshed = Token {
        issued_at: cutoff,
        ..same_second
    };
    assert_eq!(check_lib(&path, &refreshed), Verdict::Valid);
}

#[test]
fn revoke_takes_hex_for_bytes_that_are_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    ok(&[
        "revoke", &l, "subject", "--hex", "--tenant", "61ff00", "6a6f686e", "--at", "10",
    ]);
    let t = Token {
        tenant: b"a\xff\x00",
        subject: b"john",
        issued_at: 5,
        ..Token::default()
    };
    assert_eq!(
        check_lib(&path, &t),
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: 10
        }
    );
    let near = Token {
        tenant: b"a\xff",
        ..t
    };
    assert_eq!(check_lib(&path, &near), Verdict::Valid);
    let r = ok(&["dump", &l]);
    assert!(r.stdout.contains("a\\xff\\x00 john 10"), "{r:?}");
    let r = ok(&["dump", &l, "--json"]);
    assert!(r.stdout.contains(r#""tenant_hex":"61ff00""#), "{r:?}");
    assert!(r.stdout.contains(r#""key":"john""#), "{r:?}");
    let r = run(&[
        "check", &l, "--hex", "--tenant", "61ff00", "--sub", "6a6f686e", "--iat", "5",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    fails(
        &["revoke", &l, "subject", "--hex", "--tenant", "6g", "x"],
        "hex",
    );
}

#[test]
fn revoke_refuses_misshapen_rules_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    fails(
        &["revoke", &l, "global", "--tenant", "acme"],
        "global rule takes no --tenant",
    );
    fails(
        &["revoke", &l, "global", "key"],
        "global rule takes no --tenant and no key",
    );
    fails(
        &["revoke", &l, "tenant", "--tenant", "acme", "key"],
        "tenant rule takes --tenant and no key",
    );
    fails(&["revoke", &l, "tenant"], "needs --tenant");
    fails(
        &["revoke", &l, "subject", "--tenant", "acme"],
        "subject rule needs a key",
    );
    fails(
        &["revoke", &l, "token", "--tenant", "acme", "j"],
        "needs --exp",
    );
    fails(
        &[
            "revoke", &l, "token", "--tenant", "acme", "j", "--at", "now",
        ],
        "needs --exp",
    );
    fails(
        &["revoke", &l, "role", "--tenant", "acme", "r", "--exp", "5"],
        "--exp is for token rules",
    );
    fails(
        &[
            "revoke", &l, "role", "--tenant", "acme", "r", "--at", "soon",
        ],
        "neither `now` nor",
    );
    fails(&["revoke", &l, "planet", "x"], "unknown scope");
    let long = "x".repeat(revledger::MAX_KEY_LEN + 1);
    fails(
        &["revoke", &l, "role", "--tenant", "acme", &long],
        "the limit is",
    );
    let stats = Ledger::open_reader(&path).unwrap().stats(0).unwrap();
    assert_eq!(stats.rule_records, 0);

    let missing = dir.path().join("missing.ledger");
    fails(
        &["revoke", missing.to_str().unwrap(), "global"],
        "no ledger at",
    );
    assert!(!missing.exists(), "revoke must not create a ledger");
}

#[test]
fn revoke_reports_a_ledger_locked_by_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let writer = Ledger::open_writer(&path, &WriterOptions::default()).unwrap();
    fails(&["revoke", &l, "global", "--at", "5"], "locked");
    fails(&["compact", &l], "locked");
    drop(writer);
    // (Not reopened for writing here: a child spawned by a concurrent test may hold a
    // copy of the writer's descriptor, and so its lock, until it execs.)
    let stats = Ledger::open_reader(&path).unwrap().stats(0).unwrap();
    assert_eq!(stats.rule_records, 0, "a refused revoke writes nothing");
}

#[test]
fn a_reader_opened_before_a_revoke_process_sees_its_rule_after_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let reader = Ledger::open_reader(&path).unwrap();
    let roles: &[&[u8]] = &[b"super_admin", b"billing"];
    let john = Token {
        tenant: b"acme",
        subject: b"john",
        roles,
        issued_at: 1000,
        ..Token::default()
    };
    assert_eq!(reader.check(&john).unwrap(), Verdict::Valid);
    let status = Command::new(BIN)
        .args([
            "revoke",
            &l,
            "role",
            "--tenant",
            "acme",
            "super_admin",
            "--at",
            "2000",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("run revledger revoke");
    assert!(status.success(), "{status}");
    // Same handle, no reopen, no sleep: the committed record is visible on this check.
    assert_eq!(
        reader.check(&john).unwrap(),
        Verdict::Revoked {
            scope: Scope::Role,
            cutoff: 2000
        }
    );
}

#[test]
fn check_exit_codes_are_0_valid_1_revoked_2_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    ok(&[
        "revoke",
        &l,
        "role",
        "--tenant",
        "acme",
        "super_admin",
        "--at",
        "2000",
    ]);
    let john = [
        "--tenant",
        "acme",
        "--sub",
        "john",
        "--role",
        "billing",
        "--role",
        "super_admin",
    ];
    let args = |iat: &'static str| -> Vec<&str> {
        let mut a = vec!["check", l.as_str()];
        a.extend_from_slice(&john);
        a.extend_from_slice(&["--iat", iat]);
        a
    };
    let r = run(&args("1999"));
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stdout.trim(),
        "revoked: role changed at 2000 (role super_admin)"
    );
    let r = run(&args("2000"));
    assert_eq!((r.code, r.stdout.trim()), (0, "valid"), "{r:?}");
    let bruce = run(&[
        "check", &l, "--tenant", "acme", "--sub", "bruce", "--role", "billing", "--iat", "1",
    ]);
    assert_eq!((bruce.code, bruce.stdout.trim()), (0, "valid"), "{bruce:?}");

    let missing = dir.path().join("nope");
    fails(
        &["check", missing.to_str().unwrap(), "--iat", "1"],
        "no ledger at",
    );
    fails(&["check", &l, "--sub", "john"], "--iat");
    fails(&["check", &l, "--iat", "soon"], "invalid value");
    let long = "r".repeat(revledger::MAX_KEY_LEN + 1);
    fails(
        &["check", &l, "--role", &long, "--iat", "1"],
        "the limit is",
    );
}

#[test]
fn check_json_names_scope_cutoff_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", "2000",
    ]);
    let r = run(&[
        "check", &l, "--tenant", "acme", "--sub", "john", "--iat", "10", "--json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["revoked"], true);
    assert_eq!(v["scope"], "subject");
    assert_eq!(v["cutoff"], 2000);
    assert_eq!(v["key"], "john");
    let r = run(&[
        "check", &l, "--tenant", "acme", "--sub", "john", "--iat", "2000", "--json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["revoked"], false);
    assert!(v.get("scope").is_none(), "{v}");
}

#[test]
fn check_reads_claims_json_with_array_or_space_separated_roles() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    ok(&[
        "revoke",
        &l,
        "role",
        "--tenant",
        "acme",
        "super_admin",
        "--at",
        "2000",
    ]);
    ok(&[
        "revoke", &l, "client", "--tenant", "acme", "old-spa", "--at", "3000",
    ]);
    ok(&[
        "revoke",
        &l,
        "token",
        "--tenant",
        "acme",
        "j-9",
        "--exp",
        "4000000000",
    ]);
    let cases = [
        (
            r#"{"tid":"acme","sub":"john","roles":["billing","super_admin"],"iat":1500}"#,
            1,
            "role changed at 2000 (role super_admin)",
        ),
        (
            r#"{"tenant":"acme","sub":"john","scope":"read super_admin write","iat":1500}"#,
            1,
            "role changed at 2000",
        ),
        (
            r#"{"tid":"acme","sub":"john","groups":["super_admin"],"iat":1500}"#,
            1,
            "role changed at 2000",
        ),
        (
            r#"{"tid":"acme","sub":"john","permissions":"super_admin","iat":2500}"#,
            0,
            "valid",
        ),
        (
            r#"{"tid":"acme","sub":"bruce","roles":"billing","iat":1500}"#,
            0,
            "valid",
        ),
        (
            r#"{"tid":"other","sub":"john","roles":["super_admin"],"iat":1500}"#,
            0,
            "valid",
        ),
        (
            r#"{"tid":"acme","azp":"old-spa","iat":2500}"#,
            1,
            "client changed at 3000 (client old-spa)",
        ),
        (
            r#"{"tid":"acme","client_id":"old-spa","iat":2500}"#,
            1,
            "client changed at 3000",
        ),
        (
            r#"{"tid":"acme","jti":"j-9","iat":5000}"#,
            1,
            "revoked: token j-9",
        ),
    ];
    for (claims, code, needle) in cases {
        let r = run(&["check", &l, "--claims", claims]);
        assert_eq!(r.code, code, "{claims}: {r:?}");
        assert!(r.stdout.contains(needle), "{claims}: {r:?}");
    }
    let r = run_stdin(
        &["check", &l, "--claims", "-"],
        r#"{"tid":"acme","roles":["super_admin"],"iat":1}"#,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("role super_admin"), "{r:?}");

    fails(&["check", &l, "--claims", "{not json"], "not valid JSON");
    fails(
        &["check", &l, "--claims", r#"{"sub":"john"}"#],
        "no \"iat\"",
    );
    fails(
        &["check", &l, "--claims", r#"{"iat":1,"roles":[1,2]}"#],
        "claim \"roles/0\" must be a string",
    );
    fails(
        &["check", &l, "--claims", r#"{"iat":1}"#, "--sub", "john"],
        "cannot be used with",
    );
    let r = run_stdin(&["check", &l, "--claims", "-"], "");
    assert_eq!(r.code, 2, "{r:?}");
}

/// A Keycloak access token signed by PyJWT (tests/claims/sign.py): (jwt, iat).
fn keycloak_token() -> (String, i64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/claims/sign.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--format", "json"])
        .output()
        .expect("python3 (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "sign.py (scripts/install-deps installs PyJWT): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kc = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["spec"] == "keycloak")
        .expect("a keycloak token");
    (
        kc["jwt"].as_str().unwrap().into(),
        kc["iat"].as_i64().unwrap(),
    )
}

#[test]
fn check_reads_jwts_through_the_library_claim_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    let (jwt, iat) = keycloak_token();
    let realm = "https://sso.example.com/realms/acme";
    let at = (iat + 1).to_string();
    let jwt = jwt.as_str();
    // Not yet revoked.
    let r = run(&["check", &l, "--jwt", jwt, "--claims-spec", "keycloak"]);
    assert_eq!(r.code, 0, "{r:?}");
    // The client role billing-api/refund, in the keycloak key form.
    ok(&[
        "revoke",
        &l,
        "role",
        "--tenant",
        realm,
        "billing-api:refund",
        "--at",
        &at,
    ]);
    let r = run(&["check", &l, "--jwt", jwt, "--claims-spec", "keycloak"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("(role billing-api:refund)"), "{r:?}");
    // The generic mapping reads no tenant from iss: not its rule.
    let r = run(&["check", &l, "--jwt", jwt]);
    assert_eq!(r.code, 0, "{r:?}");
    // From standard input, with a trailing newline; --json shows what the mapping read.
    let r = run_stdin(
        &[
            "check",
            &l,
            "--jwt",
            "-",
            "--claims-spec",
            "keycloak",
            "--json",
        ],
        &format!("{jwt}\n"),
    );
    assert_eq!(r.code, 1, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["key"], "billing-api:refund");
    assert_eq!(v["token"]["tenant"], realm);
    assert_eq!(v["token"]["iat"], iat);
    let roles = v["token"]["roles"].as_array().unwrap();
    assert!(roles.contains(&"reports%3Aread".into()), "{v}");
    assert!(roles.contains(&"account:view-profile".into()), "{v}");
    // A pointer spec, given inline or in a file.
    let spec = r#"{"tenant":["/iss"],"subject":["/sub"],"roles":["/resource_access/*/roles"]}"#;
    ok(&[
        "revoke",
        &l,
        "role",
        "--tenant",
        realm,
        "view-profile",
        "--at",
        &at,
    ]);
    let r = run(&["check", &l, "--jwt", jwt, "--claims-spec", spec]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("(role view-profile)"), "{r:?}");
    let file = dir.path().join("spec.json");
    std::fs::write(&file, spec).unwrap();
    let at_file = format!("@{}", file.display());
    let r = run(&["check", &l, "--jwt", jwt, "--claims-spec", &at_file]);
    assert_eq!(r.code, 1, "{r:?}");
    // The payload itself through --claims and the same mapping.
    let payload =
        String::from_utf8(revledger::claims::jwt_payload(jwt.as_bytes()).unwrap()).unwrap();
    let r = run(&[
        "check",
        &l,
        "--claims",
        &payload,
        "--claims-spec",
        "keycloak",
    ]);
    assert_eq!(r.code, 1, "{r:?}");

    fails(&["check", &l, "--jwt", "a.b!.c"], "not base64url");
    fails(&["check", &l, "--jwt", "a.b"], "not a compact JWS");
    fails(
        &["check", &l, "--jwt", jwt, "--claims-spec", "okta"],
        "unknown claim mapping \"okta\"",
    );
    fails(
        &["check", &l, "--jwt", jwt, "--claims", "{}"],
        "cannot be used with",
    );
    fails(
        &["check", &l, "--jwt", jwt, "--sub", "x"],
        "cannot be used with",
    );
    fails(
        &[
            "check",
            &l,
            "--sub",
            "x",
            "--iat",
            "1",
            "--claims-spec",
            "keycloak",
        ],
        "--claims-spec reads --claims or --jwt",
    );
    fails(
        &[
            "check",
            &l,
            "--jwt",
            jwt,
            "--claims-spec",
            "@/nonexistent/spec",
        ],
        "reading the claim mapping",
    );
}

#[test]
fn stats_reports_keys_records_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", "100",
    ]);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", "200",
    ]);
    ok(&["revoke", &l, "role", "--tenant", "acme", "r"]); // as of now: not expired
    let r = ok(&["stats", &l]);
    for (name, value) in [
        ("live keys", 2),
        ("rule records", 3),
        ("expired keys", 1),
        ("max token lifetime", 3600),
        ("leeway", 300),
        ("generation", 0),
    ] {
        assert_eq!(number_after(&r.stdout, name), value, "{name}: {r:?}");
    }
    assert!(r.stdout.contains("bytes per rule"), "{r:?}");
    let r = ok(&["stats", &l, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["live_keys"], 2);
    assert_eq!(v["rule_records"], 3);
    assert_eq!(v["expired_keys"], 1);
    assert_eq!(v["max_token_lifetime"], 3600);
    assert_eq!(v["leeway"], 300);
    assert_eq!(v["generation"], 0);
    assert!(v["log_bytes"].as_u64().unwrap() > 256);
    assert!(v["file_bytes"].as_u64().unwrap() >= v["log_bytes"].as_u64().unwrap());
    assert!(v["index_bytes"].as_u64().unwrap() > 0);
    assert!(v["bytes_per_rule"].as_f64().unwrap() >= 32.0);
    let r = ok(&["stats", &l, "--json", "--now", "0"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["expired_keys"], 0);
}

/// The ledger's log end, from `stats --json`.
fn log_end(l: &str) -> u64 {
    let r = ok(&["stats", l, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["log_bytes"].as_u64().unwrap()
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn verify_passes_a_sound_ledger_and_reports_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", "100",
    ]);
    ok(&[
        "revoke", &l, "role", "--tenant", "acme", "admin", "--at", "100",
    ]);
    let r = ok(&["verify", &l]);
    assert!(
        r.stdout
            .contains("2 rules (subject 1, role 1; 0 written by the last compaction)"),
        "{r:?}"
    );
    assert_eq!(number_after(&r.stdout, "live keys"), 2, "{r:?}");
    assert!(r.stdout.contains("zeros only"), "{r:?}");
    assert_eq!(r.stdout.lines().last(), Some("ok"), "{r:?}");

    // Half a frame past the end, as a crash during an append leaves it.
    let end = log_end(&l);
    write_at(&path, end, &[40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2]);
    let r = ok(&["verify", &l]);
    assert!(
        r.stdout
            .contains(&format!("torn tail of 16 bytes at offset {end}")),
        "{r:?}"
    );
    // verify changed nothing: the next writer cuts the tail and verify is clean again.
    ok(&[
        "revoke", &l, "client", "--tenant", "acme", "app", "--at", "5",
    ]);
    let r = ok(&["verify", &l]);
    assert!(r.stdout.contains("zeros only"), "{r:?}");
    assert!(r.stdout.contains("3 rules"), "{r:?}");

    // A torn record inside the committed log (a crash lost part of a write whose header
    // update reached the disk): readers cut it, and verify says so.
    let end = log_end(&l);
    write_at(&path, end, &[40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2]);
    write_at(&path, 128, &(end + 16).to_le_bytes());
    let r = ok(&["verify", &l]);
    assert!(
        r.stdout.contains("16 bytes of the committed log cut"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("torn tail of 16 bytes at offset {end}")),
        "{r:?}"
    );
    assert!(r.stdout.contains("3 rules"), "{r:?}");
}

#[test]
fn verify_fails_on_corruption_and_compact_can_keep_the_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    for sub in ["john", "mike", "bruce"] {
        ok(&[
            "revoke", &l, "subject", "--tenant", "acme", sub, "--at", "100",
        ]);
    }
    // Flip a byte of the second record's key (the first frame, "acme"/"john", takes 40
    // bytes from 256): its CRC fails and a valid record follows.
    let second = 256 + 40;
    write_at(&path, second + 8 + 24 + 4, b"X");
    let r = fails(&["verify", &l], "offset 296");
    assert!(r.stderr.contains("corrupt"), "{r:?}");
    assert!(r.stderr.contains("--keep-valid-prefix"), "{r:?}");
    fails(&["dump", &l], "offset 296");
    let r = run(&[
        "check", &l, "--tenant", "acme", "--sub", "nobody", "--iat", "1",
    ]);
    assert_eq!(r.code, 2, "a corrupt ledger never answers valid: {r:?}");
    fails(&["compact", &l], "offset 296");

    let r = ok(&["compact", &l, "--keep-valid-prefix", "--now", "0"]);
    assert!(r.stdout.contains("cut 88 bytes"), "{r:?}");
    assert_eq!(number_after(&r.stdout, "rules kept"), 1, "{r:?}");
    let r = ok(&["verify", &l]);
    assert!(
        r.stdout
            .contains("1 rules (subject 1; 1 written by the last compaction)"),
        "{r:?}"
    );
    let john = Token {
        tenant: b"acme",
        subject: b"john",
        issued_at: 1,
        ..Token::default()
    };
    assert!(check_lib(&path, &john).is_revoked());
    let bruce = Token {
        subject: b"bruce",
        ..john
    };
    assert_eq!(
        check_lib(&path, &bruce),
        Verdict::Valid,
        "dropped with the damage"
    );
}

#[test]
fn verify_fails_on_garbage_followed_by_a_valid_record_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", "100",
    ]);
    let end = log_end(&l);
    // Copy the valid first frame 64 bytes past the end, and put garbage at the end.
    let bytes = std::fs::read(&path).unwrap();
    let frame = bytes[256..end as usize].to_vec();
    write_at(&path, end + 64, &frame);
    write_at(&path, end, &[0xff; 8]);
    let r = fails(&["verify", &l], &format!("offset {end}"));
    assert!(
        r.stderr
            .contains(&format!("valid record at offset {}", end + 64)),
        "{r:?}"
    );
}

/// DESIGN.md §3, Time sanity: `compact --now` in milliseconds would drop every rule, and a
/// token issued days from now cannot be judged; both are refused (exit 2) and change
/// nothing.
#[test]
fn a_now_in_milliseconds_and_a_future_iat_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let now = unix_now_floor();
    let now_s = now.to_string();
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", &now_s,
    ]);
    fails(
        &["compact", &l, "--now", &(now * 1000).to_string()],
        "milliseconds",
    );
    let john = Token {
        tenant: b"acme",
        subject: b"john",
        issued_at: now - 1,
        ..Token::default()
    };
    assert_eq!(
        check_lib(&path, &john),
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: now
        }
    );
    let future = (now + 3 * 86_400).to_string();
    fails(
        &[
            "check", &l, "--tenant", "acme", "--sub", "bruce", "--iat", &future,
        ],
        "future",
    );
    // A rule that revokes it still decides.
    ok(&[
        "revoke",
        &l,
        "tenant",
        "--tenant",
        "acme",
        "--at",
        &(now + 4 * 86_400).to_string(),
    ]);
    let r = run(&[
        "check", &l, "--tenant", "acme", "--sub", "bruce", "--iat", &future,
    ]);
    assert_eq!(r.code, 1, "{r:?}");
}

#[test]
fn compact_drops_expired_rules_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let now = unix_now_floor();
    let old = (now - 3600 - 300 - 10).to_string();
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "gone", "--at", &old,
    ]);
    ok(&[
        "revoke", &l, "subject", "--tenant", "acme", "john", "--at", &old,
    ]);
    ok(&[
        "revoke",
        &l,
        "subject",
        "--tenant",
        "acme",
        "john",
        "--at",
        &now.to_string(),
    ]);
    let reader = Ledger::open_reader(&path).unwrap();
    let now_s = now.to_string();
    let r = ok(&["compact", &l, "--now", &now_s, "--verbose"]);
    assert_eq!(number_after(&r.stdout, "records before"), 3, "{r:?}");
    assert_eq!(number_after(&r.stdout, "rules kept"), 1, "{r:?}");
    assert_eq!(number_after(&r.stdout, "keys dropped"), 1, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("dropped subject acme gone {old}")),
        "{r:?}"
    );
    assert!(r.stdout.contains("generation 0 -> 1"), "{r:?}");
    let john = Token {
        tenant: b"acme",
        subject: b"john",
        issued_at: now - 1,
        ..Token::default()
    };
    assert_eq!(
        reader.check(&john).unwrap(),
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: now
        }
    );
    // The compacted file's log starts with john's rule (one per live key); new rules follow.
    ok(&[
        "revoke", &l, "role", "--tenant", "acme", "admin", "--at", "7",
    ]);
    let r = ok(&["dump", &l]);
    let lines: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|x| x.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(lines[0], ["256", "rule", "subject", "acme", "john", &now_s]);
    assert_eq!(lines[1][1..], ["rule", "role", "acme", "admin", "7"]);
    let r = ok(&["stats", &l]);
    assert_eq!(number_after(&r.stdout, "compacted keys"), 1, "{r:?}");
    assert_eq!(number_after(&r.stdout, "generation"), 1, "{r:?}");
    let r = ok(&["verify", &l]);
    assert!(
        r.stdout.contains("1 written by the last compaction"),
        "{r:?}"
    );
    assert!(r.stdout.contains("zeros only"), "{r:?}");
    // A torn tail after the compacted rules is found at the end of the log.
    let end = log_end(&l);
    write_at(&path, end, &[0xde, 0xad]);
    let r = ok(&["verify", &l]);
    assert!(
        r.stdout
            .contains(&format!("torn tail of 8 bytes at offset {end}")),
        "{r:?}"
    );
    fails(
        &["compact", dir.path().join("nope").to_str().unwrap()],
        "no ledger at",
    );
}

#[test]
fn dump_prints_one_line_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    ok(&["revoke", &l, "global", "--at", "7"]);
    ok(&[
        "revoke",
        &l,
        "role",
        "--tenant",
        "acme",
        "super admin",
        "--at",
        "8",
    ]);
    let r = ok(&["dump", &l]);
    let lines: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|x| x.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["256", "rule", "global", "-", "-", "7"],
            vec!["288", "rule", "role", "acme", "super\\x20admin", "8"],
        ]
    );
    let r = ok(&["dump", &l, "--json"]);
    let v: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|x| serde_json::from_str(x).unwrap())
        .collect();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1]["offset"], 288);
    assert_eq!(v[1]["scope"], "role");
    assert_eq!(v[1]["key"], "super admin");
    assert_eq!(v[1]["at"], 8);
}

#[test]
fn revoke_batch_reads_a_file_or_stdin_and_checks_every_line_first() {
    let dir = tempfile::tempdir().unwrap();
    let (path, l) = ledger(&dir);
    let file = dir.path().join("rules.txt");
    std::fs::write(
        &file,
        "# scope tenant key at\nrole acme super_admin 2000\n\nglobal - - 10\ntenant gone - now\nsubject acme j\\x20doe 2000\ntoken acme j-1 4000000000\n",
    )
    .unwrap();
    let r = ok(&[
        "revoke-batch",
        &l,
        "--file",
        file.to_str().unwrap(),
        "--sync",
    ]);
    assert!(r.stdout.contains("revoked 5 rules"), "{r:?}");
    let t = Token {
        tenant: b"acme",
        subject: b"j doe",
        issued_at: 1999,
        ..Token::default()
    };
    assert_eq!(
        check_lib(&path, &t),
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: 2000
        }
    );

    let r = run_stdin(&["revoke-batch", &l], "client acme app 3000\n");
    assert_eq!(r.code, 0, "{r:?}");
    let before = Ledger::open_reader(&path)
        .unwrap()
        .stats(0)
        .unwrap()
        .rule_records;
    assert_eq!(before, 6);
    for (input, needle) in [
        (
            "role acme a 1\nrole acme b\n",
            "stdin line 2: expected 4 fields",
        ),
        ("role acme a 1\nplanet acme b 1\n", "line 2: unknown scope"),
        (
            "token acme j now\n",
            "line 1: a token rule's time is the token's exp",
        ),
        (
            "global acme - 1\n",
            "line 1: invalid argument: a global rule takes no tenant",
        ),
        ("role acme b\\q 1\n", "line 1:"),
    ] {
        let r = run_stdin(&["revoke-batch", &l, "-f", "-"], input);
        assert_eq!(r.code, 2, "{input:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{input:?}: {r:?}");
    }
    let after = Ledger::open_reader(&path)
        .unwrap()
        .stats(0)
        .unwrap()
        .rule_records;
    assert_eq!(after, before, "a refused batch writes nothing");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, needle) in [
        (&[][..], "Usage"),
        (&["frobnicate"][..], "unrecognized subcommand"),
        (&["create"][..], "required"),
        (
            &["check", "x", "--iat", "1", "--bogus"][..],
            "unexpected argument",
        ),
        (&["stats", "x", "--now", "later"][..], "invalid value"),
        (&["demo", "--checks", "many"][..], "invalid value"),
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {r:?}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for cmd in [
        "create",
        "revoke",
        "revoke-batch",
        "check",
        "stats",
        "verify",
        "compact",
        "dump",
        "demo",
    ] {
        let r = ok(&[cmd, "--help"]);
        assert!(r.stdout.contains("Usage: revledger"), "{cmd}: {r:?}");
    }
    let r = ok(&["--version"]);
    assert!(r.stdout.contains(revledger::VERSION), "{r:?}");
}

#[test]
fn demo_plays_the_scenario_and_cleans_up() {
    let child = Command::new(BIN)
        .args(["demo", "--checks", "20000", "--rules", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 0, "{r:?}");
    let after_change = r
        .stdout
        .split("\"super_admin changed\"")
        .nth(1)
        .expect("the change is announced");
    let line = |jti: &str| {
        after_change
            .lines()
            .find(|x| x.trim_start().starts_with(jti))
            .unwrap_or_else(|| panic!("{jti} in {r:?}"))
            .to_string()
    };
    let cutoff = number_after(&r.stdout, "cutoff");
    let by_role = format!("revoked by role super_admin at {cutoff}");
    assert!(line("john-1").ends_with(&by_role), "{r:?}");
    assert!(line("mike-1").ends_with(&by_role), "{r:?}");
    assert!(line("bruce-1").ends_with("valid"), "{r:?}");
    assert!(line("john-2").ends_with("valid"), "{r:?}");
    assert!(r.stdout.contains("revoked by subject bruce"), "{r:?}");
    assert!(r.stdout.contains("revoked by token mike-2"), "{r:?}");
    assert!(r.stdout.contains("ns/check"), "{r:?}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("revledger-demo-{pid}-"))
        })
        .collect();
    assert!(leftovers.is_empty(), "demo left {leftovers:?}");
}

/// Standard output that cannot be written (a full device) is the documented exit status
/// 2 with one line saying so, never a panic (exit 101).
#[test]
fn an_unwritable_standard_output_is_exit_2_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l) = ledger(&dir);
    let full = match File::options().write(true).open("/dev/full") {
        Ok(f) => f,
        Err(e) => panic!("/dev/full: {e}"),
    };
    for args in [&["stats", &l][..], &["verify", &l][..]] {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}
