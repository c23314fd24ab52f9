//! A strict JSON reader that borrows from the request body and decodes only what it is asked
//! for.
//!
//! An AdmissionReview is a few kilobytes of which the webhook needs a few dozen strings. Read
//! through serde derives, a review cost ~15 µs of CPU here, most of it skipping fields nobody
//! reads (and the spec twice), and under load about twice that: the webhook's answers then came
//! at half the rate of a server that parses nothing (bench/README.md, webhook).
//!
//! This reader checks the whole document when it is made, in one tight loop over its bytes, as
//! serde_json would (RFC 8259 grammar, UTF-8, no control characters in strings, nesting at most
//! [`MAX_DEPTH`] deep), and lists its values as tokens: a value's kind, where its text starts
//! and ends, and which token follows it and everything inside it. Reading then walks the
//! tokens: stepping over a value nobody reads (most of a review) is one index, and reading one
//! needs no grammar checks. The walk through the text it replaces, checking each token as it
//! read it, cost the opted-in review ~39k instructions where indexing and reading now cost
//! ~32k; most of either is the work around each token, not the bytes. Strings are returned as
//! they appear between their quotes and decoded only when asked, so nothing is allocated but
//! the token list unless a wanted string holds an escape.
//!
//! A value of the wrong type where the caller expects a particular one is not a syntax error:
//! the reader remembers the first such field, the value is skipped and reading goes on, so the
//! caller can still answer (the webhook admits a pod it cannot read, with a warning).
//! [`JsonReader::take_mismatch`] tells.

use std::borrow::Cow;

use thiserror::Error;

/// Nesting deeper than this is refused, so that no body exhausts the stack of whoever reads it
/// next (serde_json's typed deserializers stop one level earlier).
pub const MAX_DEPTH: usize = 128;

/// A document with more values than this (member names count) is refused, so that its token
/// list, 16 bytes a value, stays within 16 MiB whatever the body. The largest pod the API
/// server stores (1.5 MiB) has a few hundred thousand at most.
pub const MAX_VALUES: usize = 1 << 20;

/// The document is not JSON: what was expected, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("expected {expected} at byte {at}")]
pub struct SyntaxError {
    pub expected: &'static str,
    pub at: usize,
}

/// The type of the next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    fn article(self) -> &'static str {
        match self {
            Self::Object => "an object",
            Self::Array => "a list",
            Self::String => "a string",
            Self::Number => "a number",
            Self::Bool => "a boolean",
            Self::Null => "null",
        }
    }
}

/// A JSON string as written in the document, between its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    /// The text between the quotes, escapes as written.
    inner: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The string's value: borrowed unless it holds escapes. `None` for escapes that name no
    /// character (a lone UTF-16 surrogate), which serde_json also refuses to decode.
    pub fn decode(self) -> Option<Cow<'a, str>> {
        if self.escaped {
            let mut quoted = String::with_capacity(self.inner.len() + 2);
            quoted.push('"');
            quoted.push_str(self.inner);
            quoted.push('"');
            serde_json::from_str::<String>(&quoted).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(self.inner))
        }
    }

    /// Whether the string's value is `text`.
    pub fn is(self, text: &str) -> bool {
        if self.escaped {
            self.decode().is_some_and(|value| value == text)
        } else {
            self.inner == text
        }
    }

    /// Whether the string's value starts with `prefix`.
    pub fn starts_with(self, prefix: &str) -> bool {
        if self.escaped {
            self.decode().is_some_and(|value| value.starts_with(prefix))
        } else {
            self.inner.starts_with(prefix)
        }
    }
}

/// Bytes that may continue a string as they are: not `"`, not `\`, not a control character.
const PLAIN_IN_STRING: [bool; 256] = {
    let mut table = [true; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = false;
        byte += 1;
    }
    table[b'"' as usize] = false;
    table[b'\\' as usize] = false;
    table
};

/// Where the run of string bytes starting at `at` ends: the first `"`, `\`, control character,
/// or the end of `bytes`. Most of a review is string text, so this is the indexer's inner loop:
/// sixteen bytes at a time with SSE2 (every x86-64 has it), eight with plain integers elsewhere.
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    let mut rest = bytes.get(at..).unwrap_or_default();
    while let Some((chunk, after)) = rest.split_first_chunk::<STEP>() {
        let flagged = not_plain_here(chunk);
        if flagged != 0 {
            return at + flagged.trailing_zeros() as usize / BITS_PER_BYTE;
        }
        rest = after;
        at += STEP;
    }
    at + rest
        .iter()
        .position(|&byte| !PLAIN_IN_STRING[usize::from(byte)])
        .unwrap_or(rest.len())
}

