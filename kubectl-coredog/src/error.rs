//! Errors as the user reads them: one line saying what went wrong, and a hint saying what to do.
//!
//! Commands return `anyhow::Error`s built from context strings, [`UserError`]s and the errors of
//! the libraries below; [`explain`] turns that chain into the two lines `main` prints, reading
//! Kubernetes API errors for their message and status instead of their debug form.

use std::error::Error as StdError;
use std::fmt;

use thiserror::Error;

/// An error the user can act on: its message, and what to do about it.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
    /// What caused it, explained after the message. Not a `#[source]`: `explain` walks it itself,
    /// so that a Kubernetes error inside keeps its type.
    pub cause: Option<anyhow::Error>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            cause: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn cause(mut self, cause: impl Into<anyhow::Error>) -> Self {
        self.cause = Some(cause.into());
        self
    }
}

/// `Err(UserError)` as an `anyhow::Error`, for `?` and `return Err(..)`.
pub fn user(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    UserError::new(message).hint(hint).into()
}

/// Adds a hint to any error while keeping its message.
pub trait HintExt<T> {
    fn hint(self, message: impl Into<String>, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> HintExt<T> for Result<T, E> {
    fn hint(self, message: impl Into<String>, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|err| UserError::new(message).hint(hint).cause(err).into())
    }
}

/// What `main` prints for an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

pub fn explain(err: &anyhow::Error) -> Explanation {
    let mut parts = Vec::new();
    let mut hint = None;
    walk(err, &mut parts, &mut hint);
    Explanation {
        message: parts.join(": "),
        hint,
    }
}

/// Adds a part unless the one before already says it (many errors repeat their source).
fn push(parts: &mut Vec<String>, part: String) {
    if !parts.last().is_some_and(|last| last.contains(&part)) {
        parts.push(part);
    }
}

fn walk(err: &anyhow::Error, parts: &mut Vec<String>, hint: &mut Option<String>) {
    for cause in err.chain() {
        if let Some(user) = cause.downcast_ref::<UserError>() {
            push(parts, user.message.clone());
            if hint.is_none() {
                hint.clone_from(&user.hint);
            }
            if let Some(inner) = &user.cause {
                walk(inner, parts, hint);
            }
            return;
        }
        if let Some(kube) = cause.downcast_ref::<kube::Error>() {
            push(parts, kube_message(kube));
            if hint.is_none() {
                *hint = kube_hint(kube);
            }
            return;
        }
        push(parts, cause.to_string());
    }
}

/// Whether the API server answered 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Whether the API server refused for lack of permission.
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 403 || status.code == 401)
}

/// A Kubernetes error as one phrase: the API server's own message, or what failed on the way.
pub fn kube_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            if !status.message.is_empty() {
                status.message.clone()
            } else if !status.reason.is_empty() {
                format!(
                    "the API server answered {} ({})",
                    status.code, status.reason
                )
            } else {
                format!("the API server answered {}", status.code)
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            format!(
                "cannot reach the Kubernetes API server ({})",
                innermost(err)
            )
        }
        kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => {
            format!("no usable kubeconfig ({})", innermost(err))
        }
        kube::Error::Auth(_) => format!("cannot authenticate to the cluster ({})", innermost(err)),
        other => other.to_string(),
    }
}

fn kube_hint(err: &kube::Error) -> Option<String> {
    let hint = match err {
        kube::Error::Api(status) if status.code == 401 => {
            "the cluster refused your credentials: log in again, or pick another --context"
        }
        kube::Error::Api(status) if status.code == 403 => {
            "ask a cluster administrator for that permission, or use another --context"
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "check that the cluster is up and that --context/--kubeconfig name it (`kubectl cluster-info`)"
        }
        kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => {
            "set KUBECONFIG or pass --kubeconfig FILE (and --context NAME)"
        }
        kube::Error::Auth(_) => "refresh your credentials (for example log in again)",
        _ => return None,
    };
    Some(hint.to_owned())
}

fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.to_owned(),
            reason: "Forbidden".to_owned(),
            ..Default::default()
        }))
    }

    #[test]
    fn api_errors_read_as_their_message_with_a_hint() {
        let err = Err::<(), _>(api_error(403, "secrets \"x\" is forbidden"))
            .context("cannot read Secret coredog-system/x")
            .unwrap_err();
        let explained = explain(&err);
        assert_eq!(
            explained.message,
            "cannot read Secret coredog-system/x: secrets \"x\" is forbidden"
        );
        assert!(explained.hint.unwrap().contains("permission"));
    }

    #[test]
    fn user_errors_keep_their_hint_and_cause() {
        let err: anyhow::Error = UserError::new("no dump matches 12")
            .hint("run `kubectl coredog list -A`")
            .cause(api_error(404, "not found"))
            .into();
        let err = Err::<(), _>(err).context("fetch").unwrap_err();
        assert_eq!(
            explain(&err).to_string(),
            "error: fetch: no dump matches 12: not found\nhint: run `kubectl coredog list -A`"
        );
        let plain = anyhow::anyhow!("plain");
        assert_eq!(explain(&plain).to_string(), "error: plain");
    }

    #[test]
    fn status_codes() {
        assert!(is_not_found(&api_error(404, "")));
        assert!(is_forbidden(&api_error(403, "")));
        assert!(!is_not_found(&api_error(500, "")));
        assert_eq!(
            kube_message(&api_error(500, "")),
            "the API server answered 500 (Forbidden)"
        );
    }
}
