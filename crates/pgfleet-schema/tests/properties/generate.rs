//! Generated models. Proptest draws a [`Spec`] (sizes and choices, all small numbers, so it
//! shrinks well); [`Spec::build`] turns it into
//!
//! - the model as a list of object insertions ([`Insert`]), so the same model can be built in any
//!   order ([`model_of`]), sub-objects of tables included;
//! - every object it creates ([`Obj`]) and the dependencies between them (`(a, b)`: `a` must exist
//!   before `b` is created), known from the spec itself, not read back from SQL text.
//!
//! Names and definitions are written the way PostgreSQL prints them with an empty `search_path`
//! (schema-qualified, quoted only where needed), some of them needing quotes (`"Audit"`,
//! `"Order Items"`, `"user"`). Foreign keys point only to the same or earlier tables, so there are
//! no reference cycles; a view reads tables and earlier views only.

use std::collections::BTreeMap;

use pgfleet_schema::model::{
    Column, Constraint, ConstraintKind, Domain, EnumType, Extension, Function, FunctionId,
    Identity, Index, Model, Namespace, PartitionOf, Policy, QualName, Sequence, Table, TableKind,
    Trigger, View,
};
use pgfleet_schema::quote::{ident, literal};
use proptest::prelude::*;

/// Schemas a model may use: `public` always, then the first `Spec::schemas` of the others.
const SCHEMAS: [&str; 3] = ["public", "app", "Audit"];
/// Table names by table number.
const TABLE_NAMES: [&str; 5] = ["accounts", "users", "Order Items", "events", "user"];
/// View names by view number: a view reads earlier views only, and these sort the other way, so
/// name order alone would create a view before one it reads.
const VIEW_NAMES: [&str; 3] = ["v_recent", "v_daily", "v_all"];
/// Built-in column types (`format_type` output).
const BUILTINS: [&str; 8] = [
    "integer",
    "bigint",
    "text",
    "boolean",
    "timestamp with time zone",
    "numeric(10,2)",
    "character varying(20)",
    "jsonb",
];
/// Enum labels to draw from.
const LABELS: [&str; 5] = ["new", "active", "on hold", "done", "it's"];

/// An object the plan creates, by identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Obj {
    /// A schema.
    Schema(String),
    /// An extension.
    Extension(String),
    /// An enum type.
    Enum(QualName),
    /// A domain.
    Domain(QualName),
    /// A sequence.
    Sequence(QualName),
    /// A function or procedure.
    Function(FunctionId),
    /// A table (or partition).
    Table(QualName),
    /// A table constraint: table, name.
    Constraint(QualName, String),
    /// An index of a table or materialized view: relation, name.
    Index(QualName, String),
    /// A trigger: table, name.
    Trigger(QualName, String),
    /// A row-level security policy: table, name.
    Policy(QualName, String),
    /// A view or materialized view.
    View(QualName),
}

/// One object put into a model. Sub-objects of a table or view may come before the table or view
/// itself: [`model_of`] creates an empty one to hold them, whose other fields the table's own
/// insertion sets later.
#[derive(Debug, Clone)]
pub enum Insert {
    /// A schema.
    Schema(String, Namespace),
    /// An extension.
    Extension(String, Extension),
    /// An enum type.
    Enum(QualName, EnumType),
    /// A domain.
    Domain(QualName, Domain),
    /// A sequence.
    Sequence(QualName, Sequence),
    /// A function.
    Function(FunctionId, Function),
    /// A table, without columns, constraints, indexes, triggers or policies.
    Table(QualName, Table),
    /// A column of a table.
    Column(QualName, String, Column),
    /// A constraint of a table.
    Constraint(QualName, String, Constraint),
    /// An index of a table.
    Index(QualName, String, Index),
    /// A trigger of a table.
    Trigger(QualName, String, Trigger),
    /// A policy of a table.
    Policy(QualName, String, Policy),
    /// A view, without indexes.
    View(QualName, View),
    /// An index of a materialized view.
    ViewIndex(QualName, String, Index),
}

