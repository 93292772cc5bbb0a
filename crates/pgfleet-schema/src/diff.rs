//! The differ: what changed between two models, as a list of [`Change`]s (verb + object).
//! Placeholder: the full differ is being written.

use crate::model::Model;

/// One difference between the current and the desired model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {}

/// Compares `current` with `desired`.
pub fn diff(_current: &Model, _desired: &Model) -> Vec<Change> {
    Vec::new()
}
