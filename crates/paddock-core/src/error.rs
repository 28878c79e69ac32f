use crate::lifecycle::RunnerState;

/// Every way a domain rule can refuse something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// Input that breaks a rule; `field` is the JSON path of the offending value.
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        message: String,
        /// A narrower machine-readable code (`details.error_code` on the wire).
        code: Option<&'static str>,
    },
    /// A request that is well-formed but conflicts with the current state of a resource.
    #[error("{message}")]
    Conflict { message: String },
    /// A runner lifecycle transition the state machine does not allow.
    #[error("illegal runner transition from {from} to {to}")]
    IllegalTransition { from: RunnerState, to: RunnerState },
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::Invalid {
            field: field.into(),
            message: message.into(),
            code: None,
        }
    }

    pub fn invalid_code(
        field: impl Into<String>,
        message: impl Into<String>,
        code: &'static str,
    ) -> Self {
        CoreError::Invalid {
            field: field.into(),
            message: message.into(),
            code: Some(code),
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
