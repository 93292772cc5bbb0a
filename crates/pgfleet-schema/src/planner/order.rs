//! Dependency orders: tables are created parents first and dropped referencing (and partitions)
//! first; views are dropped dependents first and created dependencies first. Ties go by name, so
//! every order is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{ConstraintKind, Model, QualName};

/// Orders `nodes` so that each comes after the nodes `deps` names for it (only those in `nodes`
/// count); among ready nodes the smallest name goes first. Returns the order and, separately, the
/// nodes caught in cycles (by name).
pub(super) fn toposort(
    nodes: &BTreeSet<QualName>,
    deps: impl Fn(&QualName) -> Vec<QualName>,
) -> (Vec<QualName>, Vec<QualName>) {
    let mut waiting: BTreeMap<&QualName, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<QualName, Vec<&QualName>> = BTreeMap::new();
    for n in nodes {
        let mut count = 0;
        for d in deps(n) {
            if &d != n && nodes.contains(&d) {
                count += 1;
                dependents.entry(d).or_default().push(n);
            }
        }
        waiting.insert(n, count);
    }
    let mut ready: BTreeSet<&QualName> = waiting
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    while let Some(n) = ready.pop_first() {
        out.push(n.clone());
        for m in dependents.get(n).into_iter().flatten() {
            let c = waiting.get_mut(m).expect("node");
            *c -= 1;
            if *c == 0 {
                ready.insert(m);
            }
        }
    }
    let done: BTreeSet<&QualName> = out.iter().collect();
    let left = nodes
        .iter()
        .filter(|n| !done.contains(n))
        .cloned()
        .collect();
    (out, left)
}

fn ranks(order: impl IntoIterator<Item = QualName>) -> BTreeMap<QualName, u32> {
    order
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i as u32))
        .collect()
}

/// Creation order of created tables: a partition after its parent.
pub(super) fn create_order(des: &Model, created: &BTreeSet<QualName>) -> BTreeMap<QualName, u32> {
    let (order, left) = toposort(created, |t| {
        des.tables
            .get(t)
            .and_then(|t| t.partition_of.as_ref())
            .map(|p| vec![p.parent.clone()])
            .unwrap_or_default()
    });
    ranks(order.into_iter().chain(left))
}

/// Splits the tables to drop into those dropped before tables are created (replaced tables,
/// partitions of tables that stay — so new partitions cannot overlap them —, and dropped tables that
/// are partitions of, or reference, one of those) and the rest.
pub(super) fn split_drops(
    cur: &Model,
    replaced: &BTreeSet<QualName>,
    dropped: &BTreeSet<QualName>,
) -> (BTreeSet<QualName>, BTreeSet<QualName>) {
    let mut early = replaced.clone();
    early.extend(
        dropped
            .iter()
            .filter(|t| {
                cur.tables
                    .get(*t)
                    .and_then(|t| t.partition_of.as_ref())
                    .is_some_and(|p| !dropped.contains(&p.parent))
            })
            .cloned(),
    );
    loop {
        let more: Vec<QualName> = dropped
            .iter()
            .filter(|t| !early.contains(*t))
            .filter(|t| {
                cur.tables.get(*t).is_some_and(|table| {
                    table
                        .partition_of
                        .as_ref()
                        .is_some_and(|p| early.contains(&p.parent))
                        || table
                            .constraints
                            .values()
                            .any(|c| c.references.as_ref().is_some_and(|r| early.contains(r)))
                })
            })
            .cloned()
            .collect();
        if more.is_empty() {
            break;
        }
        early.extend(more);
    }
    let late = dropped.difference(&early).cloned().collect();
    (early, late)
}

/// The order tables are dropped in: a table that references another (foreign key) or is a
/// partition of another goes first. Foreign keys inside a reference cycle are dropped explicitly
/// before any table.
#[derive(Debug, Default)]
pub(super) struct DropOrder {
    /// Rank of each table.
    pub(super) rank: BTreeMap<QualName, u32>,
    /// Foreign keys (table, constraint) to drop first to break reference cycles.
    pub(super) cycle_fks: Vec<(QualName, String)>,
}

