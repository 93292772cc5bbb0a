//! The model: pgfleet's in-memory description of a database schema.
//!
//! A model is read from a live database by introspection (`pgfleet-pg`), both from the target and from
//! a shadow database where the desired schema was applied, so **PostgreSQL itself normalizes every
//! definition**: index, constraint, trigger, view and function definitions are kept as the text
//! PostgreSQL's own `pg_get_*def` functions print, with `search_path` empty so every name in them
//! is schema-qualified. Two objects are equal when that text is equal. There is no SQL parser.
//!
//! Keys are names, never OIDs, so models of two databases compare. Maps are `BTreeMap`s so every
//! iteration, diff and plan is deterministic. Column order is kept ([`Column::position`]) but is
//! not a difference.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A schema-qualified object name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualName {
    /// Schema (namespace).
    pub schema: String,
    /// Object name inside it.
    pub name: String,
}

impl QualName {
    /// `schema.name`.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

/// Prints the quoted, qualified SQL form: `"public"."users"` (quoting only where needed).
impl fmt::Display for QualName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            crate::quote::ident(&self.schema),
            crate::quote::ident(&self.name)
        )
    }
}

/// Identity of a function or procedure: name plus argument types (overloads are separate objects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunctionId {
    /// Schema-qualified name.
    pub name: QualName,
    /// `pg_get_function_identity_arguments`, e.g. `a integer, b text`.
    pub args: String,
}

/// A whole database schema (all user schemas of one database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Server version number (`server_version_num`, e.g. 180006) the model was read from; not compared.
    pub server_version: u32,
    /// User schemas (namespaces), excluding system ones and those owned by extensions.
    pub schemas: BTreeMap<String, Namespace>,
    /// Installed extensions (except `plpgsql`), by name.
    pub extensions: BTreeMap<String, Extension>,
    /// Enum types.
    #[serde(with = "pairs")]
    pub enums: BTreeMap<QualName, EnumType>,
    /// Domains.
    #[serde(with = "pairs")]
    pub domains: BTreeMap<QualName, Domain>,
    /// Sequences, excluding those that back identity columns.
    #[serde(with = "pairs")]
    pub sequences: BTreeMap<QualName, Sequence>,
    /// Tables: regular, unlogged, partitioned and partitions.
    #[serde(with = "pairs")]
    pub tables: BTreeMap<QualName, Table>,
    /// Views and materialized views.
    #[serde(with = "pairs")]
    pub views: BTreeMap<QualName, View>,
    /// Functions and procedures (not aggregates), excluding those owned by extensions.
    #[serde(with = "pairs")]
    pub functions: BTreeMap<FunctionId, Function>,
}

/// Maps with struct keys serialize as lists of `[key, value]` pairs, so a model is plain JSON
/// (the catalog stores target models).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl Model {
    /// The objects of `schema` only (extensions are kept: they belong to the database).
    pub fn only_schema(&self, schema: &str) -> Model {
        let keep = |q: &QualName| q.schema == schema;
        Model {
            server_version: self.server_version,
            schemas: self
                .schemas
                .iter()
                .filter(|(k, _)| *k == schema)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            extensions: self.extensions.clone(),
            enums: self
                .enums
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            domains: self
                .domains
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sequences: self
                .sequences
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tables: self
                .tables
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            views: self
                .views
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            functions: self
                .functions
                .iter()
                .filter(|(k, _)| keep(&k.name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The model with schema `from` renamed to `to`: every schema field equal to `from` and every
    /// `from.` inside a definition. Textual, so `from` must be a name that occurs nowhere else in
    /// the model's SQL text (pgfleet uses it with generated tenant schema names like
    /// `t3f9c2a1b4d5e6f70`); `from` must need no quoting.
    pub fn rename_schema(&self, from: &str, to: &str) -> Model {
        fn walk(v: &mut serde_json::Value, from: &str, to: &str, prefix: &str, replacement: &str) {
            match v {
                serde_json::Value::String(s) => {
                    if s == from {
                        *s = to.to_string();
                    } else if s.contains(prefix) {
                        *s = s.replace(prefix, replacement);
                    }
                }
                serde_json::Value::Array(a) => a
                    .iter_mut()
                    .for_each(|x| walk(x, from, to, prefix, replacement)),
                serde_json::Value::Object(o) => {
                    let entries: Vec<(String, serde_json::Value)> =
                        std::mem::take(o).into_iter().collect();
                    for (k, mut x) in entries {
                        walk(&mut x, from, to, prefix, replacement);
                        o.insert(if k == from { to.to_string() } else { k }, x);
                    }
                }
                _ => {}
            }
        }
        let mut v = serde_json::to_value(self).expect("a model serializes to JSON");
        let prefix = format!("{from}.");
        let replacement = format!("{}.", crate::quote::ident(to));
        walk(&mut v, from, to, &prefix, &replacement);
        serde_json::from_value(v).expect("a renamed model deserializes")
    }
}

/// A schema (namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// `COMMENT ON SCHEMA`.
    pub comment: Option<String>,
}

/// An installed extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// Schema its objects live in.
    pub schema: String,
    /// Installed version; informational, not compared (the desired side installs the default version).
    pub version: String,
    /// `COMMENT ON EXTENSION` (extensions ship one; compared like any comment).
    pub comment: Option<String>,
}

/// An enum type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    /// Labels in sort order (`enumsortorder`).
    pub labels: Vec<String>,
    /// `COMMENT ON TYPE`.
    pub comment: Option<String>,
}

