//! The notification message template (`messageTemplate`).
//!
//! Text with `{variable}` placeholders. The variables are those the system this replaces
//! offered, plus a few more, and, as there, each `messageLabels` key (`{cluster}`), filled with
//! its value; an unknown variable is a configuration error, found when the config is loaded
//! rather than when the first crash is announced. Braces that do not enclose a variable name
//! (`{"json": 1}`) are kept as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

use crate::record::DumpRecord;

/// Every variable a template may use.
pub const VARIABLES: &[&str] = &[
    "pod.namespace",
    "pod.name",
    "pod.uid",
    "pod.node",
    "host.ip",
    "corefile.path",
    "corefile.filename",
    "corefile.url",
    "corefile.size",
    "container.name",
    "process.exe",
    "process.pid",
    "signal.name",
    "image",
    "node.name",
];

/// Used when the config sets no `messageTemplate`.
pub const DEFAULT_TEMPLATE: &str = "\
Core dump: {process.exe} crashed with {signal.name}
Pod: {pod.namespace}/{pod.name}
Container: {container.name}
Node: {node.name}
File: {corefile.filename} ({corefile.size})
Download: {corefile.url}";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("messageTemplate uses unknown variable {{{0}}}; known variables: {known}, and the keys of messageLabels", known = VARIABLES.join(", "))]
pub struct UnknownVariable(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(&'static str),
}

/// A parsed, checked template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageTemplate {
    pieces: Vec<Piece>,
    /// The `messageLabels` keys it names, filled in already.
    labels_used: std::collections::BTreeSet<String>,
}

fn looks_like_variable(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        && name.bytes().any(|b| b.is_ascii_alphabetic())
}

impl MessageTemplate {
    /// The template used when the config sets none.
    pub fn standard() -> Self {
        Self::parse(DEFAULT_TEMPLATE, &BTreeMap::new()).unwrap_or_default()
    }

    /// Parses `text`; `labels` (`messageLabels`) are variables too, filled in here.
    pub fn parse(text: &str, labels: &BTreeMap<String, String>) -> Result<Self, UnknownVariable> {
        let mut labels_used = std::collections::BTreeSet::new();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name = after.find('}').map(|close| &after[..close]);
            match name {
                Some(name)
                    if !name.is_empty()
                        && labels.contains_key(name)
                        && !VARIABLES.contains(&name) =>
                {
                    literal.push_str(&rest[..open]);
                    literal.push_str(&labels[name]);
                    labels_used.insert(name.to_owned());
                    rest = &after[name.len() + 1..];
                }
                Some(name) if looks_like_variable(name) => {
                    let known = VARIABLES
                        .iter()
                        .find(|known| **known == name)
                        .ok_or_else(|| UnknownVariable(name.to_owned()))?;
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Variable(known));
                    rest = &after[name.len() + 1..];
                }
                _ => {
                    literal.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self {
            pieces,
            labels_used,
        })
    }

    /// Whether the template names the label `key` itself (so it is not added again as a line).
    pub fn uses_label(&self, key: &str) -> bool {
        self.labels_used.contains(key)
    }

    /// Fills the template for one dump; `url` is where people download it. The values are
    /// made [`inert`]: the executable's path and the core's file name are the tenant's to
    /// choose, and must not write a line or a link of the message.
    pub fn render(&self, record: &DumpRecord, url: &str) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                // The link is the store's: an IPv6 endpoint's brackets are part of it.
                Piece::Variable("corefile.url") => out.push_str(&on_one_line(url)),
                Piece::Variable(name) => out.push_str(&inert(&value(name, record, url))),
            }
        }
        out
    }
}

/// A value the tenant chose (an executable's path, a core's file name), made fit to put into a
/// chat message: control characters (newlines among them) become `?`, so that it cannot write
/// a line of its own (`Download: <another link>`), and the brackets of chat markup become
/// their full-width forms (`<` `>` `[` `]` → `＜` `＞` `［` `］`), so that it cannot make a
/// link (`[Download](https://elsewhere)`), a mention (`<@all>`, `<!channel>`) or a tag
/// (`<font>`) in WeCom's markdown or Slack's mrkdwn.
pub fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    let active = |c: char| c.is_control() || matches!(c, '<' | '>' | '[' | ']');
    if !text.chars().any(active) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match c {
                '<' => '＜',
                '>' => '＞',
                '[' => '［',
                ']' => '］',
                c if c.is_control() => '?',
                c => c,
            })
            .collect(),
    )
}

/// `text` with its control characters (newlines among them) as `?`: it stays on its line.
pub fn on_one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