/// Builds a model by inserting objects in the given order.
pub fn model_of<'a>(inserts: impl IntoIterator<Item = &'a Insert>) -> Model {
    let mut m = Model::default();
    for insert in inserts {
        match insert.clone() {
            Insert::Schema(n, s) => {
                m.schemas.insert(n, s);
            }
            Insert::Extension(n, e) => {
                m.extensions.insert(n, e);
            }
            Insert::Enum(n, e) => {
                m.enums.insert(n, e);
            }
            Insert::Domain(n, d) => {
                m.domains.insert(n, d);
            }
            Insert::Sequence(n, s) => {
                m.sequences.insert(n, s);
            }
            Insert::Function(id, f) => {
                m.functions.insert(id, f);
            }
            Insert::Table(n, shell) => {
                set_table(m.tables.entry(n).or_insert_with(empty_table), shell)
            }
            Insert::Column(t, n, c) => {
                m.tables
                    .entry(t)
                    .or_insert_with(empty_table)
                    .columns
                    .insert(n, c);
            }
            Insert::Constraint(t, n, c) => {
                m.tables
                    .entry(t)
                    .or_insert_with(empty_table)
                    .constraints
                    .insert(n, c);
            }
            Insert::Index(t, n, i) => {
                m.tables
                    .entry(t)
                    .or_insert_with(empty_table)
                    .indexes
                    .insert(n, i);
            }
            Insert::Trigger(t, n, tr) => {
                m.tables
                    .entry(t)
                    .or_insert_with(empty_table)
                    .triggers
                    .insert(n, tr);
            }
            Insert::Policy(t, n, p) => {
                m.tables
                    .entry(t)
                    .or_insert_with(empty_table)
                    .policies
                    .insert(n, p);
            }
            Insert::View(n, shell) => set_view(m.views.entry(n).or_insert_with(empty_view), shell),
            Insert::ViewIndex(v, n, i) => {
                m.views
                    .entry(v)
                    .or_insert_with(empty_view)
                    .indexes
                    .insert(n, i);
            }
        }
    }
    m
}

/// Sets everything of a table but its sub-object maps (destructured, so a new field of `Table`
/// must be handled here).
fn set_table(t: &mut Table, shell: Table) {
    let Table {
        kind,
        unlogged,
        partition_key,
        partition_of,
        columns: _,
        constraints: _,
        indexes: _,
        triggers: _,
        policies: _,
        rls_enabled,
        rls_forced,
        comment,
    } = shell;
    t.kind = kind;
    t.unlogged = unlogged;
    t.partition_key = partition_key;
    t.partition_of = partition_of;
    t.rls_enabled = rls_enabled;
    t.rls_forced = rls_forced;
    t.comment = comment;
}

/// Sets everything of a view but its indexes.
fn set_view(v: &mut View, shell: View) {
    let View {
        materialized,
        definition,
        columns,
        options,
        depends_on,
        indexes: _,
        comment,
    } = shell;
    v.materialized = materialized;
    v.definition = definition;
    v.columns = columns;
    v.options = options;
    v.depends_on = depends_on;
    v.comment = comment;
}

fn empty_table() -> Table {
    Table {
        kind: TableKind::Regular,
        unlogged: false,
        partition_key: None,
        partition_of: None,
        columns: BTreeMap::new(),
        constraints: BTreeMap::new(),
        indexes: BTreeMap::new(),
        triggers: BTreeMap::new(),
        policies: BTreeMap::new(),
        rls_enabled: false,
        rls_forced: false,
        comment: None,
    }
}

fn empty_view() -> View {
    View {
        materialized: false,
        definition: String::new(),
        columns: Vec::new(),
        options: Vec::new(),
        depends_on: Vec::new(),
        indexes: BTreeMap::new(),
        comment: None,
    }
}

/// What a model holds. Every `usize` choice is taken modulo what exists when it is resolved.
#[derive(Debug, Clone)]
pub struct Spec {
    /// How many schemas besides `public` (0..=2).
    pub schemas: usize,
    /// The `vector` extension, in this schema.
    pub vector: Option<usize>,
    /// Enum types.
    pub enums: Vec<EnumSpec>,
    /// Domains.
    pub domains: Vec<DomainSpec>,
    /// Sequences.
    pub sequences: Vec<SequenceSpec>,
    /// Functions and procedures.
    pub functions: Vec<FunctionSpec>,
    /// Trigger functions (in these schemas).
    pub trigger_functions: Vec<usize>,
    /// Tables (at least one).
    pub tables: Vec<TableSpec>,
    /// Views and materialized views.
    pub views: Vec<ViewSpec>,
}

/// An enum type.
#[derive(Debug, Clone)]
pub struct EnumSpec {
    schema: usize,
    labels: Vec<&'static str>,
    comment: bool,
}

/// A domain.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    schema: usize,
    /// Base type: a built-in or an enum.
    base: usize,
    not_null: bool,
    /// A check: `VALUE IS NOT NULL`, or a call of a function without arguments.
    check: Option<Option<usize>>,
}