/// Whether `text` can be written between quotes as it is: it holds no `"`, `\` or control
/// character, the only characters JSON must escape.
pub fn needs_no_escape(text: &str) -> bool {
    plain_run_end(text.as_bytes(), 0) == text.len()
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const STEP: usize = 16;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const BITS_PER_BYTE: usize = 1;

/// [`not_plain`], which needs SSE2, on a processor known to have it.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn not_plain_here(chunk: &[u8; STEP]) -> u32 {
    // SAFETY: the only requirement of a `target_feature` function is that the processor has
    // the feature, and this is compiled only where SSE2 is enabled (every x86-64 has it).
    unsafe { not_plain(chunk) }
}

/// One bit per byte of `chunk` that may not continue a string as it is (bit n: byte n).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn not_plain(chunk: &[u8; STEP]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };
    let word = u128::from_le_bytes(*chunk);
    // The halves of `word`, as the register's two lanes; the casts keep every bit.
    let bytes = _mm_set_epi64x((word >> 64) as i64, word as i64);
    let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
    // A byte is a control character when raising it to 0x1f leaves it 0x1f.
    let controls = _mm_set1_epi8(0x1f);
    let control = _mm_cmpeq_epi8(_mm_max_epu8(bytes, controls), controls);
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const STEP: usize = 8;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const BITS_PER_BYTE: usize = 8;

/// One flag per byte of `chunk` that may not continue a string as it is (bit 8n + 7: byte n).
/// A byte is flagged when it equals `"` or `\` (the XOR with it is zero) or is below 0x20,
/// with the usual borrow tricks; a borrow can only flag bytes above a flagged one, so the
/// lowest flag is exact.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn not_plain_here(chunk: &[u8; STEP]) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    let word = u64::from_le_bytes(*chunk);
    let quote = word ^ QUOTES;
    let backslash = word ^ BACKSLASHES;
    (quote.wrapping_sub(ONES) & !quote
        | backslash.wrapping_sub(ONES) & !backslash
        | word.wrapping_sub(SPACES) & !word)
        & HIGHS
}

/// One value of the document, or a member's name.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    /// A string that holds an escape.
    escaped: bool,
    /// Where the value's text starts and ends, quotes and brackets included.
    start: u32,
    end: u32,
    /// The index of the token after this value and everything inside it.
    after: u32,
}

/// What the grammar allows next while indexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    /// Just after `[`.
    ValueOrClose,
    /// After a `,` in an object.
    Name,
    /// Just after `{`.
    NameOrClose,
    Colon,
    CommaOrClose,
    End,
}

impl Expect {
    fn describe(self, in_object: bool) -> &'static str {
        match self {
            Self::Value => "a value",
            Self::ValueOrClose => "a value or ']'",
            Self::Name => "a string",
            Self::NameOrClose => "a string or '}'",
            Self::Colon => "':'",
            Self::CommaOrClose if in_object => "',' or '}'",
            Self::CommaOrClose => "',' or ']'",
            Self::End => "the end of the document",
        }
    }

    fn is_value(self) -> bool {
        matches!(self, Self::Value | Self::ValueOrClose)
    }
}

fn syntax<T>(expected: &'static str, at: usize) -> Result<T, SyntaxError> {
    Err(SyntaxError { expected, at })
}