fn value(name: &str, record: &DumpRecord, url: &str) -> String {
    let unknown = || "unknown".to_owned();
    match name {
        "pod.namespace" => record.namespace.clone(),
        "pod.name" => record.pod.clone(),
        "pod.uid" => record.pod_uid.clone().unwrap_or_else(unknown),
        "pod.node" | "node.name" => record.node.clone(),
        "host.ip" => record.host_ip.clone().unwrap_or_else(unknown),
        "corefile.path" => record.host_path.clone(),
        "corefile.filename" => record.file_name().to_owned(),
        "corefile.url" => url.to_owned(),
        "corefile.size" => human_bytes(record.size),
        "container.name" => record.container.clone(),
        "process.exe" => record.exe.clone(),
        "process.pid" => record.pid.map_or_else(unknown, |pid| pid.to_string()),
        "signal.name" => record.signal_name.clone().unwrap_or_else(unknown),
        "image" => record.image.clone().unwrap_or_else(unknown),
        _ => String::new(),
    }
}

/// `1536` → `1.5 KiB`: sizes as people read them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let mut out = String::new();
    if unit == 0 {
        let _ = write!(out, "{bytes} B");
    } else {
        let _ = write!(out, "{value:.1} {}", UNITS[unit]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    #[test]
    fn a_value_cannot_write_a_line_of_its_own() {
        let mut record = sample();
        record.exe = "/app/x\nDownload: https://elsewhere.example/\r".to_owned();
        let text = MessageTemplate::parse(
            "Exe: {process.exe}\nDownload: {corefile.url}",
            &BTreeMap::new(),
        )
        .unwrap()
        .render(&record, "https://example/dl");
        assert_eq!(
            text,
            "Exe: /app/x?Download: https://elsewhere.example/?\nDownload: https://example/dl"
        );
    }

    /// Neither a link, a mention nor a tag: the value shows as written, in other brackets. The
    /// download link keeps its own, an IPv6 endpoint's.
    #[test]
    fn a_value_cannot_write_markup() {
        let mut record = sample();
        record.exe =
            "/app/[Download](https://elsewhere.example/)<@all><font color=\"warning\">".to_owned();
        let text = MessageTemplate::parse("Exe: {process.exe} {corefile.url}", &BTreeMap::new())
            .unwrap()
            .render(&record, "http://[fd00::1]:9000/dumps/a%5B1%5D");
        assert_eq!(
            text,
            "Exe: /app/［Download］(https://elsewhere.example/)＜@all＞＜font color=\"warning\"＞ http://[fd00::1]:9000/dumps/a%5B1%5D"
        );
        assert_eq!(
            inert("/usr/bin/server"),
            std::borrow::Cow::Borrowed("/usr/bin/server")
        );
    }

    /// As in the system this replaces, a `messageLabels` key is a variable of the template.
    #[test]
    fn message_labels_are_variables() {
        let labels = BTreeMap::from([
            ("cluster".to_owned(), "prod".to_owned()),
            ("team-name".to_owned(), "shop".to_owned()),
        ]);
        let template =
            MessageTemplate::parse("Cluster: {cluster} ({team-name}): {pod.name}", &labels)
                .unwrap();
        assert_eq!(
            template.render(&sample(), "https://example/dl"),
            "Cluster: prod (shop): web"
        );
        assert!(template.uses_label("cluster") && template.uses_label("team-name"));
        assert!(MessageTemplate::parse("{region}", &labels).is_err());
    }

    #[test]
    fn the_seed_template_renders() {
        let template = MessageTemplate::parse(
            "Pod: {pod.namespace}/{pod.name}\nNode: {pod.node}\nFile: {corefile.filename}\nDownload: {corefile.url}\n",
            &BTreeMap::new(),
        )
        .unwrap();
        let text = template.render(&sample(), "https://example/dl");
        assert_eq!(
            text,
            "Pod: shop/web\nNode: node-1\nFile: 20261127T100012Z_app_server_42_0123456789abcdef.core.zst\nDownload: https://example/dl\n"
        );
    }

    #[test]
    fn every_variable_has_a_value() {
        let record = sample();
        for name in VARIABLES {
            let rendered = MessageTemplate::parse(&format!("{{{name}}}"), &BTreeMap::new())
                .unwrap()
                .render(&record, "u");
            assert!(
                !rendered.is_empty() && rendered != "unknown",
                "{name} → {rendered:?}"
            );
        }
    }

    #[test]
    fn unknown_variables_are_refused_and_other_braces_kept() {
        assert_eq!(
            MessageTemplate::parse("hi {pod.nmae}", &BTreeMap::new()),
            Err(UnknownVariable("pod.nmae".to_owned()))
        );
        let template =
            MessageTemplate::parse("{\"a\": 1} { } {} {pod.name", &BTreeMap::new()).unwrap();
        assert_eq!(
            template.render(&sample(), ""),
            "{\"a\": 1} { } {} {pod.name"
        );
    }

    #[test]
    fn the_default_template_is_valid() {
        assert!(MessageTemplate::parse(DEFAULT_TEMPLATE, &BTreeMap::new()).is_ok());
        assert!(
            MessageTemplate::standard()
                .render(&sample(), "u")
                .contains("SIGSEGV")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
