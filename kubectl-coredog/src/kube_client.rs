//! Reaching the cluster the way kubectl does: `--kubeconfig` (else `KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account), `--context` (else the current
//! context), and `-n` (else the context's namespace).

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use tracing::debug;

use crate::cli::GlobalArgs;
use crate::error::UserError;
use crate::no_proxy;

/// Which namespaces a command looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    All,
}

impl Scope {
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Self::Namespace(namespace) => Some(namespace),
            Self::All => None,
        }
    }
}

/// A client, and the namespace commands default to.
pub struct Cluster {
    pub client: Client,
    pub default_namespace: String,
}

impl Cluster {
    /// `-A`, `-n`, or the context's namespace.
    pub fn scope(&self, global: &GlobalArgs) -> Scope {
        scope(global, &self.default_namespace)
    }

    /// `-n`, or the context's namespace (for commands that act in one namespace).
    pub fn namespace(&self, global: &GlobalArgs) -> String {
        global
            .namespace
            .clone()
            .unwrap_or_else(|| self.default_namespace.clone())
    }
}

pub fn scope(global: &GlobalArgs, default_namespace: &str) -> Scope {
    if global.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(
            global
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
        )
    }
}

/// Loads the client configuration. Nothing is sent to the cluster yet.
pub async fn config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        cluster: None,
        user: None,
    };
    let kubeconfig = match &global.kubeconfig {
        Some(path) => Ok(Kubeconfig::read_from(path).map_err(|err| {
            UserError::new(format!("cannot read kubeconfig {}", path.display()))
                .hint("pass a kubeconfig file kubectl can use")
                .cause(err)
        })?),
        None => read_kubeconfig(std::env::var_os("KUBECONFIG")),
    };
    let (mut config, kubeconfig_proxy) = match kubeconfig {
        Ok(kubeconfig) => {
            let proxy = cluster_proxy(&kubeconfig, global.context.as_deref());
            let config = Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| kubeconfig_error(global, err))?;
            (config, proxy)
        }
        Err(err) if global.context.is_some() => return Err(kubeconfig_error(global, err)),
        // As kubectl: no kubeconfig, so the pod's service account, if there is one.
        Err(err) => match Config::incluster() {
            Ok(config) => (config, None),
            Err(_) => {
                return Err(UserError::new("no Kubernetes configuration found")
                    .hint("set KUBECONFIG or pass --kubeconfig FILE; inside a pod, mount a service account token")
                    .cause(err)
                    .into());
            }
        },
    };
    config.proxy_url = no_proxy::proxy_for(&config.cluster_url, kubeconfig_proxy, |name| {
        std::env::var(name).ok()
    });
    debug!(server = %config.cluster_url, proxy = ?config.proxy_url, namespace = %config.default_namespace, "kubeconfig loaded");
    Ok(config)
}

/// The kubeconfig as kubectl reads it: the files `KUBECONFIG` lists, merged, skipping those
/// that do not exist (a list kept across machines often names one); without the variable,
/// `~/.kube/config`.
fn read_kubeconfig(listed: Option<std::ffi::OsString>) -> Result<Kubeconfig, KubeconfigError> {
    let existing: Vec<std::path::PathBuf> = listed
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|path| !path.as_os_str().is_empty() && path.exists())
        .collect();
    if existing.is_empty() {
        // No list: the default file. None of it there: kube reads the list again and says
        // which file is missing, and the caller turns to the pod's service account, as kubectl.
        return Kubeconfig::read();
    }
    existing
        .iter()
        .try_fold(Kubeconfig::default(), |merged, path| {
            merged.merge(Kubeconfig::read_from(path)?)
        })
}

/// The `proxy-url` of the cluster that `context` (else the current context) uses.
fn cluster_proxy(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<http::Uri> {
    let context = context.or(kubeconfig.current_context.as_deref())?;
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|named| named.name == context)?
        .context
        .as_ref()?
        .cluster
        .as_str();
    kubeconfig
        .clusters
        .iter()
        .find(|named| named.name == cluster)?
        .cluster
        .as_ref()?
        .proxy_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())?
        .parse()
        .ok()
}

fn kubeconfig_error(global: &GlobalArgs, err: kube::config::KubeconfigError) -> anyhow::Error {
    let message = match &global.context {
        Some(context) => format!("cannot use kubeconfig context {context:?}"),
        None => "cannot use the kubeconfig".to_owned(),
    };
    UserError::new(message)
        .hint("`kubectl config get-contexts` lists the contexts")
        .cause(err)
        .into()
}

/// Connects as kubectl would.
pub async fn connect(global: &GlobalArgs) -> anyhow::Result<Cluster> {
    let config = config(global).await?;
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|err| {
        UserError::new("cannot set up the Kubernetes client")
            .hint(
                "check the kubeconfig's certificates, server URL and proxy (HTTPS_PROXY, NO_PROXY)",
            )
            .cause(err)
    })?;
    Ok(Cluster {
        client,
        default_namespace,
    })
}

/// Objects listed in one request at most: a cluster's every pod in one answer can be hundreds
/// of megabytes, which the API server builds in memory and `kubectl` itself pages through.
const LIST_PAGE: u32 = 500;

