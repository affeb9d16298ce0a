//! Compiling a claim mapping: the built-in specs and JSON-Pointer specs become one tree of
//! paths into the payload, walked once per check by `read`.

use crate::error::{Error, Result};
use jiter::{Jiter, Peek};

/// Most pointers one part of a pointer spec may list.
pub const MAX_POINTERS_PER_PART: usize = 64;
/// Most reference tokens in one pointer.
pub const MAX_POINTER_DEPTH: usize = 16;
/// Longest pointer spec accepted, in bytes of JSON.
pub const MAX_SPEC_LEN: usize = 64 * 1024;

/// A part of the token to check, in the order of the single-valued slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Tenant = 0,
    Subject = 1,
    Client = 2,
    Session = 3,
    TokenId = 4,
    IssuedAt = 5,
    Roles = 6,
}

/// Number of single-valued string parts (tenant .. token id).
pub(crate) const STRING_PARTS: usize = 5;

impl Part {
    fn field(self) -> &'static str {
        match self {
            Part::Tenant => "tenant",
            Part::Subject => "subject",
            Part::Client => "client",
            Part::Session => "session",
            Part::TokenId => "token_id",
            Part::IssuedAt => "iat",
            Part::Roles => "roles",
        }
    }

    /// The part named by a field of a pointer spec (a few common aliases accepted).
    fn parse(field: &str) -> Option<Part> {
        Some(match field {
            "tenant" => Part::Tenant,
            "subject" | "sub" => Part::Subject,
            "roles" => Part::Roles,
            "client" | "azp" | "client_id" => Part::Client,
            "session" | "sid" => Part::Session,
            "token_id" | "jti" => Part::TokenId,
            "iat" | "issued_at" => Part::IssuedAt,
            _ => return None,
        })
    }
}

/// How an entitlement string found at a leaf becomes role keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoleForm {
    /// As it is.
    Plain,
    /// Keycloak realm role, group or scope: escaped (`%` → `%25`, `:` → `%3A`).
    KeycloakEscaped,
    /// Keycloak client role: `esc(client) ":" esc(role)`, the client being the key
    /// matched by the pointer's `*`.
    KeycloakClient,
}

/// What to do with the value at the end of a path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaf {
    pub part: Part,
    /// Position of the source in its part's list: the lowest present one wins.
    pub rank: u8,
    /// A string value is split on ASCII whitespace (`scope`, `scp`).
    pub split: bool,
    pub form: RoleForm,
}

/// One reference token of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// An object member of that name, or (when it is an array index) an array element.
    Key(Box<[u8]>),
    /// Every member of an object, every element of an array (`*`).
    Any,
    /// Every object member whose name ends with these bytes (Auth0's namespaced
    /// `…/roles` claims; built-in specs only).
    Suffix(Box<[u8]>),
}

/// A node of the path tree: the value at one location of the payload.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// Parts read from the value here.
    pub leaves: Vec<Leaf>,
    /// Member names → child, by hash.
    pub keys: KeyTable,
    /// Array index → child (reference tokens that are array indices).
    pub indices: Vec<(usize, usize)>,
    /// `*` → child.
    pub any: Option<usize>,
    /// Name suffix → child.
    pub suffixes: Vec<(Box<[u8]>, usize)>,
    pub children: Vec<Node>,
}

impl Node {
    fn is_branch(&self) -> bool {
        !self.children.is_empty()
    }

    fn child(&mut self, step: &Step) -> usize {
        let existing = match step {
            Step::Key(k) => self.keys.get(k),
            Step::Any => self.any,
            Step::Suffix(s) => self.suffixes.iter().find(|(x, _)| x == s).map(|p| p.1),
        };
        if let Some(i) = existing {
            return i;
        }
        let i = self.children.len();
        self.children.push(Node::default());
        match step {
            Step::Key(k) => {
                self.keys.insert(k.clone(), i);
                if let Some(index) = array_index(k) {
                    self.indices.push((index, i));
                }
            }
            Step::Any => self.any = Some(i),
            Step::Suffix(s) => self.suffixes.push((s.clone(), i)),
        }
        i
    }
}

