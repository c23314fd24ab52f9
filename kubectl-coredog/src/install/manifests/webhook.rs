//! The webhook's objects: its Deployment, Service, disruption budget, RBAC and the
//! MutatingWebhookConfiguration that sends pods to it.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, SecurityContext, Service, ServicePort,
    ServiceSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::parts::{
    empty_dir_volume, field_env, http_probe, match_labels, meta, resources, rule, runtime_default,
    strings, volume_mount,
};
use super::{
    LOG_FORMAT, Labels, NAMESPACE, Settings, TLS_SECRET, WEBHOOK, WEBHOOK_NAME, linux_nodes,
    selector_labels,
};

pub(super) fn pod_disruption_budget(labels: &Labels) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(WEBHOOK, true, labels.webhook()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(match_labels(selector_labels("webhook"))),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The webhook writes its CA into its own MutatingWebhookConfiguration's caBundle.
pub(super) fn webhook_cluster_role(labels: &Labels) -> ClusterRole {
    ClusterRole {
        metadata: meta(WEBHOOK, false, labels.webhook()),
        rules: Some(vec![rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &[WEBHOOK],
            &["get", "patch"],
        )]),
        aggregation_rule: None,
    }
}

/// The webhook keeps its CA and serving certificate in the TLS Secret. RBAC cannot limit
/// `create` by name: the name is not known before the object exists.
pub(super) fn webhook_role(labels: &Labels) -> Role {
    Role {
        metadata: meta(WEBHOOK, true, labels.webhook()),
        rules: Some(vec![
            rule(&[""], &["secrets"], &[], &["create"]),
            // delete: an update that sets ownerReferences needs it where the
            // OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
            rule(
                &[""],
                &["secrets"],
                &[TLS_SECRET],
                &["get", "update", "delete"],
            ),
        ]),
    }
}

pub(super) fn webhook_service(labels: &Labels) -> Service {
    Service {
        metadata: meta(WEBHOOK, true, labels.webhook()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels("webhook")),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: 443,
                target_port: Some(IntOrString::String("https".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub(super) fn webhook_deployment(
    settings: &Settings,
    host_dir: &str,
    labels: &Labels,
) -> Deployment {
    let args = strings(&[
        "webhook",
        "--listen",
        "[::]:8443",
        "--host-dir",
        host_dir,
        "--cert-secret",
        TLS_SECRET,
        "--webhook-configuration",
        WEBHOOK,
        "--service",
        WEBHOOK,
        "--log-format",
        LOG_FORMAT,
    ]);
    Deployment {
        metadata: meta(WEBHOOK, true, labels.webhook()),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            revision_history_limit: Some(5),
            selector: match_labels(selector_labels("webhook")),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.webhook()),
                    annotations: Some(BTreeMap::from([(
                        "kubectl.kubernetes.io/default-container".to_owned(),
                        "webhook".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(WEBHOOK.into()),
                    node_selector: linux_nodes(),
                    // The token is how the webhook manages its own certificate.
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: runtime_default(),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: "webhook".into(),
                        image: Some(settings.image.clone()),
                        image_pull_policy: Some("IfNotPresent".into()),
                        args: Some(args),
                        env: Some(vec![field_env("POD_NAMESPACE", "metadata.namespace")]),
                        ports: Some(vec![ContainerPort {
                            name: Some("https".into()),
                            container_port: 8443,
                            protocol: Some("TCP".into()),
                            ..ContainerPort::default()
                        }]),
                        liveness_probe: Some(http_probe("/healthz", "https", true, 10, 3)),
                        readiness_probe: Some(http_probe("/readyz", "https", true, 5, 2)),
                        resources: Some(resources("50m", "32Mi", "128Mi")),
                        security_context: Some(SecurityContext {
                            run_as_non_root: Some(true),
                            run_as_user: Some(65532),
                            read_only_root_filesystem: Some(true),
                            allow_privilege_escalation: Some(false),
                            capabilities: Some(Capabilities {
                                drop: Some(strings(&["ALL"])),
                                add: None,
                            }),
                            seccomp_profile: runtime_default(),
                            ..SecurityContext::default()
                        }),
                        volume_mounts: Some(vec![volume_mount("tmp", "/tmp", false)]),
                        ..Container::default()
                    }],
                    volumes: Some(vec![empty_dir_volume("tmp", "16Mi")]),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        topology_key: "kubernetes.io/hostname".into(),
                                        label_selector: Some(match_labels(selector_labels(
                                            "webhook",
                                        ))),
                                        ..PodAffinityTerm::default()
                                    },
                                },
                            ]),
                            required_during_scheduling_ignored_during_execution: None,
                        }),
                        ..Affinity::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// No caBundle: the webhook writes its CA there at start, and an apply that named the field
/// would take it over and clear it.
pub(super) fn webhook_configuration(
    settings: &Settings,
    labels: &Labels,
) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(WEBHOOK, false, labels.webhook()),
        webhooks: Some(vec![MutatingWebhook {
            name: WEBHOOK_NAME.into(),
            admission_review_versions: strings(&["v1", "v1beta1"]),
            client_config: WebhookClientConfig {
                service: Some(ServiceReference {
                    name: WEBHOOK.into(),
                    namespace: NAMESPACE.into(),
                    path: Some("/mutate".into()),
                    port: Some(443),
                }),
                ..WebhookClientConfig::default()
            },
            side_effects: "None".into(),
            failure_policy: Some(settings.failure_policy.as_str().into()),
            timeout_seconds: Some(5),
            reinvocation_policy: Some("IfNeeded".into()),
            match_policy: Some("Equivalent".into()),
            rules: Some(vec![RuleWithOperations {
                operations: Some(strings(&["CREATE"])),
                api_groups: Some(strings(&[""])),
                api_versions: Some(strings(&["v1"])),
                resources: Some(strings(&["pods"])),
                scope: Some("Namespaced".into()),
            }]),
            namespace_selector: Some(namespace_selector()),
            ..MutatingWebhook::default()
        }]),
    }
}

/// The namespaces the webhook is sent pods of: not kube-system's or CoreDog's, not those
/// labelled `coredog.io/webhook=disabled`, not those whose Pod Security level forbids hostPath.
pub fn namespace_selector() -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(strings(&["kube-system", NAMESPACE])),
            },
            LabelSelectorRequirement {
                key: coredog_core::annotations::WEBHOOK_NAMESPACE_LABEL.into(),
                operator: "NotIn".into(),
                values: Some(strings(&[coredog_core::annotations::WEBHOOK_DISABLED])),
            },
            LabelSelectorRequirement {
                key: coredog_core::annotations::POD_SECURITY_ENFORCE_LABEL.into(),
                operator: "NotIn".into(),
                values: Some(strings(
                    &coredog_core::annotations::LEVELS_FORBIDDING_HOST_PATH,
                )),
            },
        ]),
    }
}
