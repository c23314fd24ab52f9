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
    // mimalloc marks its memory for transparent huge pages. A fetch frees and reuses buffers so
    // quickly that the kernel kept zeroing fresh 2 MiB pages for a few KiB of use: a seventh of
    // the fetch's CPU. Plain pages cost nothing here; failing to switch is harmless.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    kubectl_coredog::app::main(cli)
}