/// RFC 6901: an array index is `0` or digits without a leading zero.
fn array_index(token: &[u8]) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token[0] == b'0') {
        return None;
    }
    if !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Member name → child index: open addressing over a power-of-two table, so a payload
/// key costs one hash and (almost always) one comparison, however many claims the
/// mapping reads. The table holds only the spec's names; a probe stops at the first
/// empty slot, so no payload can make a lookup cost more than the spec's size.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    slots: Vec<Option<Slot>>,
    len: usize,
}

#[derive(Debug)]
struct Slot {
    /// [`KeyTable::tag`] of `key`: compared before the bytes, so that a payload name
    /// that is not the spec's is told apart without a memcmp.
    tag: u64,
    key: Box<[u8]>,
    child: usize,
}

impl KeyTable {
    /// Claim names are short and mostly differ in length or in their first, middle or
    /// last byte: four loads, no loop.
    #[inline]
    fn tag(key: &[u8]) -> u64 {
        let n = key.len();
        let (first, mid, last) = match n {
            0 => (0, 0, 0),
            _ => (key[0], key[n / 2], key[n - 1]),
        };
        n as u64 | (first as u64) << 40 | (mid as u64) << 48 | (last as u64) << 56
    }

    #[inline]
    fn home(tag: u64, mask: usize) -> usize {
        (tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & mask
    }

    /// The child index for `key`, if the spec names it.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let tag = Self::tag(key);
        let mut i = Self::home(tag, mask);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(s) if s.tag == tag && *s.key == *key => return Some(s.child),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    fn insert(&mut self, key: Box<[u8]>, child: usize) {
        if (self.len + 1) * 4 > self.slots.len() {
            let old = std::mem::take(&mut self.slots);
            self.slots = (0..(old.len() * 2).max(16)).map(|_| None).collect();
            self.len = 0;
            for s in old.into_iter().flatten() {
                self.insert(s.key, s.child);
            }
        }
        let mask = self.slots.len() - 1;
        let tag = Self::tag(&key);
        let mut i = Self::home(tag, mask);
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some(Slot { tag, key, child });
        self.len += 1;
    }

    /// The names, with their child index.
    fn iter(&self) -> impl Iterator<Item = (&[u8], usize)> {
        self.slots.iter().flatten().map(|s| (&*s.key, s.child))
    }
}

/// A compiled mapping: the tree and what the error messages need.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub name: Box<str>,
    pub root: Node,
    /// The sources of `iat`, for the "no iat" message.
    pub iat_sources: Box<str>,
}

struct Builder {
    root: Node,
    iat_sources: Vec<String>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            root: Node::default(),
            iat_sources: Vec::new(),
        }
    }

    fn add(&mut self, part: Part, rank: usize, steps: &[Step], form: RoleForm, shown: &str) {
        let split = part == Part::Roles
            && matches!(steps.last(), Some(Step::Key(k)) if &**k == b"scope" || &**k == b"scp");
        let mut node = &mut self.root;
        for step in steps {
            let i = node.child(step);
            node = &mut node.children[i];
        }
        node.leaves.push(Leaf {
            part,
            rank: rank as u8,
            split,
            form,
        });
        if part == Part::IssuedAt {
            self.iat_sources.push(shown.to_string());
        }
    }

    /// A built-in source: a top-level claim, or a dotted path without escapes.
    fn claim(&mut self, part: Part, rank: usize, path: &str, form: RoleForm) {
        let steps: Vec<Step> = path
            .split('.')
            .map(|t| match t {
                "*" => Step::Any,
                t => Step::Key(t.as_bytes().into()),
            })
            .collect();
        self.add(part, rank, &steps, form, path);
    }

    fn finish(self, name: &str) -> Result<Compiled> {
        check_no_prefix(&self.root, &mut String::new())?;
        Ok(Compiled {
            name: name.into(),
            root: self.root,
            iat_sources: if self.iat_sources.is_empty() {
                "(none)".into()
            } else {
                self.iat_sources.join(", ").into()
            },
        })
    }
}

