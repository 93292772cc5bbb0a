//! The differ: what changed between two models, as a list of [`Change`]s (verb + object).
//!
//! [`diff`] compares the `current` model (what a database has) with the `desired` one (what it
//! should have) and lists every difference, in a deterministic order. The list is **complete**: it
//! already contains the changes that follow from other changes, so the planner only has to order
//! and render them:
//!
//! - objects that must be recreated because something they depend on is recreated or reshaped
//!   (views over a table whose column type changes; foreign keys into a replaced table or a table
//!   whose primary key or unique constraint is recreated; policies and triggers that mention a
//!   column whose type changes; indexes and constraints on a column that is dropped and re-added);
//! - every sub-object of a created or replaced table (constraints, indexes, triggers, policies,
//!   row-level security flags);
//! - comments: one [`Change::AlterComment`] for every object that is created (or recreated) with a
//!   comment, and for every existing object whose comment changed.
//!
//! A changed object that cannot be altered in place appears as a drop followed by an add of the same
//! name (constraints, triggers, policies, views), or as a `Replace*` variant when the planner needs to
//! know it is a replacement (tables, columns, indexes, enums, domains, functions).
//!
//! Definitions are compared as text: both models are read from PostgreSQL with an empty
//! `search_path`, so PostgreSQL itself has normalized them.
//!
//! Layout: [`diff`] (here) runs the differ over each kind of object in turn. The differ's state and
//! what it learns about both models up front are in `differ`; each kind of object has its module
//! (`schemas`, `extensions`, `types` for enums and domains, `sequences`, `functions`, `tables` with
//! their columns, constraints, triggers and policies, `indexes` of tables and materialized views,
//! `views`); `compare` says when two versions of an object differ, `mentions` when a definition
//! mentions a column. The [`Change`] type itself is in [`crate::change`], re-exported here.

pub(crate) mod compare;
mod differ;
mod extensions;
mod functions;
mod indexes;
mod mentions;
mod schemas;
mod sequences;
mod tables;
mod types;
mod views;

pub use crate::change::{Change, CommentTarget, EnumValuePosition, TypeUse};
use crate::model::Model;
use differ::Differ;

/// Compares `current` with `desired` and lists what must change, deterministically.
///
/// Identical models give an empty list. Never fails: anything PostgreSQL can represent in the model
/// has a change that produces it.
pub fn diff(current: &Model, desired: &Model) -> Vec<Change> {
    let mut d = Differ::new(current, desired);
    d.schemas();
    d.extensions();
    d.enums();
    d.domains();
    d.sequences();
    d.functions();
    d.tables();
    d.views();
    d.out
}
