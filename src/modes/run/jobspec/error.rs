//! Job-file errors: each one says where (`file:line:col`) and what.

use std::fmt;

use super::source::Location;

/// One problem in a job file (or a variable file / `-var` flag).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobFileError {
    /// `None` only for inputs that have no file, such as a `-var` flag.
    pub location: Option<Location>,
    pub message: String,
}

impl JobFileError {
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        JobFileError {
            location: Some(location),
            message: message.into(),
        }
    }

    pub fn unlocated(message: impl Into<String>) -> Self {
        JobFileError {
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in one pass over a job file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JobFileErrors(pub Vec<JobFileError>);

impl JobFileErrors {
    pub fn one(error: JobFileError) -> Self {
        JobFileErrors(vec![error])
    }
}

impl From<JobFileError> for JobFileErrors {
    fn from(error: JobFileError) -> Self {
        JobFileErrors::one(error)
    }
}

impl fmt::Display for JobFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
