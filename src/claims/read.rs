//! Reading a payload through a compiled mapping: one pass of jiter's pull parser over the
//! JSON, guided by the path tree; every claim the tree does not name is skipped without
//! being decoded. Strings are kept as ranges of the payload (no copy) unless they held a
//! JSON escape or need a Keycloak key form; those few are written to a scratch buffer on
//! the stack.

use super::spec::{Compiled, Leaf, Node, Part, RoleForm, STRING_PARTS};
use super::{escaped, MAX_CLAIMS_LEN};
use crate::error::{Error, Result};
use crate::rule::{Token, MAX_KEY_LEN, MAX_ROLES};
use jiter::{Jiter, JiterError, NumberAny, NumberInt, Peek};
use smallvec::SmallVec;

/// Bytes of the payload, or of the scratch buffer.
#[derive(Clone, Copy, Debug)]
enum Span {
    Payload(u32, u32),
    Scratch(u32, u32),
}

impl Span {
    fn len(self) -> usize {
        match self {
            Span::Payload(a, b) | Span::Scratch(a, b) => (b - a) as usize,
        }
    }
}

/// One step of the path to the value being read, for error messages.
#[derive(Clone, Copy)]
enum Seg {
    Key(Span),
    Index(u32),
}

/// Roles kept on the stack before spilling to the heap.
const INLINE_ROLES: usize = 32;

struct Reader<'j> {
    data: &'j [u8],
    path: SmallVec<[Seg; 8]>,
    /// Sources found of each single-valued part (tenant .. token id, `iat`): bit `rank`.
    found: [u64; STRING_PARTS + 1],
    /// Of each single-valued part, the best-ranked source found twice and the name of its
    /// claim: an error if that source wins (decided once the whole payload is read, so
    /// that the order of the members does not matter).
    twice: [Option<(u8, String)>; STRING_PARTS + 1],
    /// tenant, subject, client, session, token id: (rank of the source, value).
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