/// Every object `params` selects, listed a page at a time as `kubectl get` does.
pub async fn list_all<K>(api: &kube::Api<K>, params: &kube::api::ListParams) -> kube::Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.clone().limit(LIST_PAGE);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// The namespaces a listing looks at, without needing a cluster (for commands that may run on
/// a config file alone): `-A`, `-n`, else the kubeconfig context's namespace; with no
/// kubeconfig at all there is no current namespace, and every namespace is listed. A
/// `--context` or `--kubeconfig` that cannot be used is an error, as for kubectl, rather than
/// a listing of every namespace.
pub async fn offline_scope(global: &GlobalArgs) -> anyhow::Result<Scope> {
    if global.all_namespaces {
        return Ok(Scope::All);
    }
    if let Some(namespace) = &global.namespace {
        return Ok(Scope::Namespace(namespace.clone()));
    }
    match config(global).await {
        Ok(config) => Ok(Scope::Namespace(config.default_namespace)),
        Err(err) if global.context.is_some() || global.kubeconfig.is_some() => Err(err),
        Err(_) => Ok(Scope::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let mut global = GlobalArgs::default();
        assert_eq!(scope(&global, "ctx"), Scope::Namespace("ctx".into()));
        global.namespace = Some("shop".into());
        assert_eq!(scope(&global, "ctx"), Scope::Namespace("shop".into()));
        global.all_namespaces = true;
        assert_eq!(scope(&global, "ctx"), Scope::All);
        assert_eq!(Scope::All.namespace(), None);
    }

    /// As kubectl: a file `KUBECONFIG` lists that is not there is skipped, the rest merged.
    #[test]
    fn a_kubeconfig_list_skips_files_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        std::fs::write(
            &first,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\ncontexts:\n  - name: a\n    context: {cluster: c, user: u}\n",
        )
        .unwrap();
        std::fs::write(
            &second,
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster: {server: \"https://127.0.0.1:6443\"}\nusers:\n  - name: u\n    user: {token: t}\n",
        )
        .unwrap();
        let gone = dir.path().join("gone");
        let list = std::env::join_paths([&first, &gone, &second]).unwrap();
        let merged = read_kubeconfig(Some(list)).unwrap();
        assert_eq!(merged.current_context.as_deref(), Some("a"));
        assert_eq!(merged.clusters.len(), 1);
        assert_eq!(merged.auth_infos.len(), 1);
    }

    #[tokio::test]
    async fn a_kubeconfig_proxy_url_is_used_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            r#"apiVersion: v1
kind: Config
current-context: a
clusters:
  - name: c
    cluster: {server: "https://10.20.0.1:6443", proxy-url: "http://proxy.corp:3128"}
  - name: d
    cluster: {server: "https://10.30.0.1:6443"}
users:
  - name: u
    user: {token: t}
contexts:
  - name: a
    context: {cluster: c, user: u}
  - name: b
    context: {cluster: d, user: u}
"#,
        )
        .unwrap();
        let kubeconfig = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(
            cluster_proxy(&kubeconfig, None).map(|url| url.to_string()),
            Some("http://proxy.corp:3128/".to_owned())
        );
        assert_eq!(cluster_proxy(&kubeconfig, Some("b")), None);
        assert_eq!(cluster_proxy(&kubeconfig, Some("missing")), None);
        let global = GlobalArgs {
            kubeconfig: Some(path),
            ..GlobalArgs::default()
        };
        let proxied = config(&global).await.unwrap();
        assert_eq!(
            proxied.proxy_url.as_ref().map(ToString::to_string),
            Some("http://proxy.corp:3128/".to_owned())
        );
        // kube builds a client through an HTTP proxy, as kubectl does.
        assert!(Client::try_from(proxied).is_ok());
    }

    #[tokio::test]
    async fn a_kubeconfig_file_and_context_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            r#"apiVersion: v1
kind: Config
current-context: a
clusters:
  - name: c
    cluster: {server: "https://127.0.0.1:6443"}
users:
  - name: u
    user: {token: t}
contexts:
  - name: a
    context: {cluster: c, user: u, namespace: shop}
  - name: b
    context: {cluster: c, user: u, namespace: ops}
"#,
        )
        .unwrap();
        let mut global = GlobalArgs {
            kubeconfig: Some(path),
            ..GlobalArgs::default()
        };
        assert_eq!(
            offline_scope(&global).await.unwrap(),
            Scope::Namespace("shop".into())
        );
        global.context = Some("b".into());
        assert_eq!(config(&global).await.unwrap().default_namespace, "ops");
        global.context = Some("missing".into());
        assert!(offline_scope(&global).await.is_err());
        global.namespace = Some("shop".into());
        assert_eq!(
            offline_scope(&global).await.unwrap(),
            Scope::Namespace("shop".into())
        );
        global.namespace = None;
        let err = config(&global).await.unwrap_err();
        assert!(
            crate::error::explain(&err)
                .message
                .starts_with("cannot use kubeconfig context \"missing\""),
            "{err:#}"
        );
    }
}
