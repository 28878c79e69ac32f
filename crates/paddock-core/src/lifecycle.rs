//! The runner lifecycle — the product's contract (ARCHITECTURE.md §1):
//!
//! ```text
//! Creating → Provisioning → Running → Stopping → Stopped → Destroying → Destroyed
//!                  \            |          \         |
//!                   `---------> Errored <---`--------'      (Errored → Destroying allowed)
//! Stopped → Provisioning (restart)
//! Running → Destroying (a destroy of a running runner: its teardown stops it)
//! ```
//!
//! [`transition`] is the one place that decides whether a move is legal.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    Creating,
    Provisioning,
    Running,
    Stopping,
    Stopped,
    Destroying,
    Destroyed,
    Errored,
}

impl RunnerState {
    pub const ALL: [RunnerState; 8] = [
        RunnerState::Creating,
        RunnerState::Provisioning,
        RunnerState::Running,
        RunnerState::Stopping,
        RunnerState::Stopped,
        RunnerState::Destroying,
        RunnerState::Destroyed,
        RunnerState::Errored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Creating => "creating",
            RunnerState::Provisioning => "provisioning",
            RunnerState::Running => "running",
            RunnerState::Stopping => "stopping",
            RunnerState::Stopped => "stopped",
            RunnerState::Destroying => "destroying",
            RunnerState::Destroyed => "destroyed",
            RunnerState::Errored => "errored",
        }
    }

    pub fn parse(s: &str) -> Option<RunnerState> {
        RunnerState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A runner that holds (or is acquiring) resources on a backend.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunnerState::Creating
                | RunnerState::Provisioning
                | RunnerState::Running
                | RunnerState::Stopping
        )
    }

    pub fn is_terminal(self) -> bool {
        self == RunnerState::Destroyed
    }
}

impl fmt::Display for RunnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `from → to` is an edge of the lifecycle graph.
fn is_edge(from: RunnerState, to: RunnerState) -> bool {
    use RunnerState::*;
    matches!(
        (from, to),
        (Creating, Provisioning)
            | (Provisioning, Running)
            | (Running, Stopping)
            | (Stopping, Stopped)
            | (Stopped, Destroying)
            | (Running, Destroying)
            | (Destroying, Destroyed)
            | (Provisioning, Errored)
            | (Running, Errored)
            | (Stopping, Errored)
            | (Stopped, Errored)
            | (Errored, Destroying)
            | (Stopped, Provisioning)
    )
}

/// The single lifecycle transition function: returns the new state, or the refusal.
pub fn transition(from: RunnerState, to: RunnerState) -> Result<RunnerState, CoreError> {
    if is_edge(from, to) {
        Ok(to)
    } else {
        Err(CoreError::IllegalTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::RunnerState::*;
    use super::*;

    /// Every legal edge, written out by hand from the diagram above.
    const LEGAL: &[(RunnerState, RunnerState)] = &[
        (Creating, Provisioning),
        (Provisioning, Running),
        (Provisioning, Errored),
        (Running, Stopping),
        (Running, Errored),
        (Running, Destroying),
        (Stopping, Stopped),
        (Stopping, Errored),
        (Stopped, Provisioning),
        (Stopped, Destroying),
        (Stopped, Errored),
        (Destroying, Destroyed),
        (Errored, Destroying),
    ];

    #[test]
    fn every_pair_of_states_is_legal_exactly_when_listed() {
        let mut checked = 0;
        for from in RunnerState::ALL {
            for to in RunnerState::ALL {
                let expected = LEGAL.contains(&(from, to));
                let got = transition(from, to);
                match (expected, got) {
                    (true, Ok(s)) => assert_eq!(s, to),
                    (false, Err(CoreError::IllegalTransition { from: f, to: t })) => {
                        assert_eq!((f, t), (from, to))
                    }
                    (e, g) => panic!("{from} -> {to}: expected legal={e}, got {g:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 64);
    }

    #[test]
    fn destroyed_is_a_sink_and_self_loops_are_illegal() {
        for s in RunnerState::ALL {
            assert!(transition(Destroyed, s).is_err());
            assert!(transition(s, s).is_err(), "{s} -> {s}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in RunnerState::ALL {
            assert_eq!(RunnerState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(RunnerState::parse("Running"), None);
    }
}