impl DropOrder {
    pub(super) fn new(cur: &Model, set: &BTreeSet<QualName>) -> Self {
        if set.is_empty() {
            return Self::default();
        }
        // Partitions of each table in the set: a foreign key into a partitioned table depends on
        // each of its partitions too.
        let mut children: BTreeMap<&QualName, Vec<&QualName>> = BTreeMap::new();
        for x in set {
            if let Some(p) = cur.tables.get(x).and_then(|t| t.partition_of.as_ref()) {
                children.entry(&p.parent).or_default().push(x);
            }
        }
        let with_partitions = |r: &QualName| {
            let mut out = Vec::new();
            let mut stack = vec![r.clone()];
            while let Some(n) = stack.pop() {
                if out.len() > set.len() {
                    break;
                }
                if set.contains(&n) {
                    out.push(n.clone());
                }
                stack.extend(children.get(&n).into_iter().flatten().map(|c| (*c).clone()));
            }
            out
        };
        let edges = |fks: bool| {
            let mut before: BTreeMap<QualName, Vec<QualName>> = BTreeMap::new();
            for x in set {
                let Some(t) = cur.tables.get(x) else { continue };
                if fks {
                    for c in t.constraints.values() {
                        let Some(r) = &c.references else { continue };
                        for target in with_partitions(r) {
                            if &target != x {
                                before.entry(target).or_default().push(x.clone());
                            }
                        }
                    }
                }
                if let Some(p) = &t.partition_of
                    && set.contains(&p.parent)
                {
                    before.entry(p.parent.clone()).or_default().push(x.clone());
                }
            }
            before
        };
        let all = edges(true);
        let (mut order, left) = toposort(set, |n| all.get(n).cloned().unwrap_or_default());
        let mut cycle_fks = Vec::new();
        if !left.is_empty() {
            let left_set: BTreeSet<QualName> = left.into_iter().collect();
            for x in &left_set {
                for (cn, c) in &cur.tables[x].constraints {
                    if c.kind == ConstraintKind::ForeignKey
                        && c.references
                            .as_ref()
                            .is_some_and(|r| r != x && left_set.contains(r))
                    {
                        cycle_fks.push((x.clone(), cn.clone()));
                    }
                }
            }
            let partitions = edges(false);
            let (rest, still) = toposort(&left_set, |n| {
                partitions.get(n).cloned().unwrap_or_default()
            });
            order.extend(rest);
            order.extend(still);
        }
        DropOrder {
            rank: ranks(order),
            cycle_fks,
        }
    }
}

/// Drop order of views: a view that depends on another goes first.
pub(super) fn view_drop_order(cur: &Model, set: &BTreeSet<QualName>) -> BTreeMap<QualName, u32> {
    let mut before: BTreeMap<QualName, Vec<QualName>> = BTreeMap::new();
    for v in set {
        for d in cur.views.get(v).map(|v| &v.depends_on[..]).unwrap_or(&[]) {
            before.entry(d.clone()).or_default().push(v.clone());
        }
    }
    let (order, left) = toposort(set, |n| before.get(n).cloned().unwrap_or_default());
    ranks(order.into_iter().chain(left))
}

/// Creation order of views: a view after the views it depends on.
pub(super) fn view_create_order(des: &Model, set: &BTreeSet<QualName>) -> BTreeMap<QualName, u32> {
    let (order, left) = toposort(set, |v| {
        des.views
            .get(v)
            .map(|v| v.depends_on.clone())
            .unwrap_or_default()
    });
    ranks(order.into_iter().chain(left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn toposort_breaks_ties_by_name_and_reports_cycles() {
        let set: BTreeSet<QualName> = ["public.a", "public.b", "public.c", "public.d"]
            .iter()
            .map(|s| qn(s))
            .collect();
        // a needs c; b and d form a cycle.
        let (order, left) = toposort(&set, |n| match n.name.as_str() {
            "a" => vec![qn("public.c")],
            "b" => vec![qn("public.d")],
            "d" => vec![qn("public.b")],
            _ => vec![],
        });
        assert_eq!(order, [qn("public.c"), qn("public.a")]);
        assert_eq!(left, [qn("public.b"), qn("public.d")]);
    }

    #[test]
    fn drop_cycles_drop_their_foreign_keys_first() {
        let mut m = model();
        let mut a = table(&[("id", "integer"), ("b", "integer")]);
        a.constraints.insert(
            "a_b_fkey".into(),
            fk("FOREIGN KEY (b) REFERENCES public.b(id)", "public.b"),
        );
        let mut b = table(&[("id", "integer"), ("a", "integer")]);
        b.constraints.insert(
            "b_a_fkey".into(),
            fk("FOREIGN KEY (a) REFERENCES public.a(id)", "public.a"),
        );
        m.tables.insert(qn("public.a"), a);
        m.tables.insert(qn("public.b"), b);
        let set = m.tables.keys().cloned().collect();
        let order = DropOrder::new(&m, &set);
        assert_eq!(order.cycle_fks.len(), 2);
        assert_eq!(order.rank.len(), 2);
    }
}
