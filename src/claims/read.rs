//! Reading a payload through a compiled mapping: one pass of jiter's pull parser over the
//! JSON, guided by the path tree; every claim the tree does not name is skipped without
//! being decoded. Strings are kept as ranges of the payload (no copy) unless they hold a
//! JSON escape or need a Keycloak key form; those few are written to a small scratch
//! buffer on the stack.

use super::spec::{Compiled, Leaf, Node, Part, RoleForm, STRING_PARTS};
use super::{escaped, MAX_CLAIMS_LEN};
use crate::error::{Error, Result};
use crate::rule::{Token, MAX_KEY_LEN, MAX_ROLES};
use jiter::{Jiter, JiterError, NumberAny, NumberInt, Peek};
use smallvec::SmallVec;

/// Bytes of the payload or of the scratch buffer.
#[derive(Clone, Copy, Debug)]
enum Span {
    Payload(u32, u32),
    Scratch(u32, u32),
}

/// One step of the path to the value being read, for error messages.
#[derive(Clone, Copy)]
enum Seg {
    /// A member name: its raw bytes in the payload.
    Key(u32, u32),
    Index(u32),
}

/// Roles kept on the stack before spilling to the heap.
const INLINE_ROLES: usize = 32;

struct Reader<'j> {
    data: &'j [u8],
    path: SmallVec<[Seg; 8]>,
    /// tenant, subject, client, session, token id: (rank, value).
    strings: [Option<(u8, Span)>; STRING_PARTS],
    iat: Option<(u8, i64)>,
    roles: SmallVec<[Span; INLINE_ROLES]>,
    scratch: SmallVec<[u8; 512]>,
}

fn json_error(e: JiterError) -> Error {
    Error::invalid(format!("claims are not valid JSON: {e}"))
}

fn type_name(peek: Peek) -> &'static str {
    match peek {
        Peek::String => "a string",
        Peek::Array => "an array",
        Peek::Object => "an object",
        Peek::True | Peek::False => "a boolean",
        Peek::Null => "null",
        p if p.is_num() => "a number",
        _ => "not a JSON value",
    }
}

