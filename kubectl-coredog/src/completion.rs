//! Shell completion: `completion SHELL` prints a small script that asks the plugin itself for
//! the candidates at each TAB, so that subcommands, flags and their values always match the
//! binary installed.
//!
//! Two ways in:
//! - the shell script completes `kubectl-coredog` (or an alias of it): the shell runs
//!   `kubectl-coredog` with [`COMPLETE_VAR`] set, and [`answer_shell`] answers;
//! - `kubectl coredog <TAB>`: kubectl (1.26 and later) runs an executable named
//!   [`KUBECTL_COMPLETER`] with the words typed after `coredog`, the last one being completed,
//!   and reads candidates in Cobra's `__complete` format. That executable is a link to the
//!   plugin, which [`is_kubectl_completer`] recognises by its name.

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::path::Path;

use clap::CommandFactory as _;
use clap_complete::env::{CompleteEnv, Shells};
use clap_complete::{Shell, engine};

use crate::cli::Cli;

/// The variable the shell scripts set when they ask for candidates.
pub const COMPLETE_VAR: &str = "KUBECTL_COREDOG_COMPLETE";

/// The executable kubectl runs to complete `kubectl coredog ...`.
pub const KUBECTL_COMPLETER: &str = "kubectl_complete-coredog";

/// The plugin's executable.
const BIN: &str = "kubectl-coredog";

/// Cobra's `ShellCompDirectiveNoFileComp`: the candidates are all there is (paths, where they
/// make sense, are among them).
const NO_FILE_COMPLETION: u8 = 4;

/// Cobra's `ShellCompDirectiveNoSpace`: a directory is completed into, not past.
const NO_SPACE: u8 = 2;

/// Answers a completion request from one of the shell scripts and exits; returns when the
/// process was not started for one.
pub fn answer_shell() {
    CompleteEnv::with_factory(Cli::command)
        .var(COMPLETE_VAR)
        .bin(BIN)
        .completer(BIN)
        .complete();
}

/// The script for `shell`; it completes `kubectl-coredog` by asking it.
pub fn script(shell: Shell) -> io::Result<Vec<u8>> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| io::Error::other(format!("no completion for {name}")))?;
    let mut script = Vec::new();
    completer.write_registration(COMPLETE_VAR, BIN, BIN, BIN, &mut script)?;
    writeln!(
        script,
        "# `kubectl coredog <TAB>` (kubectl 1.26+) runs {KUBECTL_COMPLETER}; link it to the plugin:\n#   cd \"$(dirname \"$(command -v {BIN})\")\" && ln -s {BIN} {KUBECTL_COMPLETER}"
    )?;
    Ok(script)
}

/// Whether the process was started as [`KUBECTL_COMPLETER`].
pub fn is_kubectl_completer(argv0: &Path) -> bool {
    argv0
        .file_name()
        .is_some_and(|name| name == KUBECTL_COMPLETER)
}

/// The candidates for the last of `words` (typed after `kubectl coredog`), as kubectl reads
/// them from a plugin's completer: `value<TAB>help` lines, then `:<directive>`.
pub fn for_kubectl(words: Vec<OsString>, current_dir: Option<&Path>) -> io::Result<String> {
    let mut args = vec![OsString::from(BIN)];
    args.extend(words);
    if args.len() == 1 {
        args.push(OsString::new());
    }
    let index = args.len() - 1;
    let candidates = engine::complete(&mut Cli::command(), args, index, current_dir)?;
    let mut out = String::new();
    let mut directive = NO_FILE_COMPLETION;
    for candidate in candidates
        .iter()
        .filter(|candidate| !candidate.is_hide_set())
    {
        let value = candidate.get_value().to_string_lossy();
        if value.ends_with(std::path::MAIN_SEPARATOR) {
            directive |= NO_SPACE;
        }
        out.push_str(&value);
        if let Some(help) = candidate.get_help() {
            let help = help.to_string();
            if let Some(first) = help.lines().next().filter(|line| !line.is_empty()) {
                out.push('\t');
                out.push_str(first);
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(":{directive}\n"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(words: &[&str]) -> Vec<String> {
        let words = words.iter().map(OsString::from).collect();
        let out = for_kubectl(words, None).unwrap();
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        assert_eq!(lines.pop().as_deref(), Some(":4"), "{out}");
        lines
            .into_iter()
            .map(|line| line.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn kubectl_gets_subcommands_flags_and_values() {
        let all = candidates(&[]);
        for expected in ["install", "enable", "doctor", "list", "fetch"] {
            assert!(all.iter().any(|c| c == expected), "{expected} in {all:?}");
        }
        assert_eq!(candidates(&["fe"]), ["fetch"]);
        assert_eq!(candidates(&["list", "--li"]), ["--limit"]);
        assert_eq!(
            candidates(&["list", "-o", ""]),
            ["table", "wide", "json", "yaml"]
        );
        assert!(candidates(&["-n", "shop", "fetch", "--r"]).contains(&"--raw".to_owned()));
    }

    #[test]
    fn directories_are_completed_into() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dumps")).unwrap();
        let words = ["fetch", "0123", "-o", "du"].map(OsString::from).to_vec();
        let out = for_kubectl(words, Some(dir.path())).unwrap();
        assert_eq!(out, "dumps/\n:6\n");
    }

    #[test]
    fn scripts_ask_the_plugin() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(script(shell).unwrap()).unwrap();
            assert!(script.contains(COMPLETE_VAR), "{shell}: {script}");
            assert!(script.contains(BIN), "{shell}");
            assert!(script.contains(KUBECTL_COMPLETER), "{shell}");
        }
    }

    #[test]
    fn the_kubectl_completer_is_known_by_its_name() {
        assert!(is_kubectl_completer(Path::new(
            "/home/me/.krew/bin/kubectl_complete-coredog"
        )));
        assert!(!is_kubectl_completer(Path::new("/usr/bin/kubectl-coredog")));
    }
}