/// Checks `text` as one JSON document and lists its values (and member names) in the order
/// they appear.
fn index(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let bytes = text.as_bytes();
    if u32::try_from(bytes.len()).is_err() {
        return syntax("a document under 4 GiB", 0);
    }
    // Every offset below is at most `bytes.len()`, so it fits a u32; so does every token index.
    let offset = |at: usize| at as u32;
    // A review holds a token every five or six bytes; a body of a few long strings, far fewer.
    let mut tokens: Vec<Token> = Vec::with_capacity((bytes.len() / 4 + 1).min(FIRST_TOKENS));
    // The open containers' tokens, innermost last; `in_object` tells whether the innermost is
    // an object.
    let mut open = [0u32; MAX_DEPTH];
    let mut depth = 0;
    let mut in_object = false;
    // What may follow a value that ends at `at`: a comma that is right there (compact JSON, as
    // the API server sends it) is taken at once.
    let after_value = |at: &mut usize, depth: usize, in_object: bool| {
        if depth == 0 {
            Expect::End
        } else if bytes.get(*at) == Some(&b',') {
            *at += 1;
            if in_object {
                Expect::Name
            } else {
                Expect::Value
            }
        } else {
            Expect::CommaOrClose
        }
    };
    let mut expect = Expect::Value;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let start = at;
        let kind = match byte {
            b' ' | b'\n' | b'\r' | b'\t' => {
                at += 1;
                continue;
            }
            b'"' => {
                let is_name = matches!(expect, Expect::Name | Expect::NameOrClose);
                if !is_name && !expect.is_value() {
                    return syntax(expect.describe(in_object), at);
                }
                let (end, escaped) = string_end(bytes, at)?;
                at = end;
                push(&mut tokens, Kind::String, escaped, start, end)?;
                expect = if !is_name {
                    after_value(&mut at, depth, in_object)
                } else if bytes.get(at) == Some(&b':') {
                    // Compact JSON, as the API server sends it, has the colon right there.
                    at += 1;
                    Expect::Value
                } else {
                    Expect::Colon
                };
                continue;
            }
            b':' => {
                if expect != Expect::Colon {
                    return syntax(expect.describe(in_object), at);
                }
                at += 1;
                expect = Expect::Value;
                continue;
            }
            b',' => {
                if expect != Expect::CommaOrClose {
                    return syntax(expect.describe(in_object), at);
                }
                at += 1;
                expect = if in_object {
                    Expect::Name
                } else {
                    Expect::Value
                };
                continue;
            }
            b'}' | b']' => {
                let closes_object = byte == b'}';
                let allowed = match expect {
                    Expect::CommaOrClose => in_object == closes_object,
                    Expect::NameOrClose => closes_object,
                    Expect::ValueOrClose => !closes_object,
                    _ => false,
                };
                if !allowed {
                    return syntax(expect.describe(in_object), at);
                }
                depth -= 1;
                let after = offset(tokens.len());
                if let Some(container) = tokens.get_mut(open[depth] as usize) {
                    container.end = offset(at + 1);
                    container.after = after;
                }
                in_object = depth > 0
                    && tokens
                        .get(open[depth - 1] as usize)
                        .is_some_and(|outer| outer.kind == Kind::Object);
                at += 1;
                expect = after_value(&mut at, depth, in_object);
                continue;
            }
            b'{' | b'[' => {
                if !expect.is_value() {
                    return syntax(expect.describe(in_object), at);
                }
                if depth == MAX_DEPTH {
                    return syntax("less nesting", at);
                }
                open[depth] = offset(tokens.len());
                let is_object = byte == b'{';
                in_object = is_object;
                depth += 1;
                at += 1;
                expect = if is_object {
                    Expect::NameOrClose
                } else {
                    Expect::ValueOrClose
                };
                // Its end and the token after it are set when it closes.
                let kind = if is_object { Kind::Object } else { Kind::Array };
                push(&mut tokens, kind, false, start, start)?;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                if !expect.is_value() {
                    return syntax(expect.describe(in_object), at);
                }
                at = number_end(bytes, at)?;
                Kind::Number
            }
            b't' | b'f' | b'n' => {
                if !expect.is_value() {
                    return syntax(expect.describe(in_object), at);
                }
                let (word, kind): (&[u8], _) = match byte {
                    b't' => (b"true", Kind::Bool),
                    b'f' => (b"false", Kind::Bool),
                    _ => (b"null", Kind::Null),
                };
                if !bytes[at..].starts_with(word) {
                    return syntax("true, false or null", at);
                }
                at += word.len();
                kind
            }
            _ => {
                let expected = if expect.is_value() {
                    "a value"
                } else {
                    expect.describe(in_object)
                };
                return syntax(expected, at);
            }
        };
        push(&mut tokens, kind, false, start, at)?;
        expect = after_value(&mut at, depth, in_object);
    }
    if expect != Expect::End {
        return syntax(expect.describe(in_object), bytes.len());
    }
    Ok(tokens)
}

/// Tokens reserved at most before the document shows how many it needs (1 MiB).
const FIRST_TOKENS: usize = 1 << 16;