/// A sequence.
#[derive(Debug, Clone)]
pub struct SequenceSpec {
    schema: usize,
    bigint: bool,
    /// Owned by the first column whose default uses it.
    owned: bool,
    comment: bool,
}

/// A function or procedure.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    schema: usize,
    /// An argument of a built-in, enum or domain type.
    arg: Option<usize>,
    bigint: bool,
    /// A SQL-standard body (`BEGIN ATOMIC`).
    atomic: bool,
    procedure: bool,
    comment: bool,
}

/// A column default or generation.
#[derive(Debug, Clone)]
pub enum DefaultSpec {
    /// None.
    None,
    /// `'x'::text` (the column is `text`).
    Text,
    /// `nextval` of a sequence (the column is `bigint`).
    Sequence(usize),
    /// A call of a function without arguments (the column has its return type).
    Call(usize),
    /// `GENERATED ALWAYS AS ((id * 2)) STORED` (the column is `bigint`).
    Generated,
}

/// A column besides `id`.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// Its type, when its default does not fix it: built-ins, enums, domains, `vector`.
    ty: usize,
    array: bool,
    not_null: bool,
    default: DefaultSpec,
    comment: bool,
}

/// A table: `id bigint NOT NULL` with a primary key, then its columns.
#[derive(Debug, Clone)]
pub struct TableSpec {
    schema: usize,
    identity: Option<bool>,
    columns: Vec<ColumnSpec>,
    /// A unique constraint on this column.
    unique: Option<usize>,
    check: bool,
    /// Foreign keys to these tables (this one or earlier ones), each through its own column.
    fks: Vec<usize>,
    /// Indexes on these columns (0 is `id`), unique or not.
    indexes: Vec<(usize, bool)>,
    /// A trigger calling this trigger function.
    trigger: Option<usize>,
    /// A policy; with a call of a function without arguments in `USING`.
    policy: Option<Option<usize>>,
    rls_forced: bool,
    unlogged: bool,
    /// Partitioned by range of `id` with this many partitions (0: a plain table), named
    /// `"2024_<table>"`, … so they sort before their parent.
    partitions: usize,
    comment: bool,
}

/// A view: `SELECT r0.id` from the relations it reads, plus a function call.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    schema: usize,
    /// Tables and earlier views it reads.
    reads: Vec<usize>,
    calls: Option<usize>,
    materialized: bool,
    /// An index on `id` (materialized views only).
    index: bool,
    comment: bool,
}

fn small() -> impl Strategy<Value = usize> {
    0..8usize
}

fn enum_spec() -> impl Strategy<Value = EnumSpec> {
    (
        small(),
        prop::sample::subsequence(LABELS.to_vec(), 1..=4).prop_shuffle(),
        any::<bool>(),
    )
        .prop_map(|(schema, labels, comment)| EnumSpec {
            schema,
            labels,
            comment,
        })
}

fn domain_spec() -> impl Strategy<Value = DomainSpec> {
    (
        small(),
        0..16usize,
        any::<bool>(),
        prop::option::of(prop::option::of(small())),
    )
        .prop_map(|(schema, base, not_null, check)| DomainSpec {
            schema,
            base,
            not_null,
            check,
        })
}

fn sequence_spec() -> impl Strategy<Value = SequenceSpec> {
    (small(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(schema, bigint, owned, comment)| SequenceSpec {
            schema,
            bigint,
            owned,
            comment,
        },
    )
}

fn function_spec() -> impl Strategy<Value = FunctionSpec> {
    (
        small(),
        prop::option::weighted(0.3, 0..16usize),
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.15),
        any::<bool>(),
    )
        .prop_map(
            |(schema, arg, bigint, atomic, procedure, comment)| FunctionSpec {
                schema,
                arg,
                bigint,
                atomic,
                procedure,
                comment,
            },
        )
}

fn default_spec() -> impl Strategy<Value = DefaultSpec> {
    prop_oneof![
        4 => Just(DefaultSpec::None),
        1 => Just(DefaultSpec::Text),
        1 => small().prop_map(DefaultSpec::Sequence),
        1 => small().prop_map(DefaultSpec::Call),
        1 => Just(DefaultSpec::Generated),
    ]
}

