//! A strict JSON reader that borrows from the request body and decodes only what it is asked
//! for.
//!
//! An AdmissionReview is a few kilobytes of which the webhook needs a few dozen strings. Read
//! through serde derives, a review cost ~15 µs of CPU here, most of it skipping fields nobody
//! reads (and the spec twice), and under load about twice that: the webhook's answers then came
//! at half the rate of a server that parses nothing (bench/README.md, webhook). This reader
//! walks the document once, validates all of it as serde_json would (RFC 8259 grammar, UTF-8,
//! no control characters in strings, nesting at most [`MAX_DEPTH`] deep), and hands the caller
//! members and elements one at a time. Strings are returned as they appear between their
//! quotes and decoded only when asked, so nothing is allocated unless a wanted string holds an
//! escape.
//!
//! A value of the wrong type where the caller expects a particular one is not a syntax error:
//! the reader remembers the first such field, the value is skipped and reading goes on, so the
//! caller can still answer (the webhook admits a pod it cannot read, with a warning).
//! [`JsonReader::take_mismatch`] tells.

use std::borrow::Cow;

use thiserror::Error;

/// Nesting deeper than this is refused (as serde_json's deserializers refuse it), so no body
/// exhausts the stack.
pub const MAX_DEPTH: usize = 128;

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
/// or the end of `bytes`. Eight bytes at a time: a byte is flagged when it equals `"` or `\`
/// (the XOR with it is zero) or is below 0x20, with the usual borrow tricks; a borrow can only
/// flag bytes above a flagged one, so the lowest flag is exact.
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    while let Some(chunk) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let word = u64::from_le_bytes(*chunk);
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        let flagged = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(SPACES) & !word)
            & HIGHS;
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes
        .get(at)
        .is_some_and(|&byte| PLAIN_IN_STRING[usize::from(byte)])
    {
        at += 1;
    }
    at
}

/// Reads one JSON document from the front.
pub struct JsonReader<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
    mismatch: Option<String>,
}

impl<'a> JsonReader<'a> {
    /// A reader of `body`, which must be UTF-8.
    pub fn new(body: &'a [u8]) -> Result<Self, SyntaxError> {
        let text = std::str::from_utf8(body).map_err(|err| SyntaxError {
            expected: "UTF-8 text",
            at: err.valid_up_to(),
        })?;
        Ok(Self::of_text(text))
    }