/// Appends a token for the value at `start..end`, unless the document has too many values.
/// The token after a value is the next one, unless the value is a container, whose token is
/// given the right one when it closes.
#[inline(always)]
fn push(
    tokens: &mut Vec<Token>,
    kind: Kind,
    escaped: bool,
    start: usize,
    end: usize,
) -> Result<(), SyntaxError> {
    if tokens.len() == tokens.capacity() {
        grow(tokens, start)?;
    }
    // `index` refuses documents whose offsets would not fit a u32, and `grow` lists whose
    // indexes would not.
    tokens.push(Token {
        kind,
        escaped,
        start: start as u32,
        end: end as u32,
        after: (tokens.len() + 1) as u32,
    });
    Ok(())
}

/// Makes room for more tokens, up to [`MAX_VALUES`]: the limit is checked only when the list
/// is full, not for every value.
#[cold]
fn grow(tokens: &mut Vec<Token>, at: usize) -> Result<(), SyntaxError> {
    let room = tokens
        .len()
        .max(16)
        .min(MAX_VALUES.saturating_sub(tokens.len()));
    if room == 0 {
        return syntax("at most 1,048,576 values", at);
    }
    tokens.reserve_exact(room);
    Ok(())
}

/// The end (past the closing quote) of the string whose opening quote is at `quote`, and
/// whether it holds an escape.
#[inline]
fn string_end(bytes: &[u8], quote: usize) -> Result<(usize, bool), SyntaxError> {
    let end = plain_run_end(bytes, quote + 1);
    if bytes.get(end) == Some(&b'"') {
        Ok((end + 1, false))
    } else {
        escaped_string_end(bytes, end).map(|end| (end, true))
    }
}

/// The rest of a string that is not plain text up to its closing quote, from `at`, its first
/// byte that is not plain. Apart from the common case, so that indexing a plain string stays
/// a few instructions.
#[inline(never)]
fn escaped_string_end(bytes: &[u8], mut at: usize) -> Result<usize, SyntaxError> {
    loop {
        match bytes.get(at) {
            Some(b'"') => return Ok(at + 1),
            Some(b'\\') => at = escape_end(bytes, at)?,
            Some(_) => return syntax("no control character in a string", at),
            None => return syntax("the end of a string", at),
        }
        at = plain_run_end(bytes, at);
    }
}

/// The end of the escape whose `\` is at `at`.
fn escape_end(bytes: &[u8], at: usize) -> Result<usize, SyntaxError> {
    match bytes.get(at + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => {
            let digits = bytes.get(at + 2..at + 6);
            if digits.is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)) {
                Ok(at + 6)
            } else {
                syntax("four hex digits", at + 2)
            }
        }
        _ => syntax("an escape", at + 1),
    }
}

/// The end of the run of digits at `at`, which must hold one at least.
fn digits_end(bytes: &[u8], mut at: usize) -> Result<usize, SyntaxError> {
    if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
        return syntax("a digit", at);
    }
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    Ok(at)
}

/// The end of the number at `at`.
fn number_end(bytes: &[u8], mut at: usize) -> Result<usize, SyntaxError> {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match bytes.get(at) {
        Some(b'0') => at + 1,
        _ => digits_end(bytes, at)?,
    };
    if bytes.get(at) == Some(&b'.') {
        at = digits_end(bytes, at + 1)?;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        at = digits_end(bytes, at)?;
    }
    Ok(at)
}

/// Reads one JSON document, checked and indexed when the reader is made.
pub struct JsonReader<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    /// The token to read next.
    next: usize,
    mismatch: Option<String>,
}

impl<'a> JsonReader<'a> {
    /// A reader of `body`, which must be UTF-8 and one JSON document.
    pub fn new(body: &'a [u8]) -> Result<Self, SyntaxError> {
        let text = std::str::from_utf8(body).map_err(|err| SyntaxError {
            expected: "UTF-8 text",
            at: err.valid_up_to(),
        })?;
        Self::of_text(text)
    }

    /// A reader of `text`, which must be one JSON document.
    pub fn of_text(text: &'a str) -> Result<Self, SyntaxError> {
        Ok(Self {
            text,
            tokens: index(text)?,
            next: 0,
            mismatch: None,
        })
    }

    /// Remembers a value that is valid JSON but not what its reader expected, unless an earlier
    /// one is remembered already.
    pub fn note_mismatch(&mut self, describe: impl FnOnce() -> String) {
        if self.mismatch.is_none() {
            self.mismatch = Some(describe());
        }
    }

