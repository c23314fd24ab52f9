//! Printing as kubectl prints: tables with upper-case headers and columns three spaces apart,
//! or JSON / YAML for scripts; and progress bars that only a person at a terminal sees.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Padding, Style};

/// Where a command writes: results to `out`, warnings and notes to `err`.
pub struct Console<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

impl Console<'_> {
    /// Writes text to `out` as is.
    pub fn print(&mut self, text: &str) -> anyhow::Result<()> {
        self.out
            .write_all(text.as_bytes())
            .context("cannot write the output")
    }

    /// Writes one line to `out`.
    pub fn line(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.out, "{line}").context("cannot write the output")
    }

    /// Writes one line to `err`; a closed stderr is no reason to fail.
    pub fn note(&mut self, line: &str) {
        let _ = writeln!(self.err, "{line}");
    }

    pub fn warn(&mut self, line: &str) {
        self.note(&format!("warning: {line}"));
    }
}

/// A table as kubectl draws one (no borders, left-aligned, no trailing blanks).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut builder = Builder::default();
    builder.push_record(headers.iter().copied());
    for row in rows {
        builder.push_record(row.iter().map(String::as_str));
    }
    let mut table = builder.build();
    table
        .with(Style::empty())
        .with(Padding::new(0, 3, 0, 0))
        .modify(Columns::last(), Padding::zero());
    let mut text: String = table
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}

pub fn to_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot render JSON")?;
    text.push('\n');
    Ok(text)
}

pub fn to_yaml<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    serde_yaml::to_string(value).context("cannot render YAML")
}

/// Documents in one YAML stream, each introduced by `---`.
pub fn to_yaml_stream<T: Serialize>(values: &[T]) -> anyhow::Result<String> {
    let mut text = String::new();
    for value in values {
        text.push_str("---\n");
        text.push_str(&to_yaml(value)?);
    }
    Ok(text)
}

/// Whether a person is watching: progress is drawn only then, so that piped output stays clean.
pub fn interactive() -> bool {
    std::io::stdout().is_terminal()
}

fn target() -> ProgressDrawTarget {
    if interactive() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A byte counter with rate and time left.
pub fn bytes_bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}

/// A spinner with a message, for waits of unknown length.
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_look_like_kubectl() {
        let text = table(
            &["NAME", "READY", "AGE"],
            &[
                vec!["web".into(), "2/2".into(), "5m".into()],
                vec!["database-0".into(), "1/1".into(), "".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME         READY   AGE\nweb          2/2     5m\ndatabase-0   1/1\n"
        );
    }

    #[test]
    fn yaml_streams_separate_documents() {
        let text =
            to_yaml_stream(&[serde_json::json!({"a": 1}), serde_json::json!({"b": "x"})]).unwrap();
        assert_eq!(text, "---\na: 1\n---\nb: x\n");
    }
}
