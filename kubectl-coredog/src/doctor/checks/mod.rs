//! The checks: pure functions of what was read.

mod nodes;
mod webhook;
mod workload;

use super::{Check, ClusterSnapshot};

use nodes::{node_statuses, watchers};
use webhook::{certificate, endpoints, installed_elsewhere, webhook_configuration};
pub(crate) use workload::unmet_term;
pub use workload::workload_checks;

/// Names listed in one line before "and N more".
const NAMES_SHOWN: usize = 5;

fn names(list: &[String]) -> String {
    if list.len() <= NAMES_SHOWN {
        list.join(", ")
    } else {
        format!(
            "{} and {} more",
            list[..NAMES_SHOWN].join(", "),
            list.len() - NAMES_SHOWN
        )
    }
}

/// Whether a selector requirement's set-based `operator` (In, NotIn, Exists, DoesNotExist)
/// holds for a label's `value` (`None`: the label is absent); `None` for another operator.
/// Label selectors and node selector terms share these, as the API server reads them.
fn set_operator_holds(operator: &str, value: Option<&str>, values: &[String]) -> Option<bool> {
    let listed = value.is_some_and(|value| values.iter().any(|v| v == value));
    match operator {
        "In" => Some(listed),
        "NotIn" => Some(!listed),
        "Exists" => Some(value.is_some()),
        "DoesNotExist" => Some(value.is_none()),
        _ => None,
    }
}

fn denied(what: &str, message: &str) -> Check {
    Check::warn(format!(
        "cannot read {what}, so it was not checked: {message}"
    ))
}

pub fn cluster_checks(snapshot: &ClusterSnapshot) -> Vec<Check> {
    // Under other names, the rest would only repeat that the default ones are missing.
    if let Some(check) = installed_elsewhere(snapshot) {
        return vec![check];
    }
    let mut checks = vec![webhook_configuration(snapshot)];
    checks.extend(certificate(snapshot));
    checks.push(endpoints(snapshot));
    checks.push(watchers(snapshot));
    checks.extend(node_statuses(snapshot));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut() {
        let list: Vec<String> = (1..=7).map(|n| format!("n{n}")).collect();
        assert_eq!(names(&list), "n1, n2, n3, n4, n5 and 2 more");
    }
}
