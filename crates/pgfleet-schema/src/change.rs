//! [`Change`]: one difference between two models, verb + object, as the differ lists it and the
//! planner turns it into steps. Plain data: it names the object and carries the desired state the
//! planner needs to render SQL.
//!
//! Also here: the values some changes carry ([`EnumValuePosition`], [`TypeUse`]) and the objects a
//! comment can be on ([`CommentTarget`]).

use crate::model::{
    Column, Constraint, ConstraintKind, Domain, Function, FunctionId, Identity, IdentityOptions,
    Index, PartitionOf, Policy, QualName, Sequence, Table, Trigger, View,
};

/// Where [`Change::AddEnumValue`] puts a new label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnumValuePosition {
    /// At the end (`ADD VALUE 'x'`): only used when the enum has no labels yet.
    End,
    /// `ADD VALUE 'x' BEFORE 'label'`.
    Before(String),
    /// `ADD VALUE 'x' AFTER 'label'`.
    After(String),
}

/// A table column whose type is swapped by [`Change::ReplaceEnum`] or [`Change::ReplaceDomain`]: it
/// keeps using the type by name, so it is converted to the new type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeUse {
    /// The table.
    pub table: QualName,
    /// The column.
    pub column: String,
    /// True when the column is an array of the type (`public.mood[]`).
    pub array: bool,
    /// True when the column has a default now: it is dropped before the conversion (a default of the
    /// old type cannot be cast to the new one).
    pub drop_default: bool,
    /// The desired default, set again after the conversion.
    pub default: Option<String>,
    /// True when the column is generated (`ALTER COLUMN … TYPE` takes no `USING` then).
    pub generated: bool,
}

/// An object that can carry a comment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommentTarget {
    /// `COMMENT ON SCHEMA`.
    Schema(String),
    /// `COMMENT ON EXTENSION`.
    Extension(String),
    /// `COMMENT ON TYPE` (an enum).
    Type(QualName),
    /// `COMMENT ON DOMAIN`.
    Domain(QualName),
    /// `COMMENT ON SEQUENCE`.
    Sequence(QualName),
    /// `COMMENT ON TABLE`.
    Table(QualName),
    /// `COMMENT ON COLUMN`.
    Column {
        /// The table.
        table: QualName,
        /// The column.
        column: String,
    },
    /// `COMMENT ON CONSTRAINT … ON table`.
    Constraint {
        /// The table.
        table: QualName,
        /// The constraint.
        name: String,
    },
    /// `COMMENT ON INDEX` (the index lives in its table's schema).
    Index {
        /// The table or materialized view.
        table: QualName,
        /// The index.
        name: String,
    },
    /// `COMMENT ON TRIGGER … ON table`.
    Trigger {
        /// The table.
        table: QualName,
        /// The trigger.
        name: String,
    },
    /// `COMMENT ON POLICY … ON table`.
    Policy {
        /// The table.
        table: QualName,
        /// The policy.
        name: String,
    },
    /// `COMMENT ON VIEW`.
    View(QualName),
    /// `COMMENT ON MATERIALIZED VIEW`.
    MaterializedView(QualName),
    /// `COMMENT ON FUNCTION`.
    Function(FunctionId),
    /// `COMMENT ON PROCEDURE`.
    Procedure(FunctionId),
}