/// A domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Base type, `format_type` output, e.g. `text`, `numeric(10,2)`, `public.vector(3)`.
    pub base_type: String,
    /// `DEFAULT` expression (`typdefault`).
    pub default: Option<String>,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Non-default collation, qualified and quoted, e.g. `pg_catalog."C"`.
    pub collation: Option<String>,
    /// CHECK constraints by name: `pg_get_constraintdef`, e.g. `CHECK ((VALUE > 0))`.
    pub checks: BTreeMap<String, String>,
    /// `COMMENT ON DOMAIN`.
    pub comment: Option<String>,
}

/// A sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    /// `smallint`, `integer` or `bigint`.
    pub data_type: String,
    /// `START WITH`.
    pub start: i64,
    /// `INCREMENT BY`.
    pub increment: i64,
    /// `MINVALUE`.
    pub min_value: i64,
    /// `MAXVALUE`.
    pub max_value: i64,
    /// `CACHE`.
    pub cache: i64,
    /// `CYCLE`.
    pub cycle: bool,
    /// `OWNED BY table.column`.
    pub owned_by: Option<(QualName, String)>,
    /// `COMMENT ON SEQUENCE`.
    pub comment: Option<String>,
}

/// Kind of table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// An ordinary table (or a partition of a partitioned table).
    Regular,
    /// A partitioned table (`PARTITION BY`).
    Partitioned,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Regular or partitioned.
    pub kind: TableKind,
    /// `UNLOGGED`.
    pub unlogged: bool,
    /// `pg_get_partkeydef` of a partitioned table, e.g. `RANGE (created_at)`.
    pub partition_key: Option<String>,
    /// For a partition: its parent and bound (`pg_get_expr(relpartbound)`, e.g.
    /// `FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')` or `DEFAULT`).
    pub partition_of: Option<PartitionOf>,
    /// Columns defined by this table (inherited partition columns are not listed), by name.
    pub columns: BTreeMap<String, Column>,
    /// Constraints by name (NOT NULL is a column property, not listed here).
    pub constraints: BTreeMap<String, Constraint>,
    /// Indexes by name, excluding those that implement a constraint (primary key, unique, exclusion).
    pub indexes: BTreeMap<String, Index>,
    /// Triggers by name, excluding internal ones (foreign keys).
    pub triggers: BTreeMap<String, Trigger>,
    /// Row-level security policies by name.
    pub policies: BTreeMap<String, Policy>,
    /// `ALTER TABLE … ENABLE ROW LEVEL SECURITY`.
    pub rls_enabled: bool,
    /// `ALTER TABLE … FORCE ROW LEVEL SECURITY`.
    pub rls_forced: bool,
    /// `COMMENT ON TABLE`.
    pub comment: Option<String>,
}

/// A partition's place in its parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOf {
    /// The partitioned table.
    pub parent: QualName,
    /// `FOR VALUES …` or `DEFAULT`.
    pub bound: String,
}

/// How a column is an identity column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// `GENERATED ALWAYS AS IDENTITY`.
    Always,
    /// `GENERATED BY DEFAULT AS IDENTITY`.
    ByDefault,
}

