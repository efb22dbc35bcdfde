//! The one error type of the core. The Python layer maps each variant onto one exception class
//! (`src/python/errors.rs`), so every failure reaching Python names its field.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// A caller-supplied value is malformed; `field` names it the way the caller spelled it and
    /// `message` is the full text shown to the user (it names the field too).
    #[error("{message}")]
    InvalidInput { field: String, message: String },
    /// No assignment satisfies the constraints (scipy's wording, kept for drop-in compatibility).
    #[error("{0}")]
    Infeasible(String),
    /// A model id that the router or tracker was never told about.
    #[error("unknown model id {0:?}")]
    UnknownModel(String),
    /// Every eligible model is full and so is its queue; retrying after the hint may succeed.
    #[error("{message}")]
    NoCapacity { message: String, retry_after_s: f64 },
    /// The shared load backend (Redis) cannot be reached and the tracker fails closed.
    #[error("{0}")]
    BackendUnavailable(String),
}

impl Error {
    /// `field: reason`, the usual shape of an input error.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Error::InvalidInput {
            message: format!("{field}: {reason}"),
            field,
        }
    }

    /// An input error whose text is fixed by a compatibility promise (scipy's messages).
    pub fn invalid_verbatim(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A count given as a signed integer (as Python passes it): −1 is an input error naming
/// `field`, not an overflow.
pub fn non_negative(field: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::invalid(field, format!("must be >= 0, got {value}")))
}

/// One of a closed set of names (`all`, spelled by `name`); the error names `field` and lists
/// every valid spelling, so a typo is fixed from the message alone.
pub fn parse_choice<T: Copy>(
    field: &str,
    what: &str,
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T> {
    all.iter().copied().find(|&v| name(v) == s).ok_or_else(|| {
        let valid: Vec<&str> = all.iter().map(|&v| name(v)).collect();
        Error::invalid(
            field,
            format!("unknown {what} {s:?}; valid: {}", valid.join(", ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_negative_names_the_field() {
        assert_eq!(non_negative("max_queue", 3), Ok(3));
        assert_eq!(non_negative("max_queue", 0), Ok(0));
        let err = non_negative("max_queue", -1).unwrap_err();
        assert_eq!(err, Error::invalid("max_queue", "must be >= 0, got -1"));
        assert_eq!(err.to_string(), "max_queue: must be >= 0, got -1");
    }
}