/// A pointer that ends where another goes on (`/a` and `/a/b`) names a value that would
/// have to be a string and an object at once: refused when the spec is compiled.
fn check_no_prefix(node: &Node, at: &mut String) -> Result<()> {
    if !node.leaves.is_empty() && node.is_branch() {
        return Err(Error::invalid(format!(
            "claim mapping: pointer {at:?} reads a claim that other pointers go through"
        )));
    }
    for (i, child) in node.children.iter().enumerate() {
        let len = at.len();
        at.push('/');
        at.push_str(&step_name(node, i));
        check_no_prefix(child, at)?;
        at.truncate(len);
    }
    Ok(())
}

fn step_name(node: &Node, child: usize) -> String {
    if node.any == Some(child) {
        return "*".into();
    }
    if let Some((s, _)) = node.suffixes.iter().find(|(_, c)| *c == child) {
        return format!("…{}", String::from_utf8_lossy(s));
    }
    for (k, c) in node.keys.iter() {
        if c == child {
            return String::from_utf8_lossy(k).into_owned();
        }
    }
    String::new()
}

/// The names of the built-in mappings.
pub const BUILTIN_SPECS: [&str; 4] = ["generic", "auth0", "keycloak", "entra"];

/// Compiles a built-in name or a JSON pointer spec.
pub(crate) fn compile(spec: &str) -> Result<Compiled> {
    use Part::*;
    use RoleForm::*;
    let mut b = Builder::new();
    let sources = |b: &mut Builder, part: Part, paths: &[&str], form: RoleForm| {
        for (rank, p) in paths.iter().enumerate() {
            b.claim(part, rank, p, form);
        }
    };
    let trimmed = spec.trim_start();
    match spec {
        "generic" => {
            sources(&mut b, Tenant, &["tenant", "tid", "org_id"], Plain);
            sources(&mut b, Subject, &["sub"], Plain);
            sources(
                &mut b,
                Roles,
                &["roles", "groups", "permissions", "scope", "scp"],
                Plain,
            );
            sources(&mut b, Client, &["azp", "client_id", "appid"], Plain);
            sources(&mut b, Session, &["sid"], Plain);
            sources(&mut b, TokenId, &["jti", "uti"], Plain);
        }
        "auth0" => {
            sources(&mut b, Tenant, &["org_id"], Plain);
            sources(&mut b, Subject, &["sub"], Plain);
            sources(&mut b, Roles, &["permissions"], Plain);
            b.add(
                Roles,
                1,
                &[Step::Suffix((*b"/roles").into())],
                Plain,
                "*/roles",
            );
            b.claim(Roles, 2, "scope", Plain);
            sources(&mut b, Client, &["azp"], Plain);
            sources(&mut b, Session, &["sid"], Plain);
            sources(&mut b, TokenId, &["jti"], Plain);
        }
        "keycloak" => {
            sources(&mut b, Tenant, &["iss"], Plain);
            sources(&mut b, Subject, &["sub"], Plain);
            b.claim(Roles, 0, "realm_access.roles", KeycloakEscaped);
            b.claim(Roles, 1, "resource_access.*.roles", KeycloakClient);
            b.claim(Roles, 2, "groups", KeycloakEscaped);
            b.claim(Roles, 3, "scope", KeycloakEscaped);
            sources(&mut b, Client, &["azp"], Plain);
            sources(&mut b, Session, &["sid"], Plain);
            sources(&mut b, TokenId, &["jti"], Plain);
        }
        "entra" => {
            sources(&mut b, Tenant, &["tid"], Plain);
            sources(&mut b, Subject, &["oid"], Plain);
            sources(&mut b, Roles, &["roles", "groups", "wids", "scp"], Plain);
            sources(&mut b, Client, &["azp", "appid"], Plain);
            sources(&mut b, Session, &["sid"], Plain);
            sources(&mut b, TokenId, &["uti"], Plain);
        }
        _ if trimmed.starts_with('{') => return compile_pointers(spec),
        _ => {
            return Err(Error::invalid(format!(
                "unknown claim mapping {spec:?}: use one of generic, auth0, keycloak, entra, \
                 or a JSON object of JSON Pointers such as {{\"subject\":[\"/sub\"],\"roles\":[\"/roles\"]}}"
            )))
        }
    }
    b.claim(IssuedAt, 0, "iat", Plain);
    b.finish(spec)
}

