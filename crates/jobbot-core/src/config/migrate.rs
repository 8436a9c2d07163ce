//! Migration of the old single-agent format (seed "Backward Compatibility").
use super::{ConfigDocument, ConfigProblem};

pub(super) fn migrate(_document: &mut ConfigDocument) -> Vec<ConfigProblem> {
    Vec::new()
}
