//! The command line, as `kubectl coredog` presents it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-coredog",
    bin_name = "kubectl coredog",
    version,
    about = "Install CoreDog, opt workloads in to core dump collection, check the setup, and list and fetch the dumps it collected",
    after_help = "Examples:\n  kubectl coredog install --bucket my-dumps --region eu-west-1 --wait\n  kubectl coredog enable deploy/web --path /corefile\n  kubectl coredog doctor deploy/web\n  kubectl coredog list -A --since 2h\n  kubectl coredog fetch 3f2a -o core"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that mean what they mean to kubectl.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global Options")]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Every namespace (wins over -n, as in kubectl).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// More detail on stderr (-v: debug, -vv: trace; kubectl's -v=N and --v=N are read as -v
    /// below 6 and -vv from 6 on); RUST_LOG also works.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The arguments with kubectl's verbosity spellings (`-v=6`, `--v=6`, `--v 6`) made this
/// plugin's (`-v` below 6, `-vv` from 6 on, nothing for 0), so that a kubectl habit is no usage
/// error. Nothing after `--` is touched.
pub fn with_kubectl_verbosity(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        let text = arg.to_str().unwrap_or_default();
        let level = match text
            .strip_prefix("-v=")
            .or_else(|| text.strip_prefix("--v="))
        {
            Some(level) => level.parse::<u8>().ok(),
            None if text == "--v" => {
                let level = args
                    .peek()
                    .and_then(|next| next.to_str())
                    .and_then(|next| next.parse::<u8>().ok());
                if level.is_some() {
                    args.next();
                }
                level
            }
            None => None,
        };
        match level {
            Some(0) => {}
            Some(1..=5) => out.push("-v".into()),
            Some(_) => out.push("-vv".into()),
            None => out.push(arg),
        }
    }
    out
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install or upgrade CoreDog in the cluster (namespace coredog-system), as the Helm chart does.
    Install(InstallArgs),
    /// Remove everything install created, the webhook's configuration and certificate included.
    Uninstall(UninstallArgs),
    /// Opt workloads in: annotate their pod templates so new pods get a dump directory.
    Enable(EnableArgs),
    /// Opt workloads out: remove CoreDog's annotations from their pod templates.
    Disable(DisableArgs),
    /// Show opted-in workloads and pods, whether their pods carry the dump directory, and their dumps.
    Status(StatusArgs),
    /// Check the installation (and optionally one workload) end to end; exits non-zero on a failure.
    Doctor(DoctorArgs),
    /// List the dumps in storage, newest first.
    List(ListArgs),
    /// Show everything recorded about one dump.
    Info(InfoArgs),
    /// Download a dump, decompressed and verified against its checksum.
    Fetch(FetchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  source <(kubectl-coredog completion bash)    # in ~/.bashrc: completes kubectl-coredog\n\nkubectl coredog <TAB> (kubectl 1.26+) runs kubectl_complete-coredog; link it to the plugin:\n  cd \"$(dirname \"$(command -v kubectl-coredog)\")\"\n  ln -s kubectl-coredog kubectl_complete-coredog"
    )]
    Completion(CompletionArgs),
}

/// `--dry-run`: `client` changes nothing, `server` lets the API server check without persisting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DryRun {
    #[default]
    None,
    Client,
    Server,
}

impl DryRun {
    pub fn is_dry(self) -> bool {
        self != Self::None
    }

