//! `kubectl-coredog`: run as `kubectl coredog ...`.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use kubectl_coredog::cli::Cli;
use kubectl_coredog::{completion, no_proxy};

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
    tidy_no_proxy();
    completion::answer_shell();
    let mut args = std::env::args_os();
    if args
        .next()
        .is_some_and(|argv0| completion::is_kubectl_completer(Path::new(&argv0)))
    {
        let current_dir = std::env::current_dir().ok();
        return match completion::for_kubectl(args.collect(), current_dir.as_deref()) {
            Ok(candidates) => {
                print!("{candidates}");
                ExitCode::SUCCESS
            }
            Err(_) => ExitCode::FAILURE,
        };
    }
    let cli = Cli::parse_from(kubectl_coredog::cli::with_kubectl_verbosity(
        std::env::args_os().collect(),
    ));
    kubectl_coredog::app::main(cli)
}

/// kube refuses a `NO_PROXY` with an empty entry (`a,b,`), which kubectl and the storage client
/// accept: every cluster command would fail to load the kubeconfig.
fn tidy_no_proxy() {
    for name in ["NO_PROXY", "no_proxy"] {
        if let Ok(value) = std::env::var(name) {
            let tidy = no_proxy::without_empty_entries(&value);
            if tidy != value {
                // SAFETY: first thing in main, before any other thread exists.
                unsafe { std::env::set_var(name, tidy) };
            }
        }
    }
}