    pub fn of_text(text: &'a str) -> Self {
        Self {
            text,
            at: 0,
            depth: 0,
            mismatch: None,
        }
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

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn error<T>(&self, expected: &'static str) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            expected,
            at: self.at,
        })
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace.
    fn next_byte(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.at).copied()
    }

    /// The type of the next value, which is not consumed.
    fn peek(&mut self) -> Result<Kind, SyntaxError> {
        match self.next_byte() {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            _ => self.error("a value"),
        }
    }

    /// Reads a string.
    fn string(&mut self) -> Result<JsonStr<'a>, SyntaxError> {
        if self.next_byte() != Some(b'"') {
            return self.error("a string");
        }
        let start = self.at + 1;
        let end = plain_run_end(self.bytes(), start);
        if self.bytes().get(end) != Some(&b'"') {
            return self.escaped_string(start, end);
        }
        self.at = end + 1;
        match self.text.get(start..end) {
            Some(inner) => Ok(JsonStr {
                inner,
                escaped: false,
            }),
            None => self.error("a string"),
        }
    }

    /// The rest of a string that is not plain text up to its closing quote: `start` is its
    /// first byte, `at` the first byte that is not plain. Apart from the common case, so that
    /// reading a plain string stays a few instructions.
    #[inline(never)]
    fn escaped_string(&mut self, start: usize, at: usize) -> Result<JsonStr<'a>, SyntaxError> {
        let bytes = self.bytes();
        self.at = at;
        loop {
            match bytes.get(self.at) {
                Some(b'"') => break,
                Some(b'\\') => self.escape()?,
                Some(_) => return self.error("no control character in a string"),
                None => return self.error("the end of a string"),
            }
            self.at = plain_run_end(bytes, self.at);
        }
        let end = self.at;
        self.at += 1;
        match self.text.get(start..end) {
            Some(inner) => Ok(JsonStr {
                inner,
                escaped: true,
            }),
            None => self.error("a string"),
        }
    }

    /// Steps over the escape at the reader, `\` included.
    fn escape(&mut self) -> Result<(), SyntaxError> {
        let bytes = self.bytes();
        match bytes.get(self.at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 2,
            Some(b'u') => {
                let digits = bytes.get(self.at + 2..self.at + 6);
                if !digits.is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)) {
                    self.at += 2;
                    return self.error("four hex digits");
                }
                self.at += 6;
            }
            _ => {
                self.at += 1;
                return self.error("an escape");
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> Result<(), SyntaxError> {
        let bytes = self.bytes();
        if !bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            return self.error("a digit");
        }
        while bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        let bytes = self.bytes();
        if bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match bytes.get(self.at) {
            Some(b'0') => self.at += 1,
            _ => self.digits()?,
        }
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = bytes.get(self.at) {
                self.at += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self) -> Result<(), SyntaxError> {
        let rest = self.bytes().get(self.at..).unwrap_or_default();
        for word in [&b"true"[..], b"false", b"null"] {
            if rest.starts_with(word) {
                self.at += word.len();
                return Ok(());
            }
        }
        self.error("true, false or null")
    }

    /// Steps over the next value, checking it.
    ///
    /// One loop rather than a call per value: most of a review is skipped, and the calls cost
    /// more than the checks.
    pub fn skip(&mut self) -> Result<(), SyntaxError> {
        let base = self.depth;
        // Bit n is set while the container n levels below `base` is an object.
        let mut objects: u128 = 0;
        loop {
            match self.peek()? {
                kind @ (Kind::Object | Kind::Array) => {
                    let level = self.depth - base;
                    let (open, close, expected) = if kind == Kind::Object {
                        (b'{', b'}', "an object")
                    } else {
                        (b'[', b']', "a list")
                    };
                    // Refuses nesting past MAX_DEPTH, so `level` fits the bits.
                    let empty = self.open(open, close, expected)?;
                    if !empty {
                        if kind == Kind::Object {
                            objects |= 1 << level;
                            self.pass_member_name()?;
                        } else {
                            objects &= !(1 << level);
                        }
                        continue;
                    }
                }
                Kind::String => self.pass_string()?,
                Kind::Number => self.number()?,
                Kind::Bool | Kind::Null => self.literal()?,
            }
            // After a value: close what ends here, then on to the next member or element.
            loop {
                if self.depth == base {
                    return Ok(());
                }
                let in_object = objects >> (self.depth - base - 1) & 1 == 1;
                let closed = if in_object {
                    self.closes(b'}', "',' or '}'")?
                } else {
                    self.closes(b']', "',' or ']'")?
                };
                if !closed {
                    if in_object {
                        self.pass_member_name()?;
                    }
                    break;
                }
            }
        }
    }

    /// Steps over the string at the reader (its opening quote), checking it.
    #[inline]
    fn pass_string(&mut self) -> Result<(), SyntaxError> {
        let start = self.at + 1;
        let end = plain_run_end(self.bytes(), start);
        if self.bytes().get(end) == Some(&b'"') {
            self.at = end + 1;
            Ok(())
        } else {
            self.escaped_string(start, end).map(drop)
        }
    }

    /// Steps over a member's name and the colon after it, checking them.
    fn pass_member_name(&mut self) -> Result<(), SyntaxError> {
        if self.next_byte() != Some(b'"') {
            return self.error("a string");
        }
        self.pass_string()?;
        if self.next_byte() != Some(b':') {
            return self.error("':'");
        }
        self.at += 1;
        Ok(())
    }

    /// A member's name and the colon after it.
    fn member_name(&mut self) -> Result<JsonStr<'a>, SyntaxError> {
        let name = self.string()?;
        if self.next_byte() != Some(b':') {
            return self.error("':'");
        }
        self.at += 1;
        Ok(name)
    }

    /// Steps over the next value and returns its text.
    pub fn raw_value(&mut self) -> Result<&'a str, SyntaxError> {
        self.skip_whitespace();
        let start = self.at;
        self.skip()?;
        match self.text.get(start..self.at) {
            Some(raw) => Ok(raw),
            None => self.error("a value"),
        }
    }

    /// Enters the container opened by `open` and closed by `close`; true when it is empty
    /// (and so already left).
    fn open(&mut self, open: u8, close: u8, expected: &'static str) -> Result<bool, SyntaxError> {
        if self.next_byte() != Some(open) {
            return self.error(expected);
        }
        if self.depth == MAX_DEPTH {
            return self.error("less nesting");
        }
        self.depth += 1;
        self.at += 1;
        if self.next_byte() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// After a member or an element: true at the closing bracket (consumed), false after a comma.
    fn closes(&mut self, bracket: u8, expected: &'static str) -> Result<bool, SyntaxError> {
        match self.next_byte() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(byte) if byte == bracket => {
                self.at += 1;
                self.depth -= 1;
                Ok(true)
            }
            _ => self.error(expected),
        }
    }

    /// Reads an object, calling `member` with each name; `member` must consume the value.
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        if self.open(b'{', b'}', "an object")? {
            return Ok(());
        }
        loop {
            let name = self.member_name()?;
            member(self, name)?;
            if self.closes(b'}', "',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// Reads an array, calling `element` for each item; `element` must consume it.
    fn elements(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        if self.open(b'[', b']', "a list")? {
            return Ok(());
        }
        loop {
            element(self)?;
            if self.closes(b']', "',' or ']'")? {
                return Ok(());
            }
        }
    }

    /// Checks that nothing but whitespace follows the document.
    pub fn end(&mut self) -> Result<(), SyntaxError> {
        match self.next_byte() {
            None => Ok(()),
            Some(_) => self.error("the end of the document"),
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
    fn strings_are_borrowed_unless_escaped() {
        let mut reader = JsonReader::of_text(r#"["plain", "t\u00e9\"x\"", "\ud800"]"#);
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
        );
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
        let mut reader = JsonReader::of_text(r#"{"a": 1, "inner": {"b": true}, "c": 2}"#);
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
        let mut reader = JsonReader::of_text(r#"{"spec": {"a": [1, "]"]} , "b": 2}"#);
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
