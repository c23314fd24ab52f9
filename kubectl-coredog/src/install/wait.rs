//! `install --wait`: until the webhook Deployment and the watcher DaemonSet are ready.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::{Api, Client};

use crate::error::user;
use crate::install::manifests::{NAMESPACE, WATCHER, WEBHOOK};
use crate::output::{Console, interactive};

const POLL: Duration = Duration::from_secs(2);

/// How far a rollout is: `ready` of `desired`, and whether it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rollout {
    pub ready: i32,
    pub desired: i32,
    pub done: bool,
}

pub fn deployment_rollout(deployment: &Deployment) -> Rollout {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return Rollout {
            desired,
            ..Rollout::default()
        };
    };
    let ready = status.ready_replicas.unwrap_or(0);
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    Rollout {
        ready,
        desired,
        done: observed
            && status.updated_replicas.unwrap_or(0) >= desired
            && ready >= desired
            && status.replicas.unwrap_or(0) == desired,
    }
}

pub fn daemon_set_rollout(daemon_set: &DaemonSet) -> Rollout {
    let Some(status) = &daemon_set.status else {
        return Rollout::default();
    };
    let desired = status.desired_number_scheduled;
    let observed =
        status.observed_generation.unwrap_or(0) >= daemon_set.metadata.generation.unwrap_or(0);
    Rollout {
        ready: status.number_ready,
        desired,
        done: observed
            && status.updated_number_scheduled.unwrap_or(0) >= desired
            && status.number_ready >= desired,
    }
}

fn bar(progress: &MultiProgress, name: &str) -> ProgressBar {
    let bar = progress.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:20}] {pos}/{len} ready {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar
}

pub async fn wait_ready(
    client: &Client,
    timeout: Duration,
    objects_printed: bool,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let progress = MultiProgress::with_draw_target(if interactive() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let webhook_bar = bar(&progress, "webhook");
    let watcher_bar = bar(&progress, "watcher");
    let started = Instant::now();
    loop {
        let deployment = deployments
            .get(WEBHOOK)
            .await
            .with_context(|| format!("cannot read Deployment {NAMESPACE}/{WEBHOOK}"))?;
        let daemon_set = daemon_sets
            .get(WATCHER)
            .await
            .with_context(|| format!("cannot read DaemonSet {NAMESPACE}/{WATCHER}"))?;
        let webhook = deployment_rollout(&deployment);
        let watcher = daemon_set_rollout(&daemon_set);
        for (bar, rollout) in [(&webhook_bar, webhook), (&watcher_bar, watcher)] {
            bar.set_length(u64::try_from(rollout.desired).unwrap_or(0));
            bar.set_position(u64::try_from(rollout.ready).unwrap_or(0));
        }
        if webhook.done && watcher.done {
            webhook_bar.finish();
            watcher_bar.finish();
            let ready = format!(
                "ready: webhook {}/{} replicas, watcher on {}/{} nodes",
                webhook.ready, webhook.desired, watcher.ready, watcher.desired
            );
            // Under `-o yaml|json` stdout holds the objects alone, for a pipe to read.
            if objects_printed {
                console.note(&ready);
                return Ok(());
            }
            return console.line(&ready);
        }
        if started.elapsed() >= timeout {
            webhook_bar.abandon();
            watcher_bar.abandon();
            return Err(user(
                format!(
                    "CoreDog is not ready after {}s: webhook {}/{} replicas, watcher on {}/{} nodes",
                    timeout.as_secs(),
                    webhook.ready,
                    webhook.desired,
                    watcher.ready,
                    watcher.desired
                ),
                format!(
                    "`kubectl coredog doctor` says why; `kubectl -n {NAMESPACE} get pods` shows the pods"
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts() {
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1}
        }))
        .unwrap();
        assert_eq!(
            deployment_rollout(&deployment),
            Rollout {
                ready: 1,
                desired: 2,
                done: false
            }
        );
        let daemon_set: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"generation": 1},
            "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                       "numberMisscheduled": 0, "numberReady": 3, "updatedNumberScheduled": 3}
        }))
        .unwrap();
        assert!(daemon_set_rollout(&daemon_set).done);
    }
}