fn spec_error(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("claim mapping: {msg}"))
}

/// A JSON object naming, for each part, a list of RFC 6901 pointers (or one pointer).
fn compile_pointers(spec: &str) -> Result<Compiled> {
    if spec.len() > MAX_SPEC_LEN {
        return Err(spec_error(format!(
            "the spec is {} bytes long; the limit is {MAX_SPEC_LEN}",
            spec.len()
        )));
    }
    let bad_json = |e: jiter::JiterError| spec_error(format!("not valid JSON: {e}"));
    let mut j = Jiter::new(spec.as_bytes());
    let mut b = Builder::new();
    let mut seen = [false; 7];
    let mut field = j.next_object().map_err(bad_json)?.map(str::to_owned);
    while let Some(name) = field {
        let part = Part::parse(&name).ok_or_else(|| {
            spec_error(format!(
                "unknown field {name:?}: the fields are tenant, subject, roles, client, \
                 session, token_id and iat"
            ))
        })?;
        if std::mem::replace(&mut seen[part as usize], true) {
            return Err(spec_error(format!(
                "the {} part is named twice",
                part.field()
            )));
        }
        let mut pointers = Vec::new();
        match j.peek().map_err(bad_json)? {
            Peek::String => pointers.push(j.known_str().map_err(bad_json)?.to_owned()),
            Peek::Array => {
                let mut next = j.known_array().map_err(bad_json)?;
                while let Some(peek) = next {
                    if peek != Peek::String {
                        return Err(spec_error(format!(
                            "{name:?}: every pointer must be a string"
                        )));
                    }
                    pointers.push(j.known_str().map_err(bad_json)?.to_owned());
                    next = j.array_step().map_err(bad_json)?;
                }
            }
            _ => {
                return Err(spec_error(format!(
                    "{name:?} must be a list of JSON Pointers, like [\"/sub\"]"
                )))
            }
        }
        if pointers.is_empty() {
            // Most likely a typo: the part would never be read, and tokens whose rules
            // it names would pass as valid. Omitting the part says so on purpose.
            return Err(spec_error(format!(
                "{name:?} lists no pointer: give at least one, or leave the part out"
            )));
        }
        if pointers.len() > MAX_POINTERS_PER_PART {
            return Err(spec_error(format!(
                "{name:?} lists {} pointers; the limit is {MAX_POINTERS_PER_PART}",
                pointers.len()
            )));
        }
        for (rank, p) in pointers.iter().enumerate() {
            let steps = parse_pointer(p)?;
            b.add(part, rank, &steps, RoleForm::Plain, p);
        }
        field = j.next_key().map_err(bad_json)?.map(str::to_owned);
    }
    j.finish().map_err(bad_json)?;
    if !seen
        .iter()
        .enumerate()
        .any(|(part, &named)| named && part != Part::IssuedAt as usize)
    {
        return Err(spec_error(
            "the spec names no part of the token (tenant, subject, roles, client, session,              token_id): only global rules could revoke a token through it"
                .to_string(),
        ));
    }
    if !seen[Part::IssuedAt as usize] {
        b.add(
            Part::IssuedAt,
            0,
            &[Step::Key((*b"iat").into())],
            RoleForm::Plain,
            "/iat",
        );
    }
    b.finish("custom")
}

