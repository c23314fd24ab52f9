//! `kubectl-coredog`: run as `kubectl coredog ...`.

use std::process::ExitCode;

use clap::Parser as _;
use kubectl_coredog::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    kubectl_coredog::app::main(cli)
}