    /// The suffix kubectl prints after an action that did not persist.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Client => " (dry run)",
            Self::Server => " (server dry run)",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DryRunArg {
    /// Only show what would change: `client` sends no change (the cluster is still read, except
    /// by install, which contacts nothing), `server` has the API server check it too.
    #[arg(
        long = "dry-run",
        value_enum,
        default_value_t = DryRun::None,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: DryRun,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
}

/// A document's format: the manifests install prints, the checks doctor prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StorageProtocol {
    #[default]
    S3,
    Cos,
    Oss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FailurePolicy {
    /// Pods are admitted (without a dump directory) when the webhook cannot be reached.
    #[default]
    #[value(name = "Ignore")]
    Ignore,
    /// Pod creation fails while the webhook is unreachable.
    #[value(name = "Fail")]
    Fail,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "Ignore",
            Self::Fail => "Fail",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The watcher's configuration file (README "Configuration"); instead of the storage flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["protocol", "bucket", "endpoint", "region", "store_dir"])]
    pub config: Option<PathBuf>,
    /// Object storage flavour.
    #[arg(long, value_enum)]
    pub protocol: Option<StorageProtocol>,
    /// The bucket dumps are stored in.
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// S3 endpoint, `host[:port]` or `http(s)://host[:port]` (default: the provider's regional one).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Prefix of every object in the bucket.
    #[arg(long, value_name = "PREFIX")]
    pub store_dir: Option<String>,
    /// The CoreDog image (default: the one released with this plugin).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The node directory that holds every namespace's dumps [default: /data/coredog-system/dumps,
    /// or on an upgrade the installed one].
    #[arg(long, value_name = "DIR")]
    pub host_dir: Option<String>,
    /// With protocol cfs: the NFS export the watchers mount at the config's CFSMountPath
    /// (default: each node's own CFSMountPath, where the share must be mounted).
    #[arg(long, value_name = "SERVER:/EXPORT")]
    pub cfs_nfs: Option<String>,
    /// PEM file of the CAs that sign an https storage endpoint's certificate (an on-premises
    /// MinIO or Ceph): the watchers trust them besides the public ones. An upgrade keeps the
    /// installed ones; --storage-ca= (empty) removes them.
    #[arg(long, value_name = "FILE")]
    pub storage_ca: Option<String>,
    /// Let the watcher set kernel.core_pattern on every node (runs the watcher privileged). An
    /// upgrade keeps what the last install chose; --node-setup=false turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub node_setup: Option<bool>,
    /// The core_pattern --node-setup writes; its directory must be the pods' coredog.io/path
    /// [default: /corefile/core.%e.%p.%h.%t, or on an upgrade the installed one].
    #[arg(long, value_name = "PATTERN")]
    pub core_pattern: Option<String>,
    /// What the API server does with pods when the webhook cannot be reached [default: Ignore,
    /// or on an upgrade the installed one].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub webhook_failure_policy: Option<FailurePolicy>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Print the objects (with --dry-run=client: the objects that would be applied).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ManifestFormat>,
    /// Wait until the webhook and the watchers are ready.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 90s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub timeout: String,
}

#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Keep the namespace coredog-system.
    #[arg(long)]
    pub keep_namespace: bool,
}