fn column_spec() -> impl Strategy<Value = ColumnSpec> {
    (
        0..24usize,
        prop::bool::weighted(0.2),
        any::<bool>(),
        default_spec(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(ty, array, not_null, default, comment)| ColumnSpec {
            ty,
            array,
            not_null,
            default,
            comment,
        })
}

fn table_spec() -> impl Strategy<Value = TableSpec> {
    (
        (
            small(),
            prop::option::weighted(0.2, any::<bool>()),
            prop::collection::vec(column_spec(), 0..=3),
            prop::option::weighted(0.3, small()),
            any::<bool>(),
            prop::collection::vec(small(), 0..=2),
            prop::collection::vec((small(), any::<bool>()), 0..=2),
        ),
        (
            prop::option::weighted(0.3, small()),
            prop::option::weighted(0.3, prop::option::of(small())),
            any::<bool>(),
            prop::bool::weighted(0.15),
            prop_oneof![3 => Just(0usize), 1 => 1..=2usize],
            prop::bool::weighted(0.3),
        ),
    )
        .prop_map(
            |(
                (schema, identity, columns, unique, check, fks, indexes),
                (trigger, policy, rls_forced, unlogged, partitions, comment),
            )| TableSpec {
                schema,
                identity,
                columns,
                unique,
                check,
                fks,
                indexes,
                trigger,
                policy,
                rls_forced,
                unlogged,
                partitions,
                comment,
            },
        )
}

fn view_spec() -> impl Strategy<Value = ViewSpec> {
    (
        small(),
        prop::collection::vec(small(), 1..=2),
        prop::option::weighted(0.3, small()),
        prop::bool::weighted(0.3),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(schema, reads, calls, materialized, index, comment)| ViewSpec {
                schema,
                reads,
                calls,
                materialized,
                index,
                comment,
            },
        )
}

/// A small but non-trivial model: up to 3 schemas, 2 enums, 2 domains, 2 sequences, 3 functions,
/// 1 trigger function, 1 to 5 tables (with partitions), 3 views.
pub fn spec() -> impl Strategy<Value = Spec> {
    (
        0..=2usize,
        prop::option::weighted(0.3, small()),
        prop::collection::vec(enum_spec(), 0..=2),
        prop::collection::vec(domain_spec(), 0..=2),
        prop::collection::vec(sequence_spec(), 0..=2),
        prop::collection::vec(function_spec(), 0..=3),
        prop::collection::vec(small(), 0..=1),
        prop::collection::vec(table_spec(), 1..=5),
        prop::collection::vec(view_spec(), 0..=3),
    )
        .prop_map(
            |(
                schemas,
                vector,
                enums,
                domains,
                sequences,
                functions,
                trigger_functions,
                tables,
                views,
            )| Spec {
                schemas,
                vector,
                enums,
                domains,
                sequences,
                functions,
                trigger_functions,
                tables,
                views,
            },
        )
}

/// A built spec.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// The model, object by object, in a canonical order.
    pub inserts: Vec<Insert>,
    /// Every object the model has that a plan creates with a step of its own.
    pub objects: Vec<Obj>,
    /// `(a, b)`: `a` must be created before `b`.
    pub deps: Vec<(Obj, Obj)>,
}

impl Built {
    /// The model, built in the canonical order.
    pub fn model(&self) -> Model {
        model_of(&self.inserts)
    }

    fn add(&mut self, obj: Obj, insert: Insert) {
        if !self.objects.contains(&obj) {
            self.objects.push(obj);
        }
        self.inserts.push(insert);
    }

    fn dep(&mut self, before: Obj, after: &Obj) {
        let pair = (before, after.clone());
        if !self.deps.contains(&pair) {
            self.deps.push(pair);
        }
    }
}

/// A type a column, domain or function may use, and the object that creates it (none for
/// built-ins).
#[derive(Debug, Clone)]
struct Ty {
    name: String,
    creator: Option<Obj>,
}

fn builtin(name: &str) -> Ty {
    Ty {
        name: name.to_string(),
        creator: None,
    }
}

/// A callable function: its name and return type.
#[derive(Debug, Clone)]
struct Callable {
    id: FunctionId,
    returns: String,
    /// A SQL-standard body: the planner creates it after the tables (see [`Spec::build`]).
    atomic: bool,
}

