//! `status.conditions` in the metav1 Condition shape, built and updated in one place for both
//! resources: `lastTransitionTime` moves only when a condition's status flips, as Kubernetes
//! conventions (and `kubectl wait --for=condition=...` users) expect.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition of `type_`, transitioning now; the message is cut to what Events and printers
/// show.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.chars().take(1000).collect(),
        last_transition_time: Time(Timestamp::now()),
        observed_generation: generation,
    }
}

/// Puts `condition` in place of the one of its type (or adds it), keeping the old
/// `lastTransitionTime` when the status did not flip: a new reason or message is no transition.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(old) => {
            if old.status == condition.status {
                condition.last_transition_time = old.last_transition_time.clone();
            }
            *old = condition;
        }
        None => conditions.push(condition),
    }
}

/// `conditions` as they replace `previous`: each keeps its old `lastTransitionTime` when its
/// status did not flip (see [`set_condition`]); types not in `conditions` are dropped.
pub fn replace_conditions(previous: &[Condition], conditions: Vec<Condition>) -> Vec<Condition> {
    let mut kept: Vec<Condition> = previous
        .iter()
        .filter(|p| conditions.iter().any(|c| c.type_ == p.type_))
        .cloned()
        .collect();
    for c in conditions {
        set_condition(&mut kept, c);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let mut old = condition("Ready", true, "Accepted", "in force: 1 rule(s)", Some(1));
        old.last_transition_time = at(1_000);
        let mut conditions = vec![old];

        set_condition(
            &mut conditions,
            condition("Ready", true, "Accepted", "in force: 2 rule(s)", Some(2)),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].message, "in force: 2 rule(s)");
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert_eq!(conditions[0].last_transition_time, at(1_000), "no flip");

        set_condition(
            &mut conditions,
            condition("Ready", false, "Invalid", "ignored until fixed", Some(3)),
        );
        assert_eq!(conditions[0].status, "False");
        assert_ne!(conditions[0].last_transition_time, at(1_000), "a flip");

        set_condition(&mut conditions, condition("Other", true, "Why", "", None));
        assert_eq!(conditions.len(), 2, "a new type is added");
    }

    #[test]
    fn replacing_keeps_times_of_unflipped_types_and_drops_the_others() {
        let mut analyzing = condition("Analyzed", false, "Analyzing", "running", Some(1));
        analyzing.last_transition_time = at(1_000);
        let mut gone = condition("Gone", true, "Old", "", Some(1));
        gone.last_transition_time = at(1_000);
        let previous = vec![analyzing, gone];

        let failed = replace_conditions(
            &previous,
            vec![condition(
                "Analyzed",
                false,
                "InvestigationFailed",
                "x",
                Some(1),
            )],
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].reason, "InvestigationFailed");
        assert_eq!(failed[0].last_transition_time, at(1_000));

        let done = replace_conditions(
            &previous,
            vec![condition("Analyzed", true, "PatchSuggested", "y", Some(1))],
        );
        assert_ne!(done[0].last_transition_time, at(1_000));
    }
}