/// One difference between the current and the desired model.
///
/// Variants are verb + object. `Add*` creates, `Drop*` removes, `Alter*` changes in place,
/// `Replace*` recreates (or swaps) an object under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Create a schema.
    AddSchema {
        /// Schema name.
        name: String,
    },
    /// Drop a schema (after everything in it).
    DropSchema {
        /// Schema name.
        name: String,
    },
    /// Create an extension in a schema.
    AddExtension {
        /// Extension name.
        name: String,
        /// Schema its objects go to.
        schema: String,
    },
    /// Move an extension's objects to another schema.
    AlterExtensionSchema {
        /// Extension name.
        name: String,
        /// New schema.
        schema: String,
    },
    /// Drop an extension.
    DropExtension {
        /// Extension name.
        name: String,
    },
    /// Create an enum type.
    AddEnum {
        /// Type name.
        name: QualName,
        /// Labels in order.
        labels: Vec<String>,
    },
    /// Add one label to an existing enum (labels are added in desired order, so the neighbor exists).
    AddEnumValue {
        /// Type name.
        name: QualName,
        /// The new label.
        label: String,
        /// Where it goes.
        position: EnumValuePosition,
    },
    /// Swap an enum whose labels were removed or reordered: rename the old type away, create the new
    /// one, convert every column that uses it, drop the old type.
    ReplaceEnum {
        /// Type name.
        name: QualName,
        /// The desired labels.
        labels: Vec<String>,
        /// Labels that disappear (their rows cannot be converted).
        removed: Vec<String>,
        /// Columns of existing tables to convert.
        uses: Vec<TypeUse>,
    },
    /// Drop an enum type.
    DropEnum {
        /// Type name.
        name: QualName,
    },
    /// Create a domain (with its checks).
    AddDomain {
        /// Domain name.
        name: QualName,
        /// The desired domain.
        domain: Domain,
    },
    /// Swap a domain whose base type or collation changed (like [`Change::ReplaceEnum`]).
    ReplaceDomain {
        /// Domain name.
        name: QualName,
        /// The desired domain.
        domain: Domain,
        /// Columns of existing tables to convert.
        uses: Vec<TypeUse>,
    },
    /// `ALTER DOMAIN … SET DEFAULT` / `DROP DEFAULT`.
    AlterDomainDefault {
        /// Domain name.
        name: QualName,
        /// The new default.
        default: Option<String>,
    },
    /// `ALTER DOMAIN … SET NOT NULL` / `DROP NOT NULL`.
    AlterDomainNotNull {
        /// Domain name.
        name: QualName,
        /// The new setting.
        not_null: bool,
    },
    /// `ALTER DOMAIN … ADD CONSTRAINT`.
    AddDomainCheck {
        /// Domain name.
        name: QualName,
        /// Constraint name.
        check: String,
        /// `CHECK (…)`.
        definition: String,
    },
    /// `ALTER DOMAIN … DROP CONSTRAINT`.
    DropDomainCheck {
        /// Domain name.
        name: QualName,
        /// Constraint name.
        check: String,
    },
    /// Drop a domain.
    DropDomain {
        /// Domain name.
        name: QualName,
    },
    /// Create a sequence (ownership is a separate [`Change::AlterSequenceOwner`]).
    AddSequence {
        /// Sequence name.
        name: QualName,
        /// The desired sequence.
        sequence: Sequence,
    },
    /// Change a sequence's type or options.
    AlterSequence {
        /// Sequence name.
        name: QualName,
        /// The desired sequence.
        sequence: Sequence,
    },
    /// `ALTER SEQUENCE … OWNED BY` (also emitted, unchanged, when the owning table or column is
    /// recreated: the sequence must be released first or it would be dropped with it).
    AlterSequenceOwner {
        /// Sequence name.
        name: QualName,
        /// The owning table and column, or none.
        owned_by: Option<(QualName, String)>,
    },
    /// Drop a sequence.
    DropSequence {
        /// Sequence name.
        name: QualName,
    },
    /// Create a function or procedure.
    AddFunction {
        /// Identity.
        id: FunctionId,
        /// The desired function.
        function: Function,
    },
    /// Change a function or procedure in place (`CREATE OR REPLACE`).
    AlterFunction {
        /// Identity.
        id: FunctionId,
        /// The desired function.
        function: Function,
    },
    /// Drop and create a function or procedure whose result type or kind changed.
    RecreateFunction {
        /// Identity.
        id: FunctionId,
        /// True when the current object is a procedure.
        was_procedure: bool,
        /// The desired function.
        function: Function,
    },
    /// Drop a function or procedure.
    DropFunction {
        /// Identity.
        id: FunctionId,
        /// True for a procedure.
        procedure: bool,
    },
    /// Create a table with its columns (its constraints, indexes, … follow as their own changes).
    AddTable {
        /// Table name.
        name: QualName,
        /// The desired table.
        table: Table,
    },
    /// Drop and create a table whose kind, partition key or partition parent status changed
    /// (its sub-objects follow as `Add*` changes).
    ReplaceTable {
        /// Table name.
        name: QualName,
        /// The desired table.
        table: Table,
    },
    /// Drop a table.
    DropTable {
        /// Table name.
        name: QualName,
    },
    /// `ALTER TABLE … SET LOGGED` / `SET UNLOGGED`.
    AlterTableLogged {
        /// Table name.
        name: QualName,
        /// The new setting.
        unlogged: bool,
    },
    /// Move a partition to another parent or bound (`DETACH PARTITION` + `ATTACH PARTITION`).
    AlterPartitionBound {
        /// The partition.
        name: QualName,
        /// Current parent and bound.
        from: PartitionOf,
        /// Desired parent and bound.
        to: PartitionOf,
    },
    /// `ALTER TABLE … ENABLE` / `DISABLE ROW LEVEL SECURITY`.
    AlterTableRls {
        /// Table name.
        name: QualName,
        /// The new setting.
        enabled: bool,
    },
    /// `ALTER TABLE … FORCE` / `NO FORCE ROW LEVEL SECURITY`.
    AlterTableForceRls {
        /// Table name.
        name: QualName,
        /// The new setting.
        forced: bool,
    },
    /// Add a column to an existing table.
    AddColumn {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
        /// The desired column.
        def: Column,
    },
    /// Drop and re-add a column (a stored generated expression appears or changes).
    ReplaceColumn {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
        /// The desired column.
        def: Column,
    },
    /// `ALTER COLUMN … TYPE` (type or collation).
    AlterColumnType {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
        /// The new type (`format_type` text).
        data_type: String,
        /// The new collation; `None` means the type's default.
        collation: Option<String>,
        /// True when the column has a default now: it is dropped first (the desired default is set
        /// again by an [`Change::AlterColumnDefault`]).
        drop_default: bool,
    },
    /// `ALTER COLUMN … SET DEFAULT` / `DROP DEFAULT`.
    AlterColumnDefault {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
        /// The new default.
        default: Option<String>,
    },
    /// `ALTER COLUMN … SET NOT NULL` / `DROP NOT NULL`.
    AlterColumnNotNull {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
        /// The new setting.
        not_null: bool,
    },
    /// `ALTER COLUMN … ADD GENERATED … AS IDENTITY` / `SET GENERATED …` / `DROP IDENTITY`.
    AlterColumnIdentity {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
        /// Current identity.
        from: Option<Identity>,
        /// Desired identity.
        to: Option<Identity>,
        /// Desired options of its sequence (meaningful when `to` is an identity).
        options: IdentityOptions,
        /// Whether the options differ from the current ones (always when it becomes an identity).
        options_changed: bool,
    },
    /// `ALTER COLUMN … DROP EXPRESSION`: a generated column becomes a plain one, keeping its data.
    DropColumnExpression {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
    },
    /// Drop a column.
    DropColumn {
        /// Table name.
        table: QualName,
        /// Column name.
        column: String,
    },
    /// Add a table constraint (validity as in the desired constraint).
    AddConstraint {
        /// Table name.
        table: QualName,
        /// Constraint name.
        name: String,
        /// The desired constraint.
        constraint: Constraint,
    },
    /// `VALIDATE CONSTRAINT` for a constraint that exists `NOT VALID`.
    ValidateConstraint {
        /// Table name.
        table: QualName,
        /// Constraint name.
        name: String,
    },
    /// Drop a table constraint.
    DropConstraint {
        /// Table name.
        table: QualName,
        /// Constraint name.
        name: String,
        /// Its current kind (foreign keys are dropped first).
        kind: ConstraintKind,
    },
    /// Create an index on a table or materialized view.
    AddIndex {
        /// Table or materialized view.
        table: QualName,
        /// Index name.
        name: String,
        /// The desired index.
        index: Index,
    },
    /// Rebuild an index whose definition changed, or that is invalid now.
    ReplaceIndex {
        /// Table or materialized view.
        table: QualName,
        /// Index name.
        name: String,
        /// The desired index.
        index: Index,
    },
    /// Drop an index.
    DropIndex {
        /// Table or materialized view.
        table: QualName,
        /// Index name.
        name: String,
    },
    /// Create a trigger (and set its enabled state when not the default).
    AddTrigger {
        /// Table name.
        table: QualName,
        /// Trigger name.
        name: String,
        /// The desired trigger.
        trigger: Trigger,
    },
    /// `ALTER TABLE … ENABLE` / `DISABLE … TRIGGER`.
    AlterTriggerEnabled {
        /// Table name.
        table: QualName,
        /// Trigger name.
        name: String,
        /// `O`, `D`, `R` or `A` (see [`Trigger::enabled`]).
        enabled: String,
    },
    /// Drop a trigger.
    DropTrigger {
        /// Table name.
        table: QualName,
        /// Trigger name.
        name: String,
    },
    /// Create a row-level security policy.
    AddPolicy {
        /// Table name.
        table: QualName,
        /// Policy name.
        name: String,
        /// The desired policy.
        policy: Policy,
    },
    /// Drop a row-level security policy.
    DropPolicy {
        /// Table name.
        table: QualName,
        /// Policy name.
        name: String,
    },
    /// Create a view or materialized view (its indexes follow as [`Change::AddIndex`]).
    AddView {
        /// View name.
        name: QualName,
        /// The desired view.
        view: View,
    },
    /// `CREATE OR REPLACE VIEW`: the definition changed and the current columns are a prefix of the
    /// desired ones.
    ReplaceView {
        /// View name.
        name: QualName,
        /// The desired view.
        view: View,
    },
    /// Drop a view or materialized view (followed by an [`Change::AddView`] when it is recreated).
    DropView {
        /// View name.
        name: QualName,
        /// True for a materialized view.
        materialized: bool,
    },
    /// `COMMENT ON … IS …` / `IS NULL`.
    AlterComment {
        /// The object.
        target: CommentTarget,
        /// The new comment.
        comment: Option<String>,
    },
}
