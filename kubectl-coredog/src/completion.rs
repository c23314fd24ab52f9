//! `completion SHELL`: the shell completion script.

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// The script for `shell`, completing the `kubectl-coredog` executable. kubectl hands plugin
/// completion to an executable named `kubectl_complete-coredog`, which shells do not need: this
/// script completes the plugin when it is called directly or through an alias.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kubectl-coredog", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(script(shell)).unwrap();
            assert!(script.contains("kubectl-coredog"), "{shell}");
            assert!(script.contains("doctor"), "{shell}");
        }
    }
}