/// Options of an identity column's sequence. `None` (and increment 1, cache 1, no cycle) is
/// PostgreSQL's default for the column's type and direction, so an `integer` → `bigint` change of
/// the column is no difference here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityOptions {
    /// `INCREMENT BY`.
    pub increment: i64,
    /// `START WITH`, when not the default (`MINVALUE` ascending, `MAXVALUE` descending).
    pub start: Option<i64>,
    /// `MINVALUE`, when not the default (1 ascending, the type's minimum descending).
    pub min_value: Option<i64>,
    /// `MAXVALUE`, when not the default (the type's maximum ascending, -1 descending).
    pub max_value: Option<i64>,
    /// `CACHE`.
    pub cache: i64,
    /// `CYCLE`.
    pub cycle: bool,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        Self {
            increment: 1,
            start: None,
            min_value: None,
            max_value: None,
            cache: 1,
            cycle: false,
        }
    }
}

impl IdentityOptions {
    /// The first value: `START WITH`, or its default for the direction.
    pub fn first_value(&self) -> i64 {
        self.start.unwrap_or(if self.increment > 0 {
            self.min_value.unwrap_or(1)
        } else {
            self.max_value.unwrap_or(-1)
        })
    }
}

/// A column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    /// `attnum`: the column's place in the table. Kept for `CREATE TABLE`, never a difference.
    pub position: i32,
    /// `format_type(atttypid, atttypmod)` with an empty search_path, e.g. `integer`, `text[]`,
    /// `character varying(20)`, `public.vector(384)`, `public.message_role`.
    pub data_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// `DEFAULT` expression (`pg_get_expr(adbin)`), absent for generated columns.
    pub default: Option<String>,
    /// Non-default collation, qualified and quoted, e.g. `pg_catalog."C"`.
    pub collation: Option<String>,
    /// Identity column.
    pub identity: Option<Identity>,
    /// The options of the identity column's sequence (the default for a column that is none).
    #[serde(default)]
    pub identity_options: IdentityOptions,
    /// `GENERATED ALWAYS AS (expr) STORED` (or `VIRTUAL`): the expression.
    pub generated: Option<String>,
    /// True for a `VIRTUAL` generated column (PostgreSQL 18+, where it is the default), false for
    /// `STORED` ones and for columns that are not generated.
    #[serde(default)]
    pub generated_virtual: bool,
    /// `COMMENT ON COLUMN`.
    pub comment: Option<String>,
}

/// Columns are equal when everything but their position is equal: column order is not a difference.
impl PartialEq for Column {
    fn eq(&self, other: &Self) -> bool {
        self.data_type == other.data_type
            && self.not_null == other.not_null
            && self.default == other.default
            && self.collation == other.collation
            && self.identity == other.identity
            && self.identity_options == other.identity_options
            && self.generated == other.generated
            && self.generated_virtual == other.generated_virtual
            && self.comment == other.comment
    }
}

impl Eq for Column {}

/// Kind of table constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    /// `PRIMARY KEY`.
    PrimaryKey,
    /// `UNIQUE` (including `NULLS NOT DISTINCT`).
    Unique,
    /// `CHECK`.
    Check,
    /// `EXCLUDE`.
    Exclusion,
    /// `FOREIGN KEY`.
    ForeignKey,
}

/// A table constraint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Constraint {
    /// Its kind.
    pub kind: ConstraintKind,
    /// `pg_get_constraintdef(oid)`, e.g. `FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE`,
    /// without any ` NOT VALID` suffix (validity is [`Constraint::valid`]).
    pub definition: String,
    /// For a foreign key: the referenced table (to order creation and drops).
    pub references: Option<QualName>,
    /// `convalidated`: false for a constraint added `NOT VALID` and not validated since.
    pub valid: bool,
    /// `COMMENT ON CONSTRAINT`.
    pub comment: Option<String>,
}

/// Constraints are equal when their definitions and comments are; validity is not part of the
/// desired state (pgfleet validates what it adds, and reports an invalid one as a separate step).
impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.definition == other.definition
            && self.comment == other.comment
    }
}

impl Eq for Constraint {}

/// An index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    /// `pg_get_indexdef(oid)`: the whole `CREATE [UNIQUE] INDEX name ON schema.table USING method (…)
    /// [INCLUDE (…)] [NULLS NOT DISTINCT] [WITH (…)] [WHERE …]` statement, as PostgreSQL prints it.
    pub definition: String,
    /// `indisvalid`: false for a leftover of a failed `CREATE INDEX CONCURRENTLY`, which must be rebuilt.
    pub valid: bool,
    /// `COMMENT ON INDEX`.
    pub comment: Option<String>,
}