impl Spec {
    fn schema(&self, i: usize) -> &'static str {
        SCHEMAS[i % (1 + self.schemas.min(2))]
    }

    /// Builds the model, its objects and their dependencies.
    pub fn build(&self) -> Built {
        let mut b = Built::default();
        for s in &SCHEMAS[..1 + self.schemas.min(2)] {
            b.add(
                Obj::Schema(s.to_string()),
                Insert::Schema(s.to_string(), Namespace { comment: None }),
            );
        }
        let in_schema =
            |b: &mut Built, schema: &str, obj: &Obj| b.dep(Obj::Schema(schema.to_string()), obj);

        let mut vector = None;
        if let Some(s) = self.vector {
            let schema = self.schema(s);
            let obj = Obj::Extension("vector".into());
            in_schema(&mut b, schema, &obj);
            b.add(
                obj.clone(),
                Insert::Extension(
                    "vector".into(),
                    Extension {
                        schema: schema.into(),
                        version: "0.8.0".into(),
                        comment: Some(
                            "vector data type and ivfflat and hnsw access methods".into(),
                        ),
                    },
                ),
            );
            vector = Some(Ty {
                name: format!("{}.vector(3)", ident(schema)),
                creator: Some(obj),
            });
        }

        // Enums.
        let mut enums = Vec::new();
        for (i, e) in self.enums.iter().enumerate() {
            let name = QualName::new(self.schema(e.schema), format!("e{i}"));
            let obj = Obj::Enum(name.clone());
            in_schema(&mut b, &name.schema, &obj);
            b.add(
                obj.clone(),
                Insert::Enum(
                    name.clone(),
                    EnumType {
                        labels: e.labels.iter().map(|l| l.to_string()).collect(),
                        comment: e.comment.then(|| format!("enum {i}")),
                    },
                ),
            );
            enums.push(Ty {
                name: name.to_string(),
                creator: Some(obj),
            });
        }
        let base_types: Vec<Ty> = BUILTINS
            .iter()
            .map(|t| builtin(t))
            .chain(enums.clone())
            .collect();

        // Domain names first: function signatures may use them.
        let domain_names: Vec<QualName> = (0..self.domains.len())
            .map(|i| QualName::new(self.schema(self.domains[i].schema), format!("d{i}")))
            .collect();
        let domains: Vec<Ty> = domain_names
            .iter()
            .map(|n| Ty {
                name: n.to_string(),
                creator: Some(Obj::Domain(n.clone())),
            })
            .collect();
        let signature_types: Vec<Ty> = base_types.iter().chain(&domains).cloned().collect();

        // Functions.
        let mut callable: Vec<Callable> = Vec::new();
        for (i, f) in self.functions.iter().enumerate() {
            let name = QualName::new(self.schema(f.schema), format!("f{i}"));
            let arg = f.arg.map(|a| &signature_types[a % signature_types.len()]);
            let id = FunctionId {
                name: name.clone(),
                args: arg.map(|t| format!("x {}", t.name)).unwrap_or_default(),
            };
            let obj = Obj::Function(id.clone());
            in_schema(&mut b, &name.schema, &obj);
            if let Some(creator) = arg.and_then(|t| t.creator.clone()) {
                b.dep(creator, &obj);
            }
            let returns = if f.bigint { "bigint" } else { "integer" };
            let function = if f.procedure {
                Function {
                    procedure: true,
                    returns: None,
                    definition: format!(
                        "CREATE OR REPLACE PROCEDURE {name}({})\n LANGUAGE sql\nAS $procedure$SELECT 1$procedure$\n",
                        id.args
                    ),
                    comment: f.comment.then(|| format!("procedure {i}")),
                }
            } else {
                let body = if f.atomic {
                    "BEGIN ATOMIC\n SELECT 1;\nEND".to_string()
                } else {
                    "AS $function$SELECT 1$function$".to_string()
                };
                Function {
                    procedure: false,
                    returns: Some(returns.into()),
                    definition: format!(
                        "CREATE OR REPLACE FUNCTION {name}({})\n RETURNS {returns}\n LANGUAGE sql\n{body}\n",
                        id.args
                    ),
                    comment: f.comment.then(|| format!("function {i}")),
                }
            };
            if !f.procedure && f.arg.is_none() {
                callable.push(Callable {
                    id: id.clone(),
                    returns: returns.into(),
                    atomic: f.atomic,
                });
            }
            b.add(obj, Insert::Function(id, function));
        }
        let call = |i: usize| (!callable.is_empty()).then(|| callable[i % callable.len()].clone());
        // The planner creates functions with a SQL-standard body (`BEGIN ATOMIC`) after the tables
        // (PostgreSQL checks such a body, which may read them), so a column default or a domain
        // check that calls one would be created before it: a known gap of the planner, not
        // generated here. Policies and views come after those functions and may call any.
        let early: Vec<Callable> = callable.iter().filter(|c| !c.atomic).cloned().collect();
        let call_early = |i: usize| (!early.is_empty()).then(|| early[i % early.len()].clone());
        let call_sql = |c: &Callable| format!("{}()", c.id.name);

        let mut trigger_functions = Vec::new();
        for (i, s) in self.trigger_functions.iter().enumerate() {
            let name = QualName::new(self.schema(*s), format!("trg{i}"));
            let id = FunctionId {
                name: name.clone(),
                args: String::new(),
            };
            let obj = Obj::Function(id.clone());
            in_schema(&mut b, &name.schema, &obj);
            b.add(
                obj,
                Insert::Function(
                    id.clone(),
                    Function {
                        procedure: false,
                        returns: Some("trigger".into()),
                        definition: format!(
                            "CREATE OR REPLACE FUNCTION {name}()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$BEGIN RETURN NEW; END$function$\n"
                        ),
                        comment: None,
                    },
                ),
            );
            trigger_functions.push(id);
        }

        // Domains.
        for (i, d) in self.domains.iter().enumerate() {
            let name = domain_names[i].clone();
            let obj = Obj::Domain(name.clone());
            in_schema(&mut b, &name.schema, &obj);
            let base = &base_types[d.base % base_types.len()];
            if let Some(creator) = &base.creator {
                b.dep(creator.clone(), &obj);
            }
            let mut checks = BTreeMap::new();
            match d.check {
                None => {}
                Some(None) => {
                    checks.insert(
                        format!("d{i}_check"),
                        "CHECK ((VALUE IS NOT NULL))".to_string(),
                    );
                }
                Some(Some(f)) => {
                    if let Some(c) = call_early(f) {
                        b.dep(Obj::Function(c.id.clone()), &obj);
                        checks.insert(
                            format!("d{i}_check"),
                            format!("CHECK (({} IS NOT NULL))", call_sql(&c)),
                        );
                    }
                }
            }
            b.add(
                obj,
                Insert::Domain(
                    name,
                    Domain {
                        base_type: base.name.clone(),
                        default: None,
                        not_null: d.not_null,
                        collation: None,
                        checks,
                        comment: None,
                    },
                ),
            );
        }

        // Tables.
        let sequence_names: Vec<QualName> = self
            .sequences
            .iter()
            .enumerate()
            .map(|(i, s)| QualName::new(self.schema(s.schema), format!("s{i}")))
            .collect();
        let mut sequence_owner: BTreeMap<usize, (QualName, String)> = BTreeMap::new();
        let column_types: Vec<Ty> = signature_types.iter().cloned().chain(vector).collect();
        let mut tables: Vec<QualName> = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            let name = QualName::new(self.schema(t.schema), TABLE_NAMES[i % TABLE_NAMES.len()]);
            let obj = Obj::Table(name.clone());
            in_schema(&mut b, &name.schema, &obj);
            tables.push(name.clone());
            let partitioned = t.partitions > 0;
            let mut column_names = vec!["id".to_string()];
            let mut id = column(1, "bigint");
            id.not_null = true;
            if !partitioned {
                id.identity = t.identity.map(|always| {
                    if always {
                        Identity::Always
                    } else {
                        Identity::ByDefault
                    }
                });
            }
            b.inserts
                .push(Insert::Column(name.clone(), "id".into(), id));
            for (j, c) in t.columns.iter().enumerate() {
                let col_name = format!("c{j}");
                let mut col = column(j as i32 + 2, "text");
                col.not_null = c.not_null;
                col.comment = c.comment.then(|| format!("column {j}"));
                let mut ty = None;
                match &c.default {
                    DefaultSpec::Text => col.default = Some("'x'::text".into()),
                    DefaultSpec::Sequence(s) if !sequence_names.is_empty() => {
                        let k = s % sequence_names.len();
                        let seq = &sequence_names[k];
                        col.data_type = "bigint".into();
                        col.default =
                            Some(format!("nextval({}::regclass)", literal(&seq.to_string())));
                        b.dep(Obj::Sequence(seq.clone()), &obj);
                        sequence_owner
                            .entry(k)
                            .or_insert_with(|| (name.clone(), col_name.clone()));
                    }
                    DefaultSpec::Call(f) if call_early(*f).is_some() => {
                        let c = call_early(*f).expect("callable");
                        col.data_type = c.returns.clone();
                        col.default = Some(call_sql(&c));
                        b.dep(Obj::Function(c.id.clone()), &obj);
                    }
                    DefaultSpec::Generated => {
                        col.data_type = "bigint".into();
                        col.generated = Some("(id * 2)".into());
                    }
                    _ => ty = Some(&column_types[c.ty % column_types.len()]),
                }
                if let Some(ty) = ty {
                    let array = c.array && !ty.name.contains(".vector(");
                    col.data_type = format!("{}{}", ty.name, if array { "[]" } else { "" });
                    if let Some(creator) = &ty.creator {
                        b.dep(creator.clone(), &obj);
                    }
                }
                b.inserts
                    .push(Insert::Column(name.clone(), col_name.clone(), col));
                column_names.push(col_name);
            }

            let constraint = |b: &mut Built, cname: String, c: Constraint| {
                let cobj = Obj::Constraint(name.clone(), cname.clone());
                b.dep(obj.clone(), &cobj);
                if let Some(r) = &c.references {
                    b.dep(Obj::Table(r.clone()), &cobj);
                    b.dep(
                        Obj::Constraint(r.clone(), format!("{}_pkey", r.name)),
                        &cobj,
                    );
                }
                b.add(cobj, Insert::Constraint(name.clone(), cname, c));
            };
            constraint(
                &mut b,
                format!("{}_pkey", name.name),
                plain_constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id)".into()),
            );
            if let Some(u) = t.unique.filter(|_| column_names.len() > 1) {
                let col = &column_names[1 + u % (column_names.len() - 1)];
                constraint(
                    &mut b,
                    format!("{}_{col}_key", name.name),
                    plain_constraint(ConstraintKind::Unique, format!("UNIQUE ({})", ident(col))),
                );
            }
            if t.check {
                constraint(
                    &mut b,
                    format!("{}_id_check", name.name),
                    plain_constraint(ConstraintKind::Check, "CHECK ((id > 0))".into()),
                );
            }
            for (k, target) in t.fks.iter().enumerate() {
                let target = tables[target % tables.len()].clone();
                let col_name = format!("fk{k}");
                b.inserts.push(Insert::Column(
                    name.clone(),
                    col_name.clone(),
                    column(20 + k as i32, "bigint"),
                ));
                constraint(
                    &mut b,
                    format!("{}_fk{k}", name.name),
                    Constraint {
                        references: Some(target.clone()),
                        ..plain_constraint(
                            ConstraintKind::ForeignKey,
                            format!("FOREIGN KEY ({col_name}) REFERENCES {target}(id)"),
                        )
                    },
                );
            }
            for (col, unique) in &t.indexes {
                let col = &column_names[col % column_names.len()];
                let iname = format!("{}_{col}_idx", name.name);
                let iobj = Obj::Index(name.clone(), iname.clone());
                if b.objects.contains(&iobj) {
                    continue;
                }
                b.dep(obj.clone(), &iobj);
                let definition = format!(
                    "CREATE {}INDEX {} ON {name} USING btree ({})",
                    if *unique { "UNIQUE " } else { "" },
                    ident(&iname),
                    ident(col)
                );
                b.add(iobj, Insert::Index(name.clone(), iname, index(definition)));
            }
            if let Some(f) = t.trigger.filter(|_| !trigger_functions.is_empty()) {
                let f = &trigger_functions[f % trigger_functions.len()];
                let tname = format!("{}_trg", name.name);
                let tobj = Obj::Trigger(name.clone(), tname.clone());
                b.dep(obj.clone(), &tobj);
                b.dep(Obj::Function(f.clone()), &tobj);
                let trigger = Trigger {
                    definition: format!(
                        "CREATE TRIGGER {} BEFORE INSERT ON {name} FOR EACH ROW EXECUTE FUNCTION {}()",
                        ident(&tname),
                        f.name
                    ),
                    enabled: "O".into(),
                    comment: None,
                };
                b.add(tobj, Insert::Trigger(name.clone(), tname, trigger));
            }
            if let Some(p) = &t.policy {
                let pname = format!("{}_pol", name.name);
                let pobj = Obj::Policy(name.clone(), pname.clone());
                b.dep(obj.clone(), &pobj);
                let using = match p.and_then(call) {
                    Some(c) => {
                        b.dep(Obj::Function(c.id.clone()), &pobj);
                        format!("({} > 0)", call_sql(&c))
                    }
                    None => "true".into(),
                };
                let policy = Policy {
                    command: "SELECT".into(),
                    permissive: true,
                    roles: vec!["public".into()],
                    using: Some(using),
                    with_check: None,
                    comment: None,
                };
                b.add(pobj, Insert::Policy(name.clone(), pname, policy));
            }
            let shell = Table {
                kind: if partitioned {
                    TableKind::Partitioned
                } else {
                    TableKind::Regular
                },
                unlogged: t.unlogged && !partitioned,
                partition_key: partitioned.then(|| "RANGE (id)".to_string()),
                rls_enabled: t.policy.is_some(),
                rls_forced: t.policy.is_some() && t.rls_forced,
                comment: t.comment.then(|| format!("table {i}")),
                ..empty_table()
            };
            b.add(obj.clone(), Insert::Table(name.clone(), shell));
            for k in 0..t.partitions {
                let pname =
                    QualName::new(name.schema.clone(), format!("{}_{}", 2024 + k, name.name));
                let pobj = Obj::Table(pname.clone());
                b.dep(obj.clone(), &pobj);
                let shell = Table {
                    partition_of: Some(PartitionOf {
                        parent: name.clone(),
                        bound: format!("FOR VALUES FROM ('{}') TO ('{}')", k * 100, k * 100 + 100),
                    }),
                    ..empty_table()
                };
                b.add(pobj, Insert::Table(pname, shell));
            }
        }

        // Sequences (their owners are known now).
        for (i, s) in self.sequences.iter().enumerate() {
            let name = sequence_names[i].clone();
            let obj = Obj::Sequence(name.clone());
            in_schema(&mut b, &name.schema, &obj);
            let sequence = Sequence {
                data_type: if s.bigint { "bigint" } else { "integer" }.into(),
                start: 1,
                increment: 1,
                min_value: 1,
                max_value: if s.bigint {
                    i64::MAX
                } else {
                    i64::from(i32::MAX)
                },
                cache: 1,
                cycle: false,
                owned_by: sequence_owner.get(&i).filter(|_| s.owned).cloned(),
                comment: s.comment.then(|| format!("sequence {i}")),
            };
            b.add(obj, Insert::Sequence(name, sequence));
        }

        // Views.
        let mut relations: Vec<(QualName, Obj)> = tables
            .iter()
            .map(|t| (t.clone(), Obj::Table(t.clone())))
            .collect();
        for (i, v) in self.views.iter().enumerate() {
            let name = QualName::new(self.schema(v.schema), VIEW_NAMES[i % VIEW_NAMES.len()]);
            let obj = Obj::View(name.clone());
            in_schema(&mut b, &name.schema, &obj);
            let mut reads: Vec<QualName> = Vec::new();
            for r in &v.reads {
                let (rel, robj) = &relations[r % relations.len()];
                if !reads.contains(rel) {
                    reads.push(rel.clone());
                    b.dep(robj.clone(), &obj);
                }
            }
            let mut select = "r0.id".to_string();
            let mut columns = vec![("id".to_string(), "bigint".to_string())];
            if let Some(c) = v.calls.and_then(call) {
                b.dep(Obj::Function(c.id.clone()), &obj);
                select.push_str(&format!(",\n    {} AS f", call_sql(&c)));
                columns.push(("f".into(), c.returns.clone()));
            }
            let from: Vec<String> = reads
                .iter()
                .enumerate()
                .map(|(k, r)| format!("{r} r{k}"))
                .collect();
            let mut depends_on = reads.clone();
            depends_on.sort();
            let view = View {
                materialized: v.materialized,
                definition: format!(" SELECT {select}\n   FROM {};", from.join(",\n    ")),
                columns,
                options: Vec::new(),
                depends_on,
                indexes: BTreeMap::new(),
                comment: v.comment.then(|| format!("view {i}")),
            };
            b.add(obj.clone(), Insert::View(name.clone(), view));
            if v.materialized && v.index {
                let iname = format!("{}_id_idx", name.name);
                let iobj = Obj::Index(name.clone(), iname.clone());
                b.dep(obj.clone(), &iobj);
                let definition = format!("CREATE INDEX {iname} ON {name} USING btree (id)");
                b.add(
                    iobj,
                    Insert::ViewIndex(name.clone(), iname, index(definition)),
                );
            }
            relations.push((name.clone(), obj));
        }
        b
    }
}

fn column(position: i32, data_type: &str) -> Column {
    Column {
        position,
        data_type: data_type.into(),
        not_null: false,
        default: None,
        collation: None,
        identity: None,
        identity_options: Default::default(),
        generated: None,
        generated_virtual: false,
        comment: None,
    }
}

fn plain_constraint(kind: ConstraintKind, definition: String) -> Constraint {
    Constraint {
        kind,
        definition,
        references: None,
        valid: true,
        comment: None,
    }
}

fn index(definition: String) -> Index {
    Index {
        definition,
        valid: true,
        comment: None,
    }
}