    /// The first mismatch noted since the last call (`"<field> is a number, not a string"`).
    pub fn take_mismatch(&mut self) -> Option<String> {
        self.mismatch.take()
    }

    /// Reads with `read`, keeping what it finds of the wrong type apart: returns the value and
    /// the first mismatch inside it, and leaves any mismatch noted before as it was.
    pub fn read_apart<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<(T, Option<String>), SyntaxError> {
        let earlier = self.mismatch.take();
        let value = read(self)?;
        let inside = std::mem::replace(&mut self.mismatch, earlier);
        Ok((value, inside))
    }

    /// The next token; past the last one, the error a reader asking for a value gets.
    fn token(&self) -> Result<Token, SyntaxError> {
        match self.tokens.get(self.next) {
            Some(&token) => Ok(token),
            None => syntax("a value", self.text.len()),
        }
    }

    /// The type of the next value, which is not consumed.
    fn peek(&self) -> Result<Kind, SyntaxError> {
        self.token().map(|token| token.kind)
    }

    /// Reads a string.
    fn string(&mut self) -> Result<JsonStr<'a>, SyntaxError> {
        let token = self.token()?;
        let (start, end) = (token.start as usize, token.end as usize);
        let inner = match token.kind {
            Kind::String => self.text.get(start + 1..end.saturating_sub(1)),
            _ => None,
        };
        let Some(inner) = inner else {
            return syntax("a string", start);
        };
        self.next += 1;
        Ok(JsonStr {
            inner,
            escaped: token.escaped,
        })
    }

    /// Steps over the next value.
    pub fn skip(&mut self) -> Result<(), SyntaxError> {
        self.next = self.token()?.after as usize;
        Ok(())
    }

    /// Steps over the next value and returns its text.
    pub fn raw_value(&mut self) -> Result<&'a str, SyntaxError> {
        let token = self.token()?;
        let (start, end) = (token.start as usize, token.end as usize);
        let Some(raw) = self.text.get(start..end) else {
            return syntax("a value", start);
        };
        self.next = token.after as usize;
        Ok(raw)
    }

    /// Enters the container of `kind` at the reader; returns the index of the token after it.
    fn enter(&mut self, kind: Kind) -> Result<usize, SyntaxError> {
        let token = self.token()?;
        if token.kind != kind {
            return syntax(kind.article(), token.start as usize);
        }
        self.next += 1;
        Ok(token.after as usize)
    }

    /// Reads an object, calling `member` with each name. Whatever of the value `member` leaves
    /// unread is stepped over.
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        let after = self.enter(Kind::Object)?;
        while self.next < after {
            let name = self.string()?;
            let value_after = self.token()?.after as usize;
            member(self, name)?;
            self.next = value_after;
        }
        Ok(())
    }

    /// Reads an array, calling `element` for each item. Whatever of the item `element` leaves
    /// unread is stepped over.
    fn elements(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        let after = self.enter(Kind::Array)?;
        while self.next < after {
            let item_after = self.token()?.after as usize;
            element(self)?;
            self.next = item_after;
        }
        Ok(())
    }

    /// Checks that the document has been read to its end.
    pub fn end(&mut self) -> Result<(), SyntaxError> {
        match self.tokens.get(self.next) {
            None => Ok(()),
            Some(token) => syntax("the end of the document", token.start as usize),
        }
    }

    /// Skips a value of another kind than `expected` (noting it as a mismatch) or null; true
    /// when the next value is of the `expected` kind, and still to be read.
    fn is_next(&mut self, expected: Kind, field: &str) -> Result<bool, SyntaxError> {
        let found = self.peek()?;
        if found == expected {
            return Ok(true);
        }
        if found != Kind::Null {
            self.note_mismatch(|| {
                format!("{field} is {}, not {}", found.article(), expected.article())
            });
        }
        self.skip()?;
        Ok(false)
    }

    /// A string, or `None` for null and (noted as a mismatch) for any other type.
    pub fn optional_string(&mut self, field: &str) -> Result<Option<JsonStr<'a>>, SyntaxError> {
        if self.is_next(Kind::String, field)? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Like [`optional_string`](Self::optional_string), decoded; an undecodable escape is noted.
    pub fn optional_text(&mut self, field: &str) -> Result<Option<Cow<'a, str>>, SyntaxError> {
        let Some(text) = self.optional_string(field)? else {
            return Ok(None);
        };
        let decoded = text.decode();
        if decoded.is_none() {
            self.note_mismatch(|| format!("{field} holds an escape that names no character"));
        }
        Ok(decoded)
    }

    /// An object read with `member` (true), or false for null and (noted) any other type.
    pub fn optional_object(
        &mut self,
        field: &str,
        member: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), SyntaxError>,
    ) -> Result<bool, SyntaxError> {
        if self.is_next(Kind::Object, field)? {
            self.members(member)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// A list read with `element` (true), or false for null and (noted) any other type.
    pub fn optional_list(
        &mut self,
        field: &str,
        element: impl FnMut(&mut Self) -> Result<(), SyntaxError>,
    ) -> Result<bool, SyntaxError> {
        if self.is_next(Kind::Array, field)? {
            self.elements(element)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;

    use super::*;

    fn valid(text: &[u8]) -> Result<(), SyntaxError> {
        let mut reader = JsonReader::new(text)?;
        reader.skip()?;
        reader.end()
    }

    /// What serde_json accepts: its grammar, plus UTF-8 everywhere (it does not check the
    /// strings it skips).
    fn serde_accepts(text: &[u8]) -> bool {
        std::str::from_utf8(text).is_ok() && serde_json::from_slice::<IgnoredAny>(text).is_ok()
    }

    #[test]
    fn documents_serde_json_reads_are_read() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#" {"a" : [1, -2.5e+3, 0, 0.0, 1E9, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]} "#,
            r#""""#,
            r#"-0"#,
            r#"{"nested":{"deeper":[[],{}]}}"#,
            "\"caf\u{e9} \u{1F980}\"",
        ] {
            assert_eq!(valid(text.as_bytes()), Ok(()), "{text}");
            assert!(serde_accepts(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn what_is_not_json_is_refused_with_its_place() {
        for (text, at) in [
            (&b"{"[..], 1),
            (b"{\"a\" 1}", 5),
            (b"[1,]", 3),
            (b"{\"a\":1,}", 7),
            (b"01", 1),
            (b"1.", 2),
            (b"-", 1),
            (b"1e", 2),
            (b"tru", 0),
            (b"\"a\nb\"", 2),
            (b"\"\\x\"", 2),
            (b"\"\\u12g4\"", 3),
            (b"\"open", 5),
            (b"[1] [2]", 4),
            (b"\xff", 0),
            (b"", 0),
        ] {
            let err = valid(text).unwrap_err();
            assert_eq!(err.at, at, "{:?}: {err}", String::from_utf8_lossy(text));
            assert!(!serde_accepts(text), "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        // Objects and lists in turn, each holding the next after a sibling value.
        let mixed = |levels: usize| {
            let mut text = String::new();
            for level in 0..levels {
                text += if level % 2 == 0 {
                    r#"{"k": 1, "v": "#
                } else {
                    "[true, "
                };
            }
            text += "null";
            for level in (0..levels).rev() {
                text += if level % 2 == 0 { "}" } else { "]" };
            }
            text
        };
        assert_eq!(valid(mixed(MAX_DEPTH).as_bytes()), Ok(()));
        assert!(serde_accepts(mixed(MAX_DEPTH).as_bytes()));
        assert_eq!(
            valid(mixed(MAX_DEPTH + 1).as_bytes()).unwrap_err().expected,
            "less nesting"
        );
        let deep = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
        assert_eq!(valid(deep(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(
            valid(deep(MAX_DEPTH + 1).as_bytes()).unwrap_err().at,
            MAX_DEPTH
        );
        assert!(valid(deep(100_000).as_bytes()).is_err());
    }

    #[test]
    fn values_are_bounded() {
        let list = |values: usize| format!("[{}0]", "0,".repeat(values - 1));
        // The list itself is a value too.
        assert_eq!(valid(list(MAX_VALUES - 1).as_bytes()), Ok(()));
        let err = valid(list(MAX_VALUES).as_bytes()).unwrap_err();
        assert_eq!(
            (err.expected, err.at),
            ("at most 1,048,576 values", 2 * MAX_VALUES - 1)
        );
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut reader = JsonReader::of_text(r#"["plain", "t\u00e9\"x\"", "\ud800"]"#).unwrap();
        let mut found = Vec::new();
        reader
            .elements(|reader| {
                found.push(reader.string()?);
                Ok(())
            })
            .unwrap();
        assert!(matches!(found[0].decode(), Some(Cow::Borrowed("plain"))));
        assert!(found[0].is("plain") && !found[0].is("plai") && !found[0].is("plainer"));
        assert!(found[0].starts_with("plain") && !found[0].starts_with("plains"));
        assert_eq!(found[1].decode().unwrap(), "té\"x\"");
        assert!(found[1].is("té\"x\"") && found[1].starts_with("té"));
        assert_eq!(found[2].decode(), None);
        assert!(!found[2].is("\u{fffd}"));
    }

    #[test]
    fn values_of_another_type_are_skipped_and_the_first_is_named() {
        let mut reader = JsonReader::of_text(
            r#"{"name": 7, "list": {"x": [1]}, "text": null, "bad": "\udc00", "ok": "yes"}"#,
        )
        .unwrap();
        let mut ok = None;
        reader
            .members(|reader, name| {
                if name.is("name") || name.is("text") || name.is("bad") || name.is("ok") {
                    let value = reader.optional_text("field")?;
                    if name.is("ok") {
                        ok = value;
                    }
                } else {
                    reader.optional_list("spec.list", JsonReader::skip)?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(ok.as_deref(), Some("yes"));
        assert_eq!(
            reader.take_mismatch().as_deref(),
            Some("field is a number, not a string")
        );
        assert_eq!(reader.take_mismatch(), None);
        reader.end().unwrap();
    }

    #[test]
    fn mismatches_read_apart_stay_apart() {
        let mut reader = JsonReader::of_text(r#"{"a": 1, "inner": {"b": true}, "c": 2}"#).unwrap();
        let mut inside = None;
        reader
            .members(|reader, name| {
                if name.is("inner") {
                    let (read, mismatch) = reader.read_apart(|reader| {
                        reader.optional_object("inner", |reader, _| {
                            reader.optional_string("inner.b").map(drop)
                        })
                    })?;
                    assert!(read);
                    inside = mismatch;
                } else {
                    reader.optional_string(if name.is("a") { "a" } else { "c" })?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(
            inside.as_deref(),
            Some("inner.b is a boolean, not a string")
        );
        assert_eq!(
            reader.take_mismatch().as_deref(),
            Some("a is a number, not a string")
        );
    }

    #[test]
    fn raw_values_are_the_text_between_their_bounds() {
        let mut reader = JsonReader::of_text(r#"{"spec": {"a": [1, "]"]} , "b": 2}"#).unwrap();
        let mut raw = None;
        reader
            .members(|reader, name| {
                if name.is("spec") {
                    raw = Some(reader.raw_value()?);
                    Ok(())
                } else {
                    reader.skip()
                }
            })
            .unwrap();
        assert_eq!(raw, Some(r#"{"a": [1, "]"]}"#));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4000))]

        /// Accepts exactly what serde_json accepts, whatever the bytes.
        #[test]
        fn agrees_with_serde_json_on_arbitrary_bytes(body in proptest::collection::vec(proptest::sample::select(b" \t\n{}[]:,\"\\/-+.0123456789eEtrufalsn\x01\xc3\xa9xu".to_vec()), 0..48)) {
            proptest::prop_assert_eq!(valid(&body).is_ok(), serde_accepts(&body));
        }

        /// Strings long enough to fill the wide scan, of the bytes at its edges, are read as
        /// serde_json reads them.
        #[test]
        fn agrees_with_serde_json_on_strings(inner in proptest::collection::vec(proptest::sample::select(b"\x00\x01\x1f \x21\"\\/u0aAf\x7f\x80\xbf\xc3\xa9\xe2\x80\xa8\xff".to_vec()), 0..80)) {
            let body = [&b"[\""[..], &inner, b"\"]"].concat();
            proptest::prop_assert_eq!(valid(&body).is_ok(), serde_accepts(&body));
        }

        /// Accepts exactly what serde_json accepts when a real document is damaged.
        #[test]
        fn agrees_with_serde_json_on_damaged_documents(flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 0..4)) {
            let mut body = include_bytes!("../../tests/fixtures/deployment-pod.json").to_vec();
            for (at, byte) in flips {
                let at = at % body.len();
                body[at] = byte;
            }
            proptest::prop_assert_eq!(valid(&body).is_ok(), serde_accepts(&body));
        }
    }
}