/// Whether `s` holds the byte `a` or the byte `b`, eight bytes per step: this runs on
/// every entitlement a Keycloak mapping reads (and on its client's name), most of them 4
/// to 30 bytes long, where a byte-by-byte fold cost about 90 instructions each and
/// `memchr2`'s setup more than the search.
#[inline]
fn holds_either(s: &[u8], a: u8, b: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `v` is zero (the borrow of `v - ONES` only
    // reaches bytes above a zero one, and those do not change the answer).
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let (pa, pb) = (ONES * u64::from(a), ONES * u64::from(b));
    let test = |w: &[u8]| {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        has_zero(w ^ pa) | has_zero(w ^ pb)
    };
    if s.len() < 8 {
        return s.iter().any(|&c| (c == a) | (c == b));
    }
    let mut words = s.chunks_exact(8);
    if words.any(test) {
        return true;
    }
    // The last eight bytes (overlapping the words already tested).
    test(&s[s.len() - 8..])
}

/// Whether `s` holds a byte the Keycloak key form escapes.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    if s.len() < 32 {
        holds_either(s, b'%', b':')
    } else {
        memchr::memchr2(b'%', b':', s).is_some()
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
        found: [0; STRING_PARTS + 1],
        twice: Default::default(),
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
    r.object(&mut j, &mapping.root, None)?;
    j.finish().map_err(json_error)?;
    r.no_winner_twice()?;

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
    fn bytes(&self, s: Span) -> &[u8] {
        match s {
            Span::Payload(a, b) => &self.data[a as usize..b as usize],
            Span::Scratch(a, b) => &self.scratch[a as usize..b as usize],
        }
    }

    /// A string jiter returned: a range of the payload when it points into it (no escape
    /// in the JSON), else (jiter decoded it into its tape) a copy in the scratch buffer.
    #[inline]
    fn span_of(&mut self, s: &[u8]) -> Span {
        // Wraps to a huge value when `s` starts before the payload.
        let a = (s.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
        if a <= self.data.len() && s.len() <= self.data.len() - a {
            Span::Payload(a as u32, (a + s.len()) as u32)
        } else {
            let a = self.scratch.len() as u32;
            self.scratch.extend_from_slice(s);
            Span::Scratch(a, self.scratch.len() as u32)
        }
    }

    /// The path to the value being read, as `a/b/0`.
    fn claim_name(&self) -> String {
        let mut s = String::new();
        for (i, seg) in self.path.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            match *seg {
                Seg::Key(k) => s.push_str(&String::from_utf8_lossy(self.bytes(k))),
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
                // Several parts read the same value: each from its own copy of the cursor.
                self.leaf(&mut j.clone(), peek, leaf, capture)?;
            }
            return self.leaf(j, peek, last, capture);
        }
        match peek {
            Peek::Object => self.object(j, node, capture),
            Peek::Array => self.array(j, node, capture),
            _ => Err(self.claim_error(format_args!(
                "must be an object or an array (claims are read inside it), found {}",
                type_name(peek)
            ))),
        }
    }

    /// An object (at the cursor) whose members `node`'s children may name.
    fn object(&mut self, j: &mut Jiter<'j>, node: &Node, capture: Option<Span>) -> Result<()> {
        // Exact names only (every built-in mapping but auth0's root): one table lookup.
        let exact_only = node.any.is_none() && node.suffixes.is_empty();
        let mut key = j.next_object().map_err(|e| self.json_err(e))?;
        while let Some(k) = key {
            let k = k.as_bytes();
            let exact = node.keys.get(k);
            if exact_only {
                match exact {
                    // The common case: a claim the mapping does not read.
                    None => j.next_skip().map_err(|e| self.json_err(e))?,
                    Some(c) => {
                        let name = self.span_of(k);
                        self.path.push(Seg::Key(name));
                        self.visit(j, &node.children[c], capture)?;
                        self.path.pop();
                    }
                }
            } else if exact.is_none() && !node.suffixes.iter().any(|(s, _)| k.ends_with(s)) {
                if let Some(c) = node.any {
                    let name = self.span_of(k);
                    self.path.push(Seg::Key(name));
                    self.children(j, node, &[c], capture, Some(name))?;
                    self.path.pop();
                } else {
                    j.next_skip().map_err(|e| self.json_err(e))?;
                }
            } else {
                let name = self.span_of(k);
                // Pushes, not `extend`: SmallVec's extend of an Option costs a reserve.
                let mut matched: SmallVec<[usize; 4]> = SmallVec::new();
                if let Some(c) = exact {
                    matched.push(c);
                }
                if let Some(c) = node.any {
                    matched.push(c);
                }
                let plain = self.bytes(name);
                for (s, child) in &node.suffixes {
                    if plain.ends_with(s) {
                        matched.push(*child);
                    }
                }
                self.path.push(Seg::Key(name));
                self.children(j, node, &matched, capture, Some(name))?;
                self.path.pop();
            }
            key = j.next_key().map_err(|e| self.json_err(e))?;
        }
        Ok(())
    }

    /// An array (at the cursor) whose elements `node`'s children may name.
    fn array(&mut self, j: &mut Jiter<'j>, node: &Node, capture: Option<Span>) -> Result<()> {
        let mut next = j.known_array().map_err(|e| self.json_err(e))?;
        let mut index = 0usize;
        while let Some(peek) = next {
            let mut matched: SmallVec<[usize; 4]> = SmallVec::new();
            for &(i, c) in &node.indices {
                if i == index {
                    matched.push(c);
                }
            }
            if let Some(c) = node.any {
                matched.push(c);
            }
            if matched.is_empty() {
                j.known_skip(peek).map_err(|e| self.json_err(e))?;
            } else {
                self.path.push(Seg::Index(index as u32));
                self.children(j, node, &matched, capture, None)?;
                self.path.pop();
            }
            index += 1;
            next = j.array_step().map_err(|e| self.json_err(e))?;
        }
        Ok(())
    }

    /// Reads the value at the cursor through every matched child (usually one). The
    /// child reached through `*` captures `name`, the member name it matched.
    fn children(
        &mut self,
        j: &mut Jiter<'j>,
        node: &Node,
        matched: &[usize],
        capture: Option<Span>,
        name: Option<Span>,
    ) -> Result<()> {
        let capture_of = |c: usize| if node.any == Some(c) { name } else { capture };
        let Some((last, rest)) = matched.split_last() else {
            return j.next_skip().map_err(|e| self.json_err(e));
        };
        for c in rest {
            self.visit(&mut j.clone(), &node.children[*c], capture_of(*c))?;
        }
        self.visit(j, &node.children[*last], capture_of(*last))
    }

    /// A string at the cursor (peeked).
    #[inline]
    fn string(&mut self, j: &mut Jiter<'j>) -> Result<Span> {
        match j.known_str() {
            Ok(s) => Ok(self.span_of(s.as_bytes())),
            Err(e) => Err(self.json_err(e)),
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
                self.found_once(leaf);
                if self.iat.is_none_or(|(rank, _)| leaf.rank < rank) {
                    self.iat = Some((leaf.rank, iat));
                }
                Ok(())
            }
            part => {
                if peek != Peek::String {
                    return Err(self
                        .claim_error(format_args!("must be a string, found {}", type_name(peek))));
                }
                let value = self.string(j)?;
                if value.len() > MAX_KEY_LEN {
                    return Err(self.claim_error(format_args!(
                        "is {} bytes long; the limit is {MAX_KEY_LEN}",
                        value.len()
                    )));
                }
                self.found_once(leaf);
                let slot = &mut self.strings[part as usize];
                if slot.is_none_or(|(rank, _)| leaf.rank < rank) {
                    *slot = Some((leaf.rank, value));
                }
                Ok(())
            }
        }
    }

    /// Notes that the source `leaf` of a single-valued part was found, and whether it was
    /// found before (a duplicate member name, or a pointer's `*` matching twice).
    #[inline]
    fn found_once(&mut self, leaf: &Leaf) {
        // Ranks are below MAX_POINTERS_PER_PART (64).
        let bit = 1u64 << (leaf.rank & 63);
        let part = leaf.part as usize;
        if self.found[part] & bit == 0 {
            self.found[part] |= bit;
        } else if self.twice[part]
            .as_ref()
            .is_none_or(|(rank, _)| leaf.rank < *rank)
        {
            self.twice[part] = Some((leaf.rank, self.claim_name()));
        }
    }

    /// A single-valued part whose winning source was found twice is ambiguous (parsers
    /// differ on which duplicate member counts): an error. A source that does not win
    /// may repeat. The winner is the best-ranked source found: the lowest bit of `found`.
    fn no_winner_twice(&self) -> Result<()> {
        for (found, twice) in self.found.iter().zip(&self.twice) {
            let Some((rank, name)) = twice else {
                continue;
            };
            if found.trailing_zeros() == u32::from(*rank & 63) {
                return Err(Error::invalid(format!(
                    "claim {name:?} appears more than once"
                )));
            }
        }
        Ok(())
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
        match j.known_number(peek) {
            Ok(NumberAny::Int(NumberInt::Int(i))) => Ok(i),
            Ok(NumberAny::Float(f)) if f.is_finite() && f.abs() < 9.0e18 => Ok(f.floor() as i64),
            Ok(_) => Err(self.claim_error("is out of range for Unix seconds")),
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
                    self.split(s, leaf.form, capture)
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
                        return Err(self.claim_error(format_args!(
                            "must be a string (an entitlement), found {}",
                            type_name(peek)
                        )));
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

    /// A space-separated list (`scope`, `scp`): one entitlement per word.
    fn split(&mut self, s: Span, form: RoleForm, capture: Option<Span>) -> Result<()> {
        let (a, b, in_payload) = match s {
            Span::Payload(a, b) => (a, b, true),
            Span::Scratch(a, b) => (a, b, false),
        };
        let piece = |x, y| {
            if in_payload {
                Span::Payload(x, y)
            } else {
                Span::Scratch(x, y)
            }
        };
        let mut i = a;
        while i < b {
            let all = self.bytes(piece(0, b));
            while i < b && all[i as usize].is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while i < b && !all[i as usize].is_ascii_whitespace() {
                i += 1;
            }
            if i > start {
                self.role(piece(start, i), form, capture)?;
            }
        }
        Ok(())
    }

    /// Appends the Keycloak key form of `s` to the scratch buffer.
    fn escape(&mut self, s: Span) {
        match s {
            Span::Payload(a, b) => {
                let data = self.data;
                let bytes = &data[a as usize..b as usize];
                if !needs_escape(bytes) {
                    self.scratch.extend_from_slice(bytes);
                    return;
                }
                for &c in bytes {
                    match escaped(c) {
                        Some(e) => self.scratch.extend_from_slice(e),
                        None => self.scratch.push(c),
                    }
                }
            }
            Span::Scratch(a, b) => {
                for i in a as usize..b as usize {
                    let c = self.scratch[i];
                    match escaped(c) {
                        Some(e) => self.scratch.extend_from_slice(e),
                        None => self.scratch.push(c),
                    }
                }
            }
        }
    }

    /// Adds one entitlement, in the key form of `form`.
    #[inline(always)]
    fn role(&mut self, s: Span, form: RoleForm, capture: Option<Span>) -> Result<()> {
        let key = match form {
            RoleForm::Plain => s,
            RoleForm::KeycloakEscaped if !needs_escape(self.bytes(s)) => s,
            RoleForm::KeycloakEscaped => {
                let a = self.scratch.len() as u32;
                self.escape(s);
                Span::Scratch(a, self.scratch.len() as u32)
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
        if key.len() > MAX_KEY_LEN {
            return Err(self.claim_error(format_args!(
                "holds an entitlement of {} bytes; the limit is {MAX_KEY_LEN}",
                key.len()
            )));
        }
        if key.len() > 0 {
            // Counted when kept, so that empty strings (never kept) do not make the answer
            // depend on where they stand.
            if self.roles.len() == MAX_ROLES {
                return Err(self.claim_error(format_args!(
                    "brings the token over {MAX_ROLES} roles, the limit"
                )));
            }
            self.roles.push(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{holds_either, needs_escape};

    #[test]
    fn holds_either_finds_either_byte_at_every_position_of_every_length() {
        for len in 0..40 {
            let plain = vec![b'a'; len];
            assert!(!holds_either(&plain, b'%', b':'), "len {len}");
            assert!(!needs_escape(&plain), "len {len}");
            for at in 0..len {
                for (c, other) in [(b'%', b':'), (b':', b'%')] {
                    let mut s = plain.clone();
                    s[at] = c;
                    assert!(holds_either(&s, b'%', b':'), "{c} at {at} of {len}");
                    assert!(needs_escape(&s), "{c} at {at} of {len}");
                    assert!(holds_either(&s, c, c), "{c} alone at {at} of {len}");
                    assert!(!holds_either(&s, other, other), "{other} at {at} of {len}");
                }
                // Bytes one above or below, and with the high bit set, are not matches.
                let mut s = plain.clone();
                s[at] = b'%' + 1;
                s[len - 1 - at] = b'%' | 0x80;
                assert!(
                    !holds_either(&s, b'%', b'%'),
                    "near misses at {at} of {len}"
                );
                s[at] = 0;
                assert!(!holds_either(&s, b'\\', b'\\'), "zero at {at} of {len}");
            }
        }
    }
}