/// RFC 6901: `""` or `/`-separated reference tokens with `~1` for `/` and `~0` for `~`;
/// a token that is exactly `*` matches every member or element (at most one per pointer).
fn parse_pointer(p: &str) -> Result<Vec<Step>> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(spec_error(format!(
            "{p:?} is not a JSON Pointer into the payload: it must start with '/', like \"/sub\""
        )));
    };
    let mut steps = Vec::new();
    for token in rest.split('/') {
        if token == "*" {
            if steps.contains(&Step::Any) {
                return Err(spec_error(format!(
                    "pointer {p:?} has more than one '*' (one is allowed)"
                )));
            }
            steps.push(Step::Any);
            continue;
        }
        let mut key = Vec::with_capacity(token.len());
        let mut bytes = token.bytes();
        while let Some(c) = bytes.next() {
            if c != b'~' {
                key.push(c);
                continue;
            }
            match bytes.next() {
                Some(b'0') => key.push(b'~'),
                Some(b'1') => key.push(b'/'),
                _ => {
                    return Err(spec_error(format!(
                        "pointer {p:?}: '~' must be followed by 0 or 1 (RFC 6901)"
                    )))
                }
            }
        }
        steps.push(Step::Key(key.into()));
    }
    if steps.len() > MAX_POINTER_DEPTH {
        return Err(spec_error(format!(
            "pointer {p:?} has {} reference tokens; the limit is {MAX_POINTER_DEPTH}",
            steps.len()
        )));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        compile(spec).unwrap_err().to_string()
    }

    #[test]
    fn builtins_compile_and_unknown_names_are_refused() {
        for name in BUILTIN_SPECS {
            assert_eq!(&*compile(name).unwrap().name, name);
        }
        assert!(err("okta").contains("unknown claim mapping \"okta\""));
        assert!(err("").contains("unknown claim mapping"));
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        assert_eq!(
            parse_pointer("/a~1b/c~0d/*/0").unwrap(),
            vec![
                Step::Key((*b"a/b").into()),
                Step::Key((*b"c~d").into()),
                Step::Any,
                Step::Key((*b"0").into())
            ]
        );
        assert_eq!(parse_pointer("/").unwrap(), vec![Step::Key(Box::default())]);
        assert!(parse_pointer("sub").is_err());
        assert!(parse_pointer("").is_err());
        assert!(parse_pointer("/a~2").is_err());
        assert!(parse_pointer("/*/x/*").is_err());
        assert!(parse_pointer(&"/a".repeat(MAX_POINTER_DEPTH + 1)).is_err());
        assert_eq!(array_index(b"0"), Some(0));
        assert_eq!(array_index(b"12"), Some(12));
        assert_eq!(array_index(b"012"), None);
        assert_eq!(array_index(b"-"), None);
    }

    #[test]
    fn misshapen_pointer_specs_are_refused_with_the_reason() {
        for (spec, needle) in [
            (r#"{"subject":"/sub","nope":[]}"#, "unknown field \"nope\""),
            (r#"{"subject":["/sub"],"sub":["/x"]}"#, "named twice"),
            (r#"{"roles":[1]}"#, "must be a string"),
            (r#"{"roles":{}}"#, "list of JSON Pointers"),
            (r#"{"roles":["/a"],"subject":["/a/b"]}"#, "go through"),
            (r#"{"roles":["/a"]"#, "not valid JSON"),
            (r#"{"roles":["/a"]} x"#, "not valid JSON"),
            // a part that reads nothing, or a spec that reads no part: a typo, whose
            // tokens would pass as valid whatever their rules
            (r#"{"subject":[]}"#, "lists no pointer"),
            (r#"{"subject":["/sub"],"iat":[]}"#, "lists no pointer"),
            ("{}", "names no part"),
            (r#"{"iat":["/issued"]}"#, "names no part"),
        ] {
            let e = err(spec);
            assert!(e.contains(needle), "{spec}: {e}");
        }
        let many = format!(
            r#"{{"roles":[{}]}}"#,
            vec!["\"/r\""; MAX_POINTERS_PER_PART + 1].join(",")
        );
        assert!(err(&many).contains("the limit is"));
    }

    #[test]
    fn key_table_finds_every_name_and_nothing_else() {
        let mut t = KeyTable::default();
        let names: Vec<String> = (0..100).map(|i| format!("claim-{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            t.insert(n.as_bytes().into(), i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(t.get(n.as_bytes()), Some(i));
        }
        assert_eq!(t.get(b"claim-100"), None);
        assert_eq!(t.get(b""), None);
        assert_eq!(KeyTable::default().get(b"x"), None);
    }
}
