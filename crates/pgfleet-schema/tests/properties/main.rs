//! Properties of the pure core, on generated models (see [`generate`]): a model has no difference
//! with itself; the plan does not depend on the order the model's objects were read in; a plan from
//! scratch creates every object after what it depends on.
//!
//! `PGFLEET_PROPTEST_CASES` sets the number of cases per property (default 256).

mod generate;

use pgfleet_schema::model::Model;
use pgfleet_schema::planner::{self, PlanOptions};
use pgfleet_schema::quote::ident;
use pgfleet_schema::{Plan, diff};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use generate::{Obj, model_of, spec};

fn runner() -> TestRunner {
    let cases = std::env::var("PGFLEET_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Online (the default), offline, and additive-only planning.
fn all_options() -> [PlanOptions; 3] {
    [
        PlanOptions::default(),
        PlanOptions {
            online: false,
            ..PlanOptions::default()
        },
        PlanOptions {
            additive_only: true,
            ..PlanOptions::default()
        },
    ]
}

/// (a) The diff of a model with itself is empty, and so is every plan from it to itself.
#[test]
fn a_model_has_no_difference_with_itself() {
    runner()
        .run(&spec(), |spec| {
            let m = spec.build().model();
            let changes = diff::diff(&m, &m);
            prop_assert!(changes.is_empty(), "{changes:#?}");
            for opts in all_options() {
                let plan = planner::plan(&m, &m.clone(), &opts);
                prop_assert!(plan.is_empty(), "{opts:?}:\n{}", plan.to_sql());
            }
            Ok(())
        })
        .unwrap();
}

/// (b) Building the same model by inserting its objects in two random orders (sub-objects of
/// tables included, and each view's `depends_on` reversed in one of them) gives no difference
/// between the two, and the same plans, byte for byte: from nothing, from another generated model,
/// and to it.
#[test]
fn plans_do_not_depend_on_the_order_objects_were_read_in() {
    let orders = (spec(), spec()).prop_flat_map(|(s, other)| {
        let n = s.build().inserts.len();
        let identity: Vec<usize> = (0..n).collect();
        (
            Just(s),
            Just(other),
            Just(identity.clone()).prop_shuffle(),
            Just(identity).prop_shuffle(),
        )
    });
    runner()
        .run(&orders, |(spec, other, first, second)| {
            let inserts = spec.build().inserts;
            let a = model_of(first.iter().map(|&i| &inserts[i]));
            let mut b = model_of(second.iter().map(|&i| &inserts[i]));
            for v in b.views.values_mut() {
                v.depends_on.reverse();
            }
            let other = other.build().model();
            let empty = Model::default();
            prop_assert!(diff::diff(&a, &b).is_empty());
            prop_assert!(diff::diff(&b, &a).is_empty());
            for opts in all_options() {
                for (from_a, from_b, to_a, to_b, what) in [
                    (&empty, &empty, &a, &b, "from nothing"),
                    (&other, &other, &a, &b, "from another model"),
                    (&a, &b, &other, &other, "to another model"),
                ] {
                    let pa = planner::plan(from_a, to_a, &opts);
                    let pb = planner::plan(from_b, to_b, &opts);
                    prop_assert_eq!(
                        &pa,
                        &pb,
                        "{} ({:?}):\n{}\n---- versus ----\n{}",
                        what,
                        opts,
                        pa.to_sql(),
                        pb.to_sql()
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

/// (c) A plan from nothing (or from a fresh database that has the schemas and extensions already)
/// creates every object of a generated model with exactly one step, after every object it depends
/// on: schemas before what is in them; extensions, enums and domains before the tables (columns),
/// domains and functions that use them; sequences and functions before the tables whose defaults
/// call them; a table before its partitions, constraints, indexes, triggers and policies; a table
/// and its primary key before the foreign keys that reference it; functions before the triggers,
/// domain checks, policies and views that call them; views after the relations they read;
/// materialized views before their indexes.
#[test]
fn objects_are_created_after_what_they_depend_on() {
    runner()
        .run(
            &(spec(), any::<bool>(), any::<bool>()),
            |(spec, fresh_database, online)| {
                let built = spec.build();
                let desired = built.model();
                let current = if fresh_database {
                    Model {
                        schemas: desired.schemas.clone(),
                        extensions: desired.extensions.clone(),
                        ..Model::default()
                    }
                } else {
                    Model::default()
                };
                let opts = PlanOptions {
                    online,
                    ..PlanOptions::default()
                };
                let plan = planner::plan(&current, &desired, &opts);
                let exists = |obj: &Obj| match obj {
                    Obj::Schema(s) => current.schemas.contains_key(s),
                    Obj::Extension(e) => current.extensions.contains_key(e),
                    _ => false,
                };
                let mut position = std::collections::BTreeMap::new();
                for obj in &built.objects {
                    let found = creating_steps(&plan, &desired, obj);
                    let want = if exists(obj) { 0 } else { 1 };
                    prop_assert_eq!(
                        found.len(),
                        want,
                        "steps creating {:?}: {:?} in\n{}",
                        obj,
                        found,
                        plan.to_sql()
                    );
                    if let Some(p) = found.first() {
                        position.insert(obj.clone(), *p);
                    }
                }
                for (before, after) in &built.deps {
                    if exists(before) {
                        continue;
                    }
                    let (b, a) = (position[before], position[after]);
                    prop_assert!(
                        b < a,
                        "{before:?} (step {b}) must be created before {after:?} (step {a}) in\n{}",
                        plan.to_sql()
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

/// The positions of the steps that create `obj`. A step carries no object identity, only text, so
/// the step is recognized by the statement that creates the object, built from the object's
/// identity and its definition in `model` (the definition itself for functions, indexes and
/// triggers).
fn creating_steps(plan: &Plan, model: &Model, obj: &Obj) -> Vec<usize> {
    let is = |sql: &str| -> bool {
        match obj {
            Obj::Schema(s) => sql == format!("CREATE SCHEMA {}", ident(s)),
            Obj::Extension(e) => {
                sql.starts_with(&format!("CREATE EXTENSION IF NOT EXISTS {} ", ident(e)))
            }
            Obj::Enum(n) => sql.starts_with(&format!("CREATE TYPE {n} AS ENUM (")),
            Obj::Domain(n) => sql.starts_with(&format!("CREATE DOMAIN {n} AS ")),
            Obj::Sequence(n) => sql.starts_with(&format!("CREATE SEQUENCE {n} ")),
            Obj::Function(id) => sql == model.functions[id].definition.trim_end(),
            Obj::Table(n) => {
                sql.starts_with(&format!("CREATE TABLE {n} "))
                    || sql.starts_with(&format!("CREATE UNLOGGED TABLE {n} "))
            }
            Obj::Constraint(t, name) => {
                let def = &model.tables[t].constraints[name].definition;
                sql == format!("ALTER TABLE {t} ADD CONSTRAINT {} {def}", ident(name))
            }
            Obj::Index(r, name) => sql == model.index(r, name).expect("index").definition,
            Obj::Trigger(t, name) => sql == model.tables[t].triggers[name].definition,
            Obj::Policy(t, name) => {
                sql.starts_with(&format!("CREATE POLICY {} ON {t} ", ident(name)))
            }
            Obj::View(n) => {
                sql.starts_with(&format!("CREATE VIEW {n} AS\n"))
                    || sql.starts_with(&format!("CREATE MATERIALIZED VIEW {n} AS\n"))
            }
        }
    };
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| is(&s.sql))
        .map(|(i, _)| i)
        .collect()
}
