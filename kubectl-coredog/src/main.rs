//! `kubectl-coredog`: run as `kubectl coredog ...`.

use std::process::ExitCode;

use clap::Parser as _;
use kubectl_coredog::cli::Cli;

// A fetch passes a few hundred MiB per second through short-lived buffers of a few MiB; the
// system allocator maps and unmaps each one, and the page faults cost a tenth of the fetch's
// CPU. mimalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    kubectl_coredog::app::main(cli)
}