/// Which workloads to act on, spelt as kubectl spells them.
#[derive(Debug, Clone, Args)]
pub struct WorkloadSelection {
    /// Workloads as TYPE/NAME (deploy/web, sts/db, ds/agent, rs/x, job/y, cj/z), or TYPE NAME...
    #[arg(value_name = "WORKLOAD")]
    pub workloads: Vec<String>,
    /// Act on every workload of --kind matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The workload type for --selector (deploy, sts, ds, rs, job, cj).
    #[arg(long, value_name = "TYPE")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct EnableArgs {
    #[command(flatten)]
    pub selection: WorkloadSelection,
    /// Where the containers see their dump directory; the node's core_pattern must write there
    /// [default: the workload's current path, else /corefile].
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Only these containers, comma-separated; "" for every container [default: the workload's
    /// current choice, else every container].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub container: Option<Vec<String>>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

#[derive(Debug, Clone, Args)]
pub struct DisableArgs {
    #[command(flatten)]
    pub selection: WorkloadSelection,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Read storage settings from this config file instead of the cluster's Secret
    /// coredog-system/coredog-config (then no cluster is needed).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Also check this workload (TYPE/NAME, e.g. deploy/web).
    #[arg(value_name = "WORKLOAD")]
    pub workload: Option<String>,
    /// Print the checks as one json or yaml document instead of the checklist.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ManifestFormat>,
}

/// Which dumps a listing selects.
#[derive(Debug, Clone, Default, Args)]
pub struct DumpFilterArgs {
    /// Only dumps of this pod.
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Only dumps of this container.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Only dumps of this executable (its file name).
    #[arg(long, value_name = "NAME")]
    pub exe: Option<String>,
    /// Only dumps from this node (reads every candidate's record).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Only dumps at or after: a duration ago (30m, 2h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only dumps before: a duration ago or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
}

impl DumpFilterArgs {
    /// Whether no filter is given.
    pub fn is_empty(&self) -> bool {
        let Self {
            pod,
            container,
            exe,
            node,
            since,
            until,
        } = self;
        [pod, container, exe, node, since, until]
            .iter()
            .all(|filter| filter.is_none())
    }
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filters: DumpFilterArgs,
    /// Show at most this many dumps (0: all). Default: 50 in a table, all with -o json|yaml,
    /// which scripts read whole.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl ListArgs {
    /// Dumps shown in a table unless `--limit` says otherwise.
    pub const TABLE_LIMIT: usize = 50;

    /// How many dumps to show (0: all).
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(match self.output {
            OutputFormat::Table | OutputFormat::Wide => Self::TABLE_LIMIT,
            OutputFormat::Json | OutputFormat::Yaml => 0,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum InfoFormat {
    /// Aligned `Field: value` lines.
    #[default]
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// The dump's ID, or any unique prefix of it (searches every namespace unless -n is given).
    pub id: String,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InfoFormat::Text)]
    pub output: InfoFormat,
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// The dump's ID, or any unique prefix of it.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub id: Option<String>,
    /// The newest dump matching the filters.
    #[arg(long)]
    pub latest: bool,
    #[command(flatten)]
    pub filters: DumpFilterArgs,
    /// Where to write the core: a file, or a directory to write it into under its stored file
    /// name (default: the current directory).
    #[arg(short = 'o', long = "output", value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
    /// Keep the bytes as stored (compressed); they are still decompressed in passing to verify
    /// the core's checksum.
    #[arg(long)]
    pub raw: bool,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The defaults an install falls back to are spelt out in the help by hand.
    #[test]
    fn install_help_names_the_defaults() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("install")
            .unwrap()
            .render_long_help()
            .to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for default in [
            coredog_core::layout::DEFAULT_HOST_DIR,
            crate::install::manifests::DEFAULT_CORE_PATTERN,
            FailurePolicy::default().as_str(),
        ] {
            assert!(
                help.contains(&format!("[default: {default}")),
                "{default}: {help}"
            );
        }
    }

    #[test]
    fn node_setup_takes_an_optional_value() {
        let node_setup = |args: &[&str]| {
            let mut argv = vec!["kubectl-coredog", "install"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Install(args) => args.node_setup,
                _ => unreachable!(),
            }
        };
        assert_eq!(node_setup(&[]), None);
        assert_eq!(node_setup(&["--node-setup"]), Some(true));
        assert_eq!(node_setup(&["--node-setup=false"]), Some(false));
        // The flag takes no separate value: what follows is not swallowed.
        assert!(
            Cli::try_parse_from(["kubectl-coredog", "install", "--node-setup", "false"]).is_err()
        );
    }

    #[test]
    fn dry_run_alone_means_client() {
        let cli =
            Cli::try_parse_from(["kubectl-coredog", "enable", "deploy/web", "--dry-run"]).unwrap();
        let Command::Enable(args) = cli.command else {
            panic!("enable")
        };
        assert_eq!(args.dry_run.dry_run, DryRun::Client);
        assert_eq!(args.selection.workloads, ["deploy/web"]);
        let cli =
            Cli::try_parse_from(["kubectl-coredog", "uninstall", "--dry-run=server"]).unwrap();
        let Command::Uninstall(args) = cli.command else {
            panic!("uninstall")
        };
        assert_eq!(args.dry_run.dry_run, DryRun::Server);
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-coredog",
            "list",
            "-n",
            "shop",
            "--context",
            "prod",
            "-o",
            "wide",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        let Command::List(args) = cli.command else {
            panic!("list")
        };
        assert_eq!(args.output, OutputFormat::Wide);
        assert_eq!(args.limit(), 50);
        let Command::List(json) = Cli::try_parse_from(["kubectl-coredog", "list", "-o", "json"])
            .unwrap()
            .command
        else {
            panic!("list")
        };
        assert_eq!(json.limit(), 0, "-o json lists every dump");
    }

    #[test]
    fn containers_are_comma_separated() {
        let cli = Cli::try_parse_from([
            "kubectl-coredog",
            "enable",
            "deploy/web",
            "--container",
            "a,b",
        ])
        .unwrap();
        let Command::Enable(args) = cli.command else {
            panic!("enable")
        };
        assert_eq!(args.container, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(args.path, None);
    }
}

#[cfg(test)]
mod verbosity_tests {
    use super::with_kubectl_verbosity;

    fn normalized(args: &[&str]) -> Vec<String> {
        with_kubectl_verbosity(args.iter().map(|arg| (*arg).into()).collect())
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

    #[test]
    fn kubectls_verbosity_is_understood() {
        assert_eq!(normalized(&["k", "list", "-v=6"]), ["k", "list", "-vv"]);
        assert_eq!(normalized(&["k", "--v=2", "list"]), ["k", "-v", "list"]);
        assert_eq!(normalized(&["k", "list", "--v", "8"]), ["k", "list", "-vv"]);
        assert_eq!(normalized(&["k", "list", "-v=0"]), ["k", "list"]);
        // Its own spellings, and anything else, as they are.
        assert_eq!(
            normalized(&["k", "-vv", "list", "-v"]),
            ["k", "-vv", "list", "-v"]
        );
        assert_eq!(
            normalized(&["k", "list", "--v", "x"]),
            ["k", "list", "--v", "x"]
        );
        assert_eq!(
            normalized(&["k", "fetch", "--", "-v=6"]),
            ["k", "fetch", "--", "-v=6"]
        );
        let cli = <super::Cli as clap::Parser>::try_parse_from(with_kubectl_verbosity(
            ["kubectl-coredog", "list", "-v=6", "--config", "c.yaml"]
                .iter()
                .map(|arg| (*arg).into())
                .collect(),
        ))
        .unwrap();
        assert_eq!(cli.global.verbose, 2);
    }
}
