//! When two versions of an object differ in a way that needs a change, and which change can make
//! one into the other. Pure predicates on model values.

use crate::model::{Constraint, Index, Policy, Sequence, View};

/// True when every label of `cur` appears in `des`, in the same order.
pub(super) fn is_subsequence(cur: &[String], des: &[String]) -> bool {
    let mut it = des.iter();
    cur.iter().all(|c| it.any(|d| d == c))
}

/// True when two sequences have the same options (ownership and comment aside).
pub(super) fn same_sequence_options(a: &Sequence, b: &Sequence) -> bool {
    a.data_type == b.data_type
        && a.start == b.start
        && a.increment == b.increment
        && a.min_value == b.min_value
        && a.max_value == b.max_value
        && a.cache == b.cache
        && a.cycle == b.cycle
}

/// True when a constraint must be dropped and added again (comment and validity aside).
pub(super) fn constraint_changed(c: &Constraint, d: &Constraint) -> bool {
    c.kind != d.kind || c.definition != d.definition
}

/// True when an index must be rebuilt: its definition changed, or it is invalid and should not be.
pub(super) fn index_changed(c: &Index, d: &Index) -> bool {
    c.definition != d.definition || (!c.valid && d.valid)
}

/// True when a policy must be dropped and created again (comment aside).
pub(super) fn policy_changed(c: &Policy, d: &Policy) -> bool {
    c.command != d.command
        || c.permissive != d.permissive
        || c.roles != d.roles
        || c.using != d.using
        || c.with_check != d.with_check
}

/// True when a view must be recreated or replaced (comment and indexes aside).
pub(super) fn view_changed(c: &View, d: &View) -> bool {
    c.materialized != d.materialized
        || c.definition != d.definition
        || c.columns != d.columns
        || c.options != d.options
}

/// True when `CREATE OR REPLACE VIEW` turns `cur` into `des`: both plain views, and the current
/// columns are a prefix of the desired ones (same names and types).
pub(super) fn or_replaceable(cur: &View, des: &View) -> bool {
    !cur.materialized && !des.materialized && columns_kept(cur, des)
}

/// True when every current column of a view is still there, in place, with its type.
pub(crate) fn columns_kept(cur: &View, des: &View) -> bool {
    des.columns.starts_with(&cur.columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsequences() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(is_subsequence(&s(&["a", "c"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["c", "a"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["a", "d"]), &s(&["a", "b", "c"])));
        assert!(is_subsequence(&s(&[]), &s(&["a"])));
    }
}