/// Reads `json` (a JWT payload) through `mapping` and calls `f` with the token to check.
pub(crate) fn with_token<R>(
    mapping: &Compiled,
    json: &[u8],
    f: impl FnOnce(&Token<'_>) -> R,
) -> Result<R> {
    if json.len() > MAX_CLAIMS_LEN {
        return Err(Error::invalid(format!(
            "claims are {} bytes long; the limit is {MAX_CLAIMS_LEN}",
            json.len()
        )));
    }
    let mut r = Reader {
        data: json,
        path: SmallVec::new(),
        strings: [None; STRING_PARTS],
        iat: None,
        roles: SmallVec::new(),
        scratch: SmallVec::new(),
    };
    let mut j = Jiter::new(json);
    let peek = j.peek().map_err(json_error)?;
    if peek != Peek::Object {
        return Err(Error::invalid(format!(
            "claims must be a JSON object, found {}",
            type_name(peek)
        )));
    }
    r.branch(&mut j, &mapping.root, None)?;
    j.finish().map_err(json_error)?;

    let Some((_, issued_at)) = r.iat else {
        return Err(Error::invalid(format!(
            "claims have no \"iat\" (looked for {}): the issue time decides revocation",
            mapping.iat_sources
        )));
    };
    let scratch = &r.scratch[..];
    let bytes = |s: Span| -> &[u8] {
        match s {
            Span::Payload(a, b) => &json[a as usize..b as usize],
            Span::Scratch(a, b) => &scratch[a as usize..b as usize],
        }
    };
    let string = |p: Part| r.strings[p as usize].map_or(&[][..], |(_, s)| bytes(s));
    let roles: SmallVec<[&[u8]; INLINE_ROLES]> = r.roles.iter().map(|s| bytes(*s)).collect();
    Ok(f(&Token {
        tenant: string(Part::Tenant),
        subject: string(Part::Subject),
        roles: &roles,
        client: string(Part::Client),
        session: string(Part::Session),
        token_id: string(Part::TokenId),
        issued_at,
    }))
}

impl<'j> Reader<'j> {
    /// The path to the value being read, as `a/b/0`.
    fn claim_name(&self) -> String {
        let mut s = String::new();
        for (i, seg) in self.path.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            match *seg {
                Seg::Key(a, b) => {
                    s.push_str(&String::from_utf8_lossy(&self.data[a as usize..b as usize]))
                }
                Seg::Index(i) => s.push_str(&i.to_string()),
            }
        }
        s
    }

    /// Bad JSON, inside the claim being read if there is one.
    fn json_err(&self, e: JiterError) -> Error {
        if self.path.is_empty() {
            json_error(e)
        } else {
            Error::invalid(format!(
                "claims are not valid JSON (in claim {:?}): {e}",
                self.claim_name()
            ))
        }
    }

    fn claim_error(&self, what: impl std::fmt::Display) -> Error {
        Error::invalid(format!("claim {:?} {what}", self.claim_name()))
    }

    fn offset(&self, s: &[u8]) -> u32 {
        (s.as_ptr() as usize - self.data.as_ptr() as usize) as u32
    }

    /// The value at the cursor, read through `node`. `capture` is the member name the
    /// pointer's `*` matched, if it did.
    fn visit(&mut self, j: &mut Jiter<'j>, node: &Node, capture: Option<Span>) -> Result<()> {
        let peek = j.peek().map_err(|e| self.json_err(e))?;
        if peek == Peek::Null {
            // An explicit null is an absent claim.
            return j.known_skip(peek).map_err(|e| self.json_err(e));
        }
        if node.children.is_empty() {
            let Some((last, rest)) = node.leaves.split_last() else {
                return j.known_skip(peek).map_err(|e| self.json_err(e));
            };
            for leaf in rest {
                // Several parts read the same value: each reads its own copy of the cursor.
                self.leaf(&mut j.clone(), peek, leaf, capture)?;
            }
            return self.leaf(j, peek, last, capture);
        }
        if peek != Peek::Object && peek != Peek::Array {
            return Err(self.claim_error(format_args!(
                "must be an object or an array (claims are read inside it), found {}",
                type_name(peek)
            )));
        }
        self.branch(j, node, capture)
    }

    /// An object or array whose members `node`'s children may name.
    fn branch(&mut self, j: &mut Jiter<'j>, node: &Node, capture: Option<Span>) -> Result<()> {
        let mut matched: SmallVec<[usize; 4]> = SmallVec::new();
        if j.peek().map_err(|e| self.json_err(e))? == Peek::Array {
            let mut next = j.known_array().map_err(|e| self.json_err(e))?;
            let mut index = 0usize;
            while let Some(peek) = next {
                matched.clear();
                matched.extend(
                    node.indices
                        .iter()
                        .filter(|(i, _)| *i == index)
                        .map(|p| p.1),
                );
                matched.extend(node.any);
                self.path.push(Seg::Index(index as u32));
                self.children(j, peek, node, &matched, capture, None)?;
                self.path.pop();
                index += 1;
                next = j.array_step().map_err(|e| self.json_err(e))?;
            }
            return Ok(());
        }
        let mut key = j.next_object_bytes().map_err(|e| self.json_err(e))?;
        while let Some(raw) = key {
            let start = self.offset(raw);
            let end = start + raw.len() as u32;
            let mut name = Span::Payload(start, end);
            matched.clear();
            let decoded;
            let plain: &[u8] = if raw.contains(&b'\\') {
                name = self.decode_string(start, end)?;
                decoded = self.scratch_bytes(name).to_vec();
                &decoded
            } else {
                &self.data[start as usize..end as usize]
            };
            matched.extend(node.keys.get(plain));
            matched.extend(node.any);
            for (suffix, child) in &node.suffixes {
                if plain.ends_with(suffix) {
                    matched.push(*child);
                }
            }
            let peek = j.peek().map_err(|e| self.json_err(e))?;
            self.path.push(Seg::Key(start, end));
            self.children(j, peek, node, &matched, capture, Some(name))?;
            self.path.pop();
            key = j.next_key_bytes().map_err(|e| self.json_err(e))?;
        }
        Ok(())
    }

    /// Reads the value at the cursor through every matched child (usually one). The
    /// child reached through `*` captures `name`, the member name it matched.
    fn children(
        &mut self,
        j: &mut Jiter<'j>,
        peek: Peek,
        node: &Node,
        matched: &[usize],
        capture: Option<Span>,
        name: Option<Span>,
    ) -> Result<()> {
        let capture_of = |c: usize| if node.any == Some(c) { name } else { capture };
        match matched {
            [] => j.known_skip(peek).map_err(|e| self.json_err(e)),
            [one] => self.visit(j, &node.children[*one], capture_of(*one)),
            [rest @ .., last] => {
                for c in rest {
                    self.visit(&mut j.clone(), &node.children[*c], capture_of(*c))?;
                }
                self.visit(j, &node.children[*last], capture_of(*last))
            }
        }
    }

    fn scratch_bytes(&self, s: Span) -> &[u8] {
        match s {
            Span::Payload(a, b) => &self.data[a as usize..b as usize],
            Span::Scratch(a, b) => &self.scratch[a as usize..b as usize],
        }
    }

    /// Decodes the JSON string whose raw contents are `data[start..end]` (it holds an
    /// escape) into the scratch buffer.
    fn decode_string(&mut self, start: u32, end: u32) -> Result<Span> {
        // The quotes around the contents are part of the payload.
        let quoted = &self.data[start as usize - 1..end as usize + 1];
        let mut sub = Jiter::new(quoted);
        let s = sub
            .next_str()
            .map_err(|e| self.claim_error(format_args!("is not a valid JSON string: {e}")))?;
        let a = self.scratch.len() as u32;
        self.scratch.extend_from_slice(s.as_bytes());
        Ok(Span::Scratch(a, self.scratch.len() as u32))
    }

    /// A string at the cursor (peeked), as a span.
    fn string(&mut self, j: &mut Jiter<'j>) -> Result<Span> {
        let raw = j.known_bytes().map_err(|e| self.json_err(e))?;
        let start = self.offset(raw);
        let end = start + raw.len() as u32;
        if raw.contains(&b'\\') {
            self.decode_string(start, end)
        } else {
            Ok(Span::Payload(start, end))
        }
    }

    /// Appends the Keycloak escape of `s` to the scratch buffer.
    fn escape(&mut self, s: Span) {
        let (a, b) = match s {
            Span::Payload(a, b) | Span::Scratch(a, b) => (a as usize, b as usize),
        };
        for i in a..b {
            let c = match s {
                Span::Payload(..) => self.data[i],
                Span::Scratch(..) => self.scratch[i],
            };
            match escaped(c) {
                Some(e) => self.scratch.extend_from_slice(e),
                None => self.scratch.push(c),
            }
        }
    }

    fn span_len(s: Span) -> usize {
        match s {
            Span::Payload(a, b) | Span::Scratch(a, b) => (b - a) as usize,
        }
    }

    fn leaf(
        &mut self,
        j: &mut Jiter<'j>,
        peek: Peek,
        leaf: &Leaf,
        capture: Option<Span>,
    ) -> Result<()> {
        match leaf.part {
            Part::Roles => self.roles(j, peek, leaf, capture),
            Part::IssuedAt => {
                let iat = self.issued_at(j, peek)?;
                match self.iat {
                    Some((rank, _)) if rank == leaf.rank => {
                        Err(self.claim_error("appears more than once"))
                    }
                    Some((rank, _)) if rank < leaf.rank => Ok(()),
                    _ => {
                        self.iat = Some((leaf.rank, iat));
                        Ok(())
                    }
                }
            }
            part => {
                if peek != Peek::String {
                    return Err(self
                        .claim_error(format_args!("must be a string, found {}", type_name(peek))));
                }
                let value = self.string(j)?;
                if Self::span_len(value) > MAX_KEY_LEN {
                    return Err(self.claim_error(format_args!(
                        "is {} bytes long; the limit is {MAX_KEY_LEN}",
                        Self::span_len(value)
                    )));
                }
                let slot = &mut self.strings[part as usize];
                match *slot {
                    Some((rank, _)) if rank == leaf.rank => {
                        Err(self.claim_error("appears more than once"))
                    }
                    Some((rank, _)) if rank < leaf.rank => Ok(()),
                    _ => {
                        *slot = Some((leaf.rank, value));
                        Ok(())
                    }
                }
            }
        }
    }

    /// `iat`: a JSON number of Unix seconds; a fraction is rounded down (which can only
    /// make the token count as older: fail closed).
    fn issued_at(&mut self, j: &mut Jiter<'j>, peek: Peek) -> Result<i64> {
        if !peek.is_num() {
            return Err(self.claim_error(format_args!(
                "must be a number of Unix seconds, found {}",
                type_name(peek)
            )));
        }
        let out_of_range = |r: &Self| r.claim_error("is out of range for Unix seconds");
        match j.known_number(peek) {
            Ok(NumberAny::Int(NumberInt::Int(i))) => Ok(i),
            Ok(NumberAny::Float(f)) if f.is_finite() && f.abs() < 9.0e18 => Ok(f.floor() as i64),
            Ok(_) => Err(out_of_range(self)),
            Err(e) => Err(self.claim_error(format_args!("is not a valid number: {e}"))),
        }
    }

    /// Entitlement strings: an array of strings, or one string (split on ASCII
    /// whitespace for `scope`/`scp`).
    fn roles(
        &mut self,
        j: &mut Jiter<'j>,
        peek: Peek,
        leaf: &Leaf,
        capture: Option<Span>,
    ) -> Result<()> {
        match peek {
            Peek::String => {
                let s = self.string(j)?;
                if leaf.split {
                    let (a, b) = match s {
                        Span::Payload(a, b) | Span::Scratch(a, b) => (a, b),
                    };
                    let rebuild = |x, y| match s {
                        Span::Payload(..) => Span::Payload(x, y),
                        Span::Scratch(..) => Span::Scratch(x, y),
                    };
                    let mut i = a;
                    while i < b {
                        let all = self.scratch_bytes(rebuild(0, b));
                        while i < b && all[i as usize].is_ascii_whitespace() {
                            i += 1;
                        }
                        let start = i;
                        while i < b && !all[i as usize].is_ascii_whitespace() {
                            i += 1;
                        }
                        if i > start {
                            self.role(rebuild(start, i), leaf.form, capture)?;
                        }
                    }
                    Ok(())
                } else {
                    self.role(s, leaf.form, capture)
                }
            }
            Peek::Array => {
                let mut next = j.known_array().map_err(|e| self.json_err(e))?;
                let mut index = 0u32;
                while let Some(peek) = next {
                    if peek != Peek::String {
                        self.path.push(Seg::Index(index));
                        let e = self.claim_error(format_args!(
                            "must be a string (an entitlement), found {}",
                            type_name(peek)
                        ));
                        return Err(e);
                    }
                    let s = self.string(j)?;
                    self.role(s, leaf.form, capture)?;
                    index += 1;
                    next = j.array_step().map_err(|e| self.json_err(e))?;
                }
                Ok(())
            }
            _ => Err(self.claim_error(format_args!(
                "must be an array of strings or a string, found {}",
                type_name(peek)
            ))),
        }
    }

    /// Adds one entitlement, in the key form of `form`.
    fn role(&mut self, s: Span, form: RoleForm, capture: Option<Span>) -> Result<()> {
        if self.roles.len() == MAX_ROLES {
            return Err(self.claim_error(format_args!(
                "brings the token over {MAX_ROLES} roles, the limit"
            )));
        }
        let key = match form {
            RoleForm::Plain => s,
            RoleForm::KeycloakEscaped => {
                if self.scratch_bytes(s).iter().any(|&c| escaped(c).is_some()) {
                    let a = self.scratch.len() as u32;
                    self.escape(s);
                    Span::Scratch(a, self.scratch.len() as u32)
                } else {
                    s
                }
            }
            RoleForm::KeycloakClient => {
                let a = self.scratch.len() as u32;
                if let Some(client) = capture {
                    self.escape(client);
                }
                self.scratch.push(b':');
                self.escape(s);
                Span::Scratch(a, self.scratch.len() as u32)
            }
        };
        let len = Self::span_len(key);
        if len > MAX_KEY_LEN {
            return Err(self.claim_error(format_args!(
                "holds an entitlement of {len} bytes; the limit is {MAX_KEY_LEN}"
            )));
        }
        if len > 0 {
            self.roles.push(key);
        }
        Ok(())
    }
}
