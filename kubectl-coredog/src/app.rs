//! From a parsed command line to an exit code: logging, the runtime, connecting what the
//! command needs, and printing errors as one sentence and a hint.

use std::process::ExitCode;

use std::path::Path;

use jiff::Timestamp;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, DryRun, GlobalArgs, ManifestFormat};
use crate::doctor::exec::KubeExec;
use crate::dumps::FetchScopes;
use crate::enable::{self, Change, Targets};
use crate::error::{explain, user};
use crate::fetch::FetchOptions;
use crate::kube_client::{self, Scope, connect};
use crate::output::{Console, to_json, to_yaml};
use crate::status::StatusStorage;
use crate::storage::{self, OpenedStorage};
use crate::workload::WorkloadRef;
use crate::{completion, doctor, dumps, install, status};

/// Runs the command and returns the process's exit code; errors are printed to stderr.
pub fn main(cli: Cli) -> ExitCode {
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Unlocked handles: progress bars draw to stderr from their own thread.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut console = Console {
        out: &mut stdout,
        err: &mut stderr,
    };
    let result = runtime.block_on(run(cli, &mut console));
    let _ = console.out.flush();
    match result {
        Ok(code) => code,
        // A reader that went away (`| head`) is not an error worth a message.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::debug!(error = ?err, "command failed");
            eprintln!("{}", explain(&err));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "off",
        1 => "kubectl_coredog=debug",
        _ => "debug,kubectl_coredog=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// Runs one command.
pub async fn run(cli: Cli, console: &mut Console<'_>) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Completion(args) => {
            let script = completion::script(args.shell).map_err(|err| {
                user(
                    format!("no completion script: {err}"),
                    "try bash, zsh or fish",
                )
            })?;
            console.print(&String::from_utf8_lossy(&script))?;
        }
        Command::Install(args) => {
            let env = |name: &str| std::env::var(name).ok();
            if args.dry_run.dry_run == DryRun::Client {
                install::install(None, &args, &env, console).await?;
            } else {
                let cluster = connect(&global).await?;
                install::install(Some(&cluster.client), &args, &env, console).await?;
            }
        }
        Command::Uninstall(args) => {
            let cluster = connect(&global).await?;
            install::uninstall(&cluster.client, &args, console).await?;
        }
        Command::Enable(args) => {
            // Everything that can be checked without the cluster is checked first.
            let targets = Targets::from_args(&args.selection)?;
            let change = Change::enable(args.path.as_deref(), args.container.as_deref())?;
            let cluster = connect(&global).await?;
            let scope = cluster.scope(&global);
            enable::run(
                &cluster.client,
                &scope,
                &targets,
                &change,
                args.dry_run.dry_run,
                console,
            )
            .await?;
        }
        Command::Disable(args) => {
            let targets = Targets::from_args(&args.selection)?;
            let cluster = connect(&global).await?;
            let scope = cluster.scope(&global);
            enable::run(
                &cluster.client,
                &scope,
                &targets,
                &Change::Disable,
                args.dry_run.dry_run,
                console,
            )
            .await?;
        }
        Command::Status(args) => {
            let cluster = connect(&global).await?;
            let scope = cluster.scope(&global);
            let opened =
                storage::connect(args.storage.config.as_deref(), Some(&cluster.client)).await;
            let storage = match &opened {
                Ok(opened) => StatusStorage::Open {
                    storage: &opened.store,
                    store_dir: &opened.store_dir,
                },
                Err(err) => StatusStorage::Unavailable(explain(err).message),
            };
            status::run(&cluster.client, &scope, storage, args.output, console).await?;
        }
        Command::Doctor(args) => {
            let reference = args
                .workload
                .as_deref()
                .map(WorkloadRef::parse)
                .transpose()
                .map_err(|err| {
                    user(
                        err.to_string(),
                        "for example: kubectl coredog doctor deploy/web",
                    )
                })?;
            if reference.is_some() && global.all_namespaces {
                return Err(user(
                    "a workload cannot be named across all namespaces (-A)",
                    "give its namespace with -n",
                ));
            }
            let cluster = connect(&global).await?;
            let namespace = cluster.namespace(&global);
            let probe = KubeExec {
                client: cluster.client.clone(),
            };
            let workload = reference
                .as_ref()
                .map(|reference| (reference, namespace.as_str()));
            let verdict = match args.output {
                None => {
                    doctor::run(&cluster.client, workload, &probe, Timestamp::now(), console)
                        .await?
                }
                Some(format) => {
                    let checks =
                        doctor::check_all(&cluster.client, workload, &probe, Timestamp::now())
                            .await?;
                    let document = doctor::document(&checks);
                    console.print(&match format {
                        ManifestFormat::Json => to_json(&document)?,
                        ManifestFormat::Yaml => to_yaml(&document)?,
                    })?;
                    doctor::Verdict::of(&checks)
                }
            };
            return Ok(ExitCode::from(verdict.exit_code()));
        }
        Command::List(args) => {
            let opened = open_storage(&global, args.storage.config.as_deref()).await?;
            let scope = kube_client::offline_scope(&global).await?;
            dumps::list_command(
                &opened.store,
                &opened.store_dir,
                &args,
                &scope,
                Timestamp::now(),
                console,
            )
            .await?;
        }
        Command::Info(args) => {
            let opened = open_storage(&global, args.storage.config.as_deref()).await?;
            dumps::info_command(
                &opened.store,
                &opened.store_dir,
                &args,
                &id_scope(&global),
                console,
            )
            .await?;
        }
        Command::Fetch(args) => {
            let opened = open_storage(&global, args.storage.config.as_deref()).await?;
            let scopes = FetchScopes {
                listing: kube_client::offline_scope(&global).await?,
                ids: id_scope(&global),
            };
            dumps::fetch_command(
                &opened.store,
                &opened.store_dir,
                &args,
                &scopes,
                Timestamp::now(),
                FetchOptions::for_parts(opened.part_size),
                console,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The storage of `--config FILE` (no cluster needed), or of the cluster's config Secret.
async fn open_storage(
    global: &GlobalArgs,
    config_file: Option<&Path>,
) -> anyhow::Result<OpenedStorage> {
    if config_file.is_some() {
        return storage::connect(config_file, None).await;
    }
    let cluster = connect(global).await?;
    storage::connect(None, Some(&cluster.client)).await
}

/// IDs are unique across namespaces: an ID is looked up everywhere unless `-n` narrows it.
fn id_scope(global: &GlobalArgs) -> Scope {
    match &global.namespace {
        Some(namespace) if !global.all_namespaces => Scope::Namespace(namespace.clone()),
        _ => Scope::All,
    }
}