/// Indexes are equal when definitions and comments are; an invalid index never equals a valid one.
impl PartialEq for Index {
    fn eq(&self, other: &Self) -> bool {
        self.definition == other.definition
            && self.comment == other.comment
            && self.valid == other.valid
    }
}

impl Eq for Index {}

/// A trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// `pg_get_triggerdef(oid)`: the whole `CREATE [CONSTRAINT] TRIGGER …` statement.
    pub definition: String,
    /// `tgenabled`: `O` (origin, the default), `D` (disabled), `R` (replica), `A` (always).
    pub enabled: String,
    /// `COMMENT ON TRIGGER`.
    pub comment: Option<String>,
}

/// A row-level security policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    /// `AS PERMISSIVE` (true) or `AS RESTRICTIVE`.
    pub permissive: bool,
    /// `TO` roles, sorted; `public` for PUBLIC.
    pub roles: Vec<String>,
    /// `USING (…)` expression.
    pub using: Option<String>,
    /// `WITH CHECK (…)` expression.
    pub with_check: Option<String>,
    /// `COMMENT ON POLICY`.
    pub comment: Option<String>,
}

/// A view or materialized view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Materialized view.
    pub materialized: bool,
    /// `pg_get_viewdef(oid)`: the `SELECT …` query.
    pub definition: String,
    /// Output columns in order, as (name, `format_type`).
    pub columns: Vec<(String, String)>,
    /// `WITH (…)` options (`reloptions`), e.g. `security_barrier=true`, sorted.
    pub options: Vec<String>,
    /// Tables, views and materialized views this view reads, sorted: dependents are dropped and
    /// recreated around changes to what they depend on.
    pub depends_on: Vec<QualName>,
    /// Indexes of a materialized view, by name.
    pub indexes: BTreeMap<String, Index>,
    /// `COMMENT ON VIEW` / `COMMENT ON MATERIALIZED VIEW`.
    pub comment: Option<String>,
}

/// A function or procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// True for a procedure.
    pub procedure: bool,
    /// `pg_get_function_result`, e.g. `trigger`, `integer`, `TABLE(id integer)`; `None` for procedures.
    pub returns: Option<String>,
    /// `pg_get_functiondef(oid)`: the whole `CREATE OR REPLACE FUNCTION …` statement.
    pub definition: String,
    /// `COMMENT ON FUNCTION` / `COMMENT ON PROCEDURE`.
    pub comment: Option<String>,
}

impl Model {
    /// Every table, view and materialized view name in the model.
    pub fn relation_names(&self) -> impl Iterator<Item = &QualName> {
        self.tables.keys().chain(self.views.keys())
    }

    /// The index `name` of the table or materialized view `relation`.
    pub fn index(&self, relation: &QualName, name: &str) -> Option<&Index> {
        match self.tables.get(relation) {
            Some(t) => t.indexes.get(name),
            None => self.views.get(relation).and_then(|v| v.indexes.get(name)),
        }
    }

    /// True when some column, domain or function signature uses the `vector`, `halfvec`, `sparsevec`
    /// or `bit`-quantized pgvector types, or the `vector` extension is installed.
    pub fn needs_pgvector(&self) -> bool {
        self.extensions.contains_key("vector")
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    #[test]
    fn models_round_trip_through_json_and_move_between_schemas() {
        let mut m = model();
        m.schemas
            .insert("t0123456789abcdef".into(), Default::default());
        let mut users = table(&[("id", "bigint"), ("v", "public.vector(3)")]);
        users.indexes.insert(
            "users_v".into(),
            index("CREATE INDEX users_v ON t0123456789abcdef.users USING hnsw (v public.vector_cosine_ops)"),
        );
        m.tables.insert(qn("t0123456789abcdef.users"), users);
        m.tables.insert(qn("other.x"), table(&[("id", "int")]));
        let json = serde_json::to_string(&m).unwrap();
        let back: crate::Model = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);

        let moved = m
            .only_schema("t0123456789abcdef")
            .rename_schema("t0123456789abcdef", "public");
        assert_eq!(moved.tables.len(), 1);
        let t = &moved.tables[&qn("public.users")];
        assert_eq!(
            t.indexes["users_v"].definition,
            "CREATE INDEX users_v ON public.users USING hnsw (v public.vector_cosine_ops)"
        );
        assert_eq!(
            t.columns["v"].data_type, "public.vector(3)",
            "extension types stay where they are"
        );
        assert!(
            moved.schemas.contains_key("public")
                && !moved.schemas.contains_key("t0123456789abcdef")
        );
    }
}
