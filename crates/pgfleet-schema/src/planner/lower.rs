//! Lowering: each [`Change`] becomes one or more steps, each placed in a [`Phase`].

use super::conversion::{self, Class, Conversion, Using};
use super::render::{
    self, NEW_INDEX_SUFFIX, OLD_TYPE_SUFFIX, column_def, column_name, function_ref, sibling,
    temp_name,
};
use super::{Ctx, Phase, Staged};
use crate::diff::{Change, EnumValuePosition, TypeUse, compare::columns_kept};
use crate::model::{
    ConstraintKind, Domain, Function, FunctionId, IdentityOptions, Index, QualName,
};
use crate::plan::{Hazard, Step};
use crate::quote::{ident, literal};

use Hazard::{
    BreakingChange, DataLoss, IndexBuild, LongLock, MayFail, TableRewrite, ValidationScan,
};

/// A step inside the transaction.
fn tx(description: String, sql: String, hazards: &[Hazard]) -> Step {
    Step {
        description,
        sql,
        hazards: hazards.to_vec(),
        transactional: true,
    }
}

/// A step that runs on its own, outside any transaction.
fn solo(description: String, sql: String, hazards: &[Hazard]) -> Step {
    Step {
        transactional: false,
        ..tx(description, sql, hazards)
    }
}

/// Ranks of column steps inside one table: what must be undone before what is set.
mod col_rank {
    pub(super) const DROP_COLUMN: u32 = 0;
    pub(super) const DROP_IDENTITY: u32 = 1;
    pub(super) const DROP_DEFAULT: u32 = 2;
    pub(super) const TYPE: u32 = 3;
    pub(super) const DROP_NOT_NULL: u32 = 4;
    pub(super) const SET_DEFAULT: u32 = 5;
    pub(super) const SET_NOT_NULL: u32 = 6;
    pub(super) const SET_IDENTITY: u32 = 7;
    pub(super) const SYNC_IDENTITY: u32 = 8;
    pub(super) const ADD_COLUMN: u32 = 9;
}

impl Ctx<'_> {
    /// Drops the foreign keys that tie tables to be dropped into cycles.
    pub(super) fn stage_cycle_breaks(&self, out: &mut Staged) {
        for (order, phase) in [
            (&self.early_drops, Phase::DropReplacedTables),
            (&self.late_drops, Phase::DropTables),
        ] {
            for (table, name) in &order.cycle_fks {
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!(
                            "drop foreign key {} on {table} (reference cycle)",
                            ident(name)
                        ),
                        format!("ALTER TABLE {table} DROP CONSTRAINT {}", ident(name)),
                        &[],
                    ),
                );
            }
        }
    }

    pub(super) fn lower(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddSchema { name } => out.push(
                Phase::CreateSchemas,
                0,
                0,
                tx(
                    format!("create schema {}", ident(name)),
                    format!("CREATE SCHEMA {}", ident(name)),
                    &[],
                ),
            ),
            Change::DropSchema { name } => out.push(
                Phase::DropSchemas,
                0,
                0,
                tx(
                    format!("drop schema {}", ident(name)),
                    format!("DROP SCHEMA {}", ident(name)),
                    &[DataLoss],
                ),
            ),
            Change::AddExtension { name, schema } => out.push(
                Phase::CreateExtensions,
                0,
                0,
                tx(
                    format!(
                        "create extension {} in schema {}",
                        ident(name),
                        ident(schema)
                    ),
                    format!(
                        "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}",
                        ident(name),
                        ident(schema)
                    ),
                    &[],
                ),
            ),
            Change::AlterExtensionSchema { name, schema } => out.push(
                Phase::CreateExtensions,
                0,
                1,
                tx(
                    format!("move extension {} to schema {}", ident(name), ident(schema)),
                    format!(
                        "ALTER EXTENSION {} SET SCHEMA {}",
                        ident(name),
                        ident(schema)
                    ),
                    &[],
                ),
            ),
            Change::DropExtension { name } => out.push(
                Phase::DropExtensions,
                0,
                0,
                tx(
                    format!("drop extension {}", ident(name)),
                    format!("DROP EXTENSION {}", ident(name)),
                    &[DataLoss],
                ),
            ),
            Change::AddEnum { name, labels } => out.push(
                Phase::CreateTypes,
                0,
                1,
                tx(
                    format!("create enum {name}"),
                    create_enum(name, labels),
                    &[],
                ),
            ),
            Change::AddEnumValue {
                name,
                label,
                position,
            } => {
                let place = match position {
                    EnumValuePosition::End => String::new(),
                    EnumValuePosition::Before(l) => format!(" BEFORE {}", literal(l)),
                    EnumValuePosition::After(l) => format!(" AFTER {}", literal(l)),
                };
                out.push(
                    Phase::PreEnumValues,
                    0,
                    0,
                    solo(
                        format!("add value {} to enum {name}", literal(label)),
                        format!(
                            "ALTER TYPE {name} ADD VALUE IF NOT EXISTS {}{place}",
                            literal(label)
                        ),
                        &[],
                    ),
                );
            }
            Change::ReplaceEnum {
                name, labels, uses, ..
            } => {
                let create = vec![tx(
                    format!("create enum {name} with its new labels"),
                    create_enum(name, labels),
                    &[],
                )];
                // Rows holding a removed label make their column's conversion fail (`may_fail`).
                self.swap_type(out, name, true, create, uses);
            }
            Change::DropEnum { name } => out.push(
                Phase::DropTypes,
                0,
                0,
                tx(
                    format!("drop enum {name}"),
                    format!("DROP TYPE {name}"),
                    &[DataLoss],
                ),
            ),
            Change::AddDomain { name, domain } => {
                for step in domain_steps(name, domain, false) {
                    out.push(Phase::CreateDomains, 0, 0, step);
                }
            }
            Change::ReplaceDomain { name, domain, uses } => {
                let create = domain_steps(name, domain, true);
                self.swap_type(out, name, false, create, uses);
            }
            Change::AlterDomainDefault { name, default } => {
                let (desc, sql) = match default {
                    Some(d) => (
                        format!("set default of domain {name}"),
                        format!("ALTER DOMAIN {name} SET DEFAULT {d}"),
                    ),
                    None => (
                        format!("drop default of domain {name}"),
                        format!("ALTER DOMAIN {name} DROP DEFAULT"),
                    ),
                };
                out.push(Phase::AlterDomains, 0, 0, tx(desc, sql, &[]));
            }
            Change::AlterDomainNotNull { name, not_null } => {
                let step = if *not_null {
                    tx(
                        format!("set not null on domain {name}"),
                        format!("ALTER DOMAIN {name} SET NOT NULL"),
                        &[ValidationScan],
                    )
                } else {
                    tx(
                        format!("drop not null on domain {name}"),
                        format!("ALTER DOMAIN {name} DROP NOT NULL"),
                        &[],
                    )
                };
                out.push(Phase::AlterDomains, 0, 0, step);
            }
            Change::AddDomainCheck {
                name,
                check,
                definition,
            } => out.push(
                Phase::AlterDomains,
                0,
                1,
                tx(
                    format!("add check {} to domain {name}", ident(check)),
                    format!(
                        "ALTER DOMAIN {name} ADD CONSTRAINT {} {definition}",
                        ident(check)
                    ),
                    &[ValidationScan],
                ),
            ),
            Change::DropDomainCheck { name, check } => out.push(
                Phase::AlterDomains,
                0,
                0,
                tx(
                    format!("drop check {} from domain {name}", ident(check)),
                    format!("ALTER DOMAIN {name} DROP CONSTRAINT {}", ident(check)),
                    &[],
                ),
            ),
            Change::DropDomain { name } => out.push(
                Phase::DropDomains,
                0,
                0,
                tx(
                    format!("drop domain {name}"),
                    format!("DROP DOMAIN {name}"),
                    &[DataLoss],
                ),
            ),
            Change::AddSequence { name, sequence } => out.push(
                Phase::CreateSequences,
                0,
                0,
                tx(
                    format!("create sequence {name}"),
                    format!(
                        "CREATE SEQUENCE {name} {}",
                        render::sequence_options(sequence)
                    ),
                    &[],
                ),
            ),
            Change::AlterSequence { name, sequence } => {
                // A narrower range (a smaller type, a lower MAXVALUE, a higher MINVALUE) fails when
                // the sequence's current value is outside it; it never changes the value.
                let narrower = self.cur.sequences.get(name).is_none_or(|c| {
                    sequence.min_value > c.min_value || sequence.max_value < c.max_value
                });
                out.push(
                    Phase::CreateSequences,
                    0,
                    0,
                    tx(
                        format!("alter sequence {name}"),
                        format!(
                            "ALTER SEQUENCE {name} {}",
                            render::sequence_options(sequence)
                        ),
                        if narrower { &[MayFail] } else { &[] },
                    ),
                )
            }
            Change::AlterSequenceOwner { name, owned_by } => {
                self.sequence_owner(out, name, owned_by.as_ref())
            }
            Change::DropSequence { name } => {
                let gone_with_owner = self
                    .cur
                    .sequences
                    .get(name)
                    .and_then(|s| s.owned_by.as_ref())
                    .is_some_and(|o| self.owner_goes_away(o));
                let if_exists = if gone_with_owner { "IF EXISTS " } else { "" };
                out.push(
                    Phase::DropSequences,
                    0,
                    0,
                    tx(
                        format!("drop sequence {name}"),
                        format!("DROP SEQUENCE {if_exists}{name}"),
                        &[DataLoss],
                    ),
                );
            }
            Change::AddFunction { id, function } | Change::AlterFunction { id, function } => {
                let verb = if matches!(change, Change::AddFunction { .. }) {
                    "create"
                } else {
                    "replace"
                };
                out.push(
                    self.function_phase(id, function),
                    0,
                    0,
                    tx(
                        format!(
                            "{verb} {} {}",
                            routine_kind(function.procedure),
                            function_ref(id)
                        ),
                        function.definition.trim_end().to_string(),
                        &[],
                    ),
                );
            }
            Change::RecreateFunction {
                id,
                was_procedure,
                function,
            } => {
                let phase = self.function_phase(id, function);
                out.push(
                    phase,
                    0,
                    0,
                    drop_function(id, *was_procedure, "its result type changed"),
                );
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!(
                            "create {} {}",
                            routine_kind(function.procedure),
                            function_ref(id)
                        ),
                        function.definition.trim_end().to_string(),
                        &[],
                    ),
                );
            }
            Change::DropFunction { id, procedure } => {
                // A SQL-standard body depends on the tables it reads: drop it before them.
                let atomic = self
                    .cur
                    .functions
                    .get(id)
                    .is_some_and(|f| f.definition.contains("BEGIN ATOMIC"));
                let phase = if atomic {
                    Phase::DropAtomicFunctions
                } else {
                    Phase::DropFunctions
                };
                out.push(phase, 0, 0, drop_function(id, *procedure, ""))
            }
            Change::AddTable { name, table } => out.push(
                Phase::CreateTables,
                self.create_rank.get(name).copied().unwrap_or(0),
                0,
                tx(
                    format!("create table {name}"),
                    render::create_table(name, table),
                    &[],
                ),
            ),
            Change::ReplaceTable { name, table } => {
                self.drop_table(out, name, "it is recreated");
                out.push(
                    Phase::CreateTables,
                    self.create_rank.get(name).copied().unwrap_or(0),
                    0,
                    tx(
                        format!("create table {name} again"),
                        render::create_table(name, table),
                        &[],
                    ),
                );
            }
            Change::DropTable { name } => self.drop_table(out, name, ""),
            Change::AlterTableLogged { name, unlogged } => {
                let what = if *unlogged { "UNLOGGED" } else { "LOGGED" };
                out.push(
                    Phase::AlterTables,
                    self.table_rank(name),
                    0,
                    tx(
                        format!("make table {name} {}", what.to_lowercase()),
                        format!("ALTER TABLE {name} SET {what}"),
                        &[TableRewrite, LongLock],
                    ),
                );
            }
            Change::AlterPartitionBound { name, from, to } => {
                let rank = self.table_rank(name);
                out.push(
                    Phase::DetachPartitions,
                    rank,
                    0,
                    tx(
                        format!("detach partition {name} from {}", from.parent),
                        format!("ALTER TABLE {} DETACH PARTITION {name}", from.parent),
                        &[],
                    ),
                );
                out.push(
                    Phase::AttachPartitions,
                    rank,
                    0,
                    tx(
                        format!("attach partition {name} to {} {}", to.parent, to.bound),
                        format!(
                            "ALTER TABLE {} ATTACH PARTITION {name} {}",
                            to.parent, to.bound
                        ),
                        &[LongLock, ValidationScan],
                    ),
                );
            }
            Change::AlterTableRls { name, enabled } => {
                let what = if *enabled { "ENABLE" } else { "DISABLE" };
                out.push(
                    Phase::RowSecurity,
                    self.table_rank(name),
                    0,
                    tx(
                        format!("{} row level security on {name}", what.to_lowercase()),
                        format!("ALTER TABLE {name} {what} ROW LEVEL SECURITY"),
                        &[],
                    ),
                );
            }
            Change::AlterTableForceRls { name, forced } => {
                let what = if *forced { "FORCE" } else { "NO FORCE" };
                out.push(
                    Phase::RowSecurity,
                    self.table_rank(name),
                    1,
                    tx(
                        format!("{} row level security on {name}", what.to_lowercase()),
                        format!("ALTER TABLE {name} {what} ROW LEVEL SECURITY"),
                        &[],
                    ),
                );
            }
            Change::AddColumn { table, column, def } => {
                let hazards: &[Hazard] = if self.existing_table(table)
                    && (def.generated.is_some() || def.identity.is_some())
                {
                    &[TableRewrite]
                } else {
                    &[]
                };
                self.column_step(
                    out,
                    table,
                    col_rank::ADD_COLUMN,
                    format!("add column {}", column_name(table, column)),
                    format!("ADD COLUMN {}", column_def(column, def)),
                    hazards,
                );
            }
            Change::ReplaceColumn { table, column, def } => {
                let was_generated = self
                    .cur
                    .tables
                    .get(table)
                    .and_then(|t| t.columns.get(column))
                    .is_some_and(|c| c.generated.is_some());
                let hazards: &[Hazard] = if was_generated {
                    &[BreakingChange]
                } else {
                    &[DataLoss, BreakingChange]
                };
                self.column_step(
                    out,
                    table,
                    col_rank::DROP_COLUMN,
                    format!(
                        "drop column {} to add it again (generated expression changed)",
                        column_name(table, column)
                    ),
                    format!("DROP COLUMN {}", ident(column)),
                    hazards,
                );
                self.column_step(
                    out,
                    table,
                    col_rank::ADD_COLUMN,
                    format!("add column {} again", column_name(table, column)),
                    format!("ADD COLUMN {}", column_def(column, def)),
                    &[TableRewrite],
                );
            }
            Change::DropColumn { table, column } => self.column_step(
                out,
                table,
                col_rank::DROP_COLUMN,
                format!("drop column {}", column_name(table, column)),
                format!("DROP COLUMN {}", ident(column)),
                &[DataLoss, BreakingChange],
            ),
            Change::AlterColumnType {
                table,
                column,
                data_type,
                collation,
                drop_default,
            } => self.alter_column_type(
                out,
                table,
                column,
                data_type,
                collation.as_deref(),
                *drop_default,
            ),
            Change::AlterColumnDefault {
                table,
                column,
                default,
            } => match default {
                Some(d) => self.column_step(
                    out,
                    table,
                    col_rank::SET_DEFAULT,
                    format!("set default of column {}", column_name(table, column)),
                    format!("ALTER COLUMN {} SET DEFAULT {d}", ident(column)),
                    &[],
                ),
                None => self.column_step(
                    out,
                    table,
                    col_rank::DROP_DEFAULT,
                    format!("drop default of column {}", column_name(table, column)),
                    format!("ALTER COLUMN {} DROP DEFAULT", ident(column)),
                    &[],
                ),
            },
            Change::AlterColumnNotNull {
                table,
                column,
                not_null,
            } => {
                if *not_null {
                    let hazards: &[Hazard] = if self.existing_table(table) {
                        &[LongLock]
                    } else {
                        &[]
                    };
                    self.column_step(
                        out,
                        table,
                        col_rank::SET_NOT_NULL,
                        format!("set not null on column {}", column_name(table, column)),
                        format!("ALTER COLUMN {} SET NOT NULL", ident(column)),
                        hazards,
                    );
                } else {
                    self.column_step(
                        out,
                        table,
                        col_rank::DROP_NOT_NULL,
                        format!("drop not null on column {}", column_name(table, column)),
                        format!("ALTER COLUMN {} DROP NOT NULL", ident(column)),
                        &[],
                    );
                }
            }
            Change::AlterColumnIdentity {
                table,
                column,
                from,
                to,
                options,
                options_changed,
            } => {
                let col = column_name(table, column);
                match (from, to) {
                    (_, None) => self.column_step(
                        out,
                        table,
                        col_rank::DROP_IDENTITY,
                        format!("drop identity of column {col}"),
                        format!("ALTER COLUMN {} DROP IDENTITY", ident(column)),
                        &[],
                    ),
                    (None, Some(k)) => {
                        self.column_step(
                            out,
                            table,
                            col_rank::SET_IDENTITY,
                            format!("make identity column {col}"),
                            format!(
                                "ALTER COLUMN {} ADD GENERATED {} AS IDENTITY{}",
                                ident(column),
                                render::identity(*k),
                                render::identity_options(options)
                            ),
                            &[],
                        );
                        if self.existing_table(table) {
                            self.sync_identity(out, table, column, options);
                        }
                    }
                    (Some(f), Some(k)) => {
                        let mut actions = Vec::new();
                        if f != k {
                            actions.push(format!("SET GENERATED {}", render::identity(*k)));
                        }
                        if *options_changed {
                            actions.push(render::set_identity_options(options));
                        }
                        let hazards: &[Hazard] =
                            if *options_changed && self.identity_range_narrows(table, column) {
                                &[MayFail]
                            } else {
                                &[]
                            };
                        self.column_step(
                            out,
                            table,
                            col_rank::SET_IDENTITY,
                            format!("change identity of column {col}"),
                            format!("ALTER COLUMN {} {}", ident(column), actions.join(" ")),
                            hazards,
                        );
                    }
                }
            }
            Change::DropColumnExpression { table, column } => self.column_step(
                out,
                table,
                col_rank::DROP_DEFAULT,
                format!(
                    "make generated column {} a plain column",
                    column_name(table, column)
                ),
                format!("ALTER COLUMN {} DROP EXPRESSION", ident(column)),
                &[],
            ),
            Change::AddConstraint {
                table,
                name,
                constraint,
            } => self.add_constraint(out, table, name, constraint),
            Change::ValidateConstraint { table, name } => self.validate(out, table, name),
            Change::DropConstraint { table, name, kind } => {
                let phase = if *kind == ConstraintKind::ForeignKey {
                    Phase::DropForeignKeys
                } else {
                    Phase::DropConstraints
                };
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!("drop {} {} on {table}", constraint_kind(*kind), ident(name)),
                        format!("ALTER TABLE {table} DROP CONSTRAINT {}", ident(name)),
                        &[],
                    ),
                );
            }
            Change::AddIndex { table, name, index } => {
                if self.build_post(table, &index.definition) {
                    out.push(
                        Phase::PostCreateIndexes,
                        0,
                        0,
                        build_concurrently(table, name, index, None),
                    );
                } else {
                    self.index_in_tx(out, table, name, index);
                }
            }
            Change::ReplaceIndex { table, name, index } => {
                self.replace_index(out, table, name, index)
            }
            Change::DropIndex { table, name } => {
                let qn = sibling(table, name);
                if self.drop_post(table, name) {
                    out.push(Phase::PostDropIndexes, 0, 0, drop_concurrently(&qn, ""));
                } else {
                    out.push(
                        Phase::DropIndexes,
                        0,
                        0,
                        tx(format!("drop index {qn}"), format!("DROP INDEX {qn}"), &[]),
                    );
                }
            }
            Change::AddTrigger {
                table,
                name,
                trigger,
            } => {
                out.push(
                    Phase::CreateTriggers,
                    0,
                    0,
                    tx(
                        format!("create trigger {} on {table}", ident(name)),
                        trigger.definition.trim_end().to_string(),
                        &[],
                    ),
                );
                if trigger.enabled != "O" {
                    self.trigger_enabled(out, table, name, &trigger.enabled);
                }
            }
            Change::AlterTriggerEnabled {
                table,
                name,
                enabled,
            } => self.trigger_enabled(out, table, name, enabled),
            Change::DropTrigger { table, name } => out.push(
                Phase::DropTriggers,
                0,
                0,
                tx(
                    format!("drop trigger {} on {table}", ident(name)),
                    format!("DROP TRIGGER {} ON {table}", ident(name)),
                    &[],
                ),
            ),
            Change::AddPolicy {
                table,
                name,
                policy,
            } => out.push(
                Phase::CreatePolicies,
                0,
                0,
                tx(
                    format!("create policy {} on {table}", ident(name)),
                    render::create_policy(table, name, policy),
                    &[],
                ),
            ),
            Change::DropPolicy { table, name } => out.push(
                Phase::DropPolicies,
                0,
                0,
                tx(
                    format!("drop policy {} on {table}", ident(name)),
                    format!("DROP POLICY {} ON {table}", ident(name)),
                    &[],
                ),
            ),
            Change::AddView { name, view } | Change::ReplaceView { name, view } => {
                let replace = matches!(change, Change::ReplaceView { .. });
                let kind = if view.materialized {
                    "materialized view"
                } else {
                    "view"
                };
                let desc = if replace {
                    format!("replace {kind} {name}")
                } else {
                    format!("create {kind} {name}")
                };
                out.push(
                    Phase::CreateViews,
                    self.view_create_rank.get(name).copied().unwrap_or(0),
                    0,
                    tx(desc, render::create_view(name, view, replace), &[]),
                );
            }
            Change::DropView { name, materialized } => {
                let recreated = self.created_views.contains(name);
                let breaking = match (self.cur.views.get(name), self.des.views.get(name)) {
                    (Some(c), Some(d)) if recreated => !columns_kept(c, d),
                    _ => true,
                };
                let kind = if *materialized {
                    "MATERIALIZED VIEW"
                } else {
                    "VIEW"
                };
                let why = if recreated {
                    " (created again below)"
                } else {
                    ""
                };
                out.push(
                    Phase::DropViews,
                    self.view_drop_rank.get(name).copied().unwrap_or(0),
                    0,
                    tx(
                        format!("drop {} {name}{why}", kind.to_lowercase()),
                        format!("DROP {kind} {name}"),
                        if breaking { &[BreakingChange] } else { &[] },
                    ),
                );
            }
            Change::AlterComment { target, comment } => {
                let phase = match target {
                    crate::diff::CommentTarget::Index { table, name }
                        if self.post_built.contains(&(table.clone(), name.clone())) =>
                    {
                        Phase::PostComments
                    }
                    _ => Phase::Comments,
                };
                let what = if comment.is_some() { "set" } else { "remove" };
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!("{what} comment on {}", render::comment_description(target)),
                        render::comment(target, comment),
                        &[],
                    ),
                );
            }
        }
    }

    /// One `ALTER TABLE t …` step of the column phase.
    /// A column that becomes an identity column on a table with rows: its new sequence starts at
    /// its first value, which the rows may already use. Moves it past them, so the next insert
    /// gets a free value.
    fn sync_identity(
        &self,
        out: &mut Staged,
        table: &QualName,
        column: &str,
        options: &IdentityOptions,
    ) {
        let (agg, cmp) = if options.increment > 0 {
            ("max", ">=")
        } else {
            ("min", "<=")
        };
        out.push(
            Phase::AlterColumns,
            self.table_rank(table),
            col_rank::SYNC_IDENTITY,
            tx(
                format!(
                    "move the new identity sequence of column {} past the values in use",
                    column_name(table, column)
                ),
                // Not pg_get_serial_sequence: a former serial column still owns its old sequence
                // here (it is dropped later), and that function may return it.
                format!(
                    "SELECT pg_catalog.setval(d.objid::pg_catalog.regclass, s.v) \
                     FROM (SELECT pg_catalog.{agg}({}) AS v FROM {table}) s, pg_catalog.pg_depend d \
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'i' \
                     AND d.refobjid = {}::pg_catalog.regclass AND a.attname = {} AND s.v {cmp} {}",
                    ident(column),
                    literal(&table.to_string()),
                    literal(column),
                    options.first_value()
                ),
                &[],
            ),
        );
    }

    /// True when the range of an identity column's sequence gets narrower (a lower maximum, a
    /// higher minimum): `ALTER SEQUENCE` fails when the current value is outside the new range.
    fn identity_range_narrows(&self, table: &QualName, column: &str) -> bool {
        let range = |m: &crate::model::Model| {
            m.tables
                .get(table)
                .and_then(|t| t.columns.get(column))
                .map(|c| identity_range(&c.data_type, &c.identity_options))
        };
        match (range(self.cur), range(self.des)) {
            (Some((cur_min, cur_max)), Some((des_min, des_max))) => {
                des_min > cur_min || des_max < cur_max
            }
            _ => true,
        }
    }

    fn column_step(
        &self,
        out: &mut Staged,
        table: &QualName,
        rank: u32,
        description: String,
        action: String,
        hazards: &[Hazard],
    ) {
        out.push(
            Phase::AlterColumns,
            self.table_rank(table),
            rank,
            tx(
                description,
                format!("ALTER TABLE {table} {action}"),
                hazards,
            ),
        );
    }

    fn alter_column_type(
        &self,
        out: &mut Staged,
        table: &QualName,
        column: &str,
        data_type: &str,
        collation: Option<&str>,
        drop_default: bool,
    ) {
        let cur = self
            .cur
            .tables
            .get(table)
            .and_then(|t| t.columns.get(column));
        let des = self
            .des
            .tables
            .get(table)
            .and_then(|t| t.columns.get(column));
        let type_changed = cur.is_none_or(|c| c.data_type != data_type);
        if drop_default {
            self.column_step(
                out,
                table,
                col_rank::DROP_DEFAULT,
                format!(
                    "drop default of column {} before its type changes",
                    column_name(table, column)
                ),
                format!("ALTER COLUMN {} DROP DEFAULT", ident(column)),
                &[],
            );
        }
        let mut action = format!("ALTER COLUMN {} TYPE {data_type}", ident(column));
        match collation {
            Some(c) => action.push_str(&format!(" COLLATE {c}")),
            // A new type takes its own default collation; the same type needs to be told.
            None if !type_changed && cur.is_some_and(|c| c.collation.is_some()) => {
                action.push_str(" COLLATE pg_catalog.\"default\"")
            }
            None => {}
        }
        let (desc, hazards) = if type_changed {
            // What the conversion does to the stored values; a column we know nothing about is
            // converted with an explicit cast and counted as losing values.
            let conversion = match cur {
                Some(c) => conversion::conversion(self.cur, &c.data_type, self.des, data_type),
                None => Conversion {
                    class: Class::LosesValues,
                    using: Using::Cast,
                },
            };
            // A generated column takes no USING: its expression is converted.
            if des.is_none_or(|d| d.generated.is_none()) {
                action.push_str(&conversion.using_clause(&ident(column), data_type));
            }
            let mut hazards: Vec<Hazard> = conversion.class.hazard().into_iter().collect();
            hazards.extend([TableRewrite, LongLock]);
            (
                format!(
                    "change type of column {} to {data_type}",
                    column_name(table, column)
                ),
                hazards,
            )
        } else {
            (
                format!("change collation of column {}", column_name(table, column)),
                vec![LongLock],
            )
        };
        self.column_step(out, table, col_rank::TYPE, desc, action, &hazards);
    }

    /// Rename the old type away, create the new one, convert the columns, drop the old one. Each
    /// conversion carries the hazard of its [`conversion`]: an enum losing labels may fail, a
    /// domain's new base type is classified like a column type change.
    fn swap_type(
        &self,
        out: &mut Staged,
        name: &QualName,
        is_enum: bool,
        create: Vec<Step>,
        uses: &[TypeUse],
    ) {
        let (phase, drop_phase, keyword, kind) = if is_enum {
            (Phase::CreateTypes, Phase::DropTypes, "TYPE", "enum")
        } else {
            (Phase::CreateDomains, Phase::DropDomains, "DOMAIN", "domain")
        };
        let old = sibling(name, &temp_name(&name.name, OLD_TYPE_SUFFIX));
        out.push(
            phase,
            0,
            0,
            tx(
                format!("rename {kind} {name} to {old} to swap it"),
                format!("ALTER {keyword} {name} RENAME TO {}", ident(&old.name)),
                &[],
            ),
        );
        for step in create {
            out.push(phase, 0, 0, step);
        }
        for u in uses {
            let rank = self.table_rank(&u.table);
            let col = ident(&u.column);
            let col_desc = column_name(&u.table, &u.column);
            let arr = if u.array { "[]" } else { "" };
            if u.drop_default {
                out.push(
                    Phase::ConvertColumns,
                    rank,
                    0,
                    tx(
                        format!("drop default of column {col_desc} before its {kind} is swapped"),
                        format!("ALTER TABLE {} ALTER COLUMN {col} DROP DEFAULT", u.table),
                        &[],
                    ),
                );
            }
            // The same name on both sides: the old enum's labels (or the old domain's base type)
            // come from the current model, the new ones from the desired model.
            let type_name = format!("{name}{arr}");
            let conversion = conversion::conversion(self.cur, &type_name, self.des, &type_name);
            let using = if u.generated {
                String::new()
            } else {
                conversion.using_clause(&col, &type_name)
            };
            let mut hazards: Vec<Hazard> = conversion.class.hazard().into_iter().collect();
            hazards.extend([TableRewrite, LongLock]);
            out.push(
                Phase::ConvertColumns,
                rank,
                0,
                tx(
                    format!("convert column {col_desc} to the new {kind} {name}"),
                    format!(
                        "ALTER TABLE {} ALTER COLUMN {col} TYPE {type_name}{using}",
                        u.table
                    ),
                    &hazards,
                ),
            );
            if let Some(d) = &u.default {
                out.push(
                    Phase::ConvertColumns,
                    rank,
                    0,
                    tx(
                        format!("set default of column {col_desc} again"),
                        format!("ALTER TABLE {} ALTER COLUMN {col} SET DEFAULT {d}", u.table),
                        &[],
                    ),
                );
            }
        }
        out.push(
            drop_phase,
            0,
            0,
            // No values are left in it: every column was converted (or the plan failed there).
            tx(
                format!("drop the old {kind} {old}"),
                format!("DROP {keyword} {old}"),
                &[],
            ),
        );
    }

    fn sequence_owner(
        &self,
        out: &mut Staged,
        name: &QualName,
        owned_by: Option<&(QualName, String)>,
    ) {
        let released_early = self
            .cur
            .sequences
            .get(name)
            .and_then(|s| s.owned_by.as_ref())
            .is_some_and(|o| self.owner_goes_away(o));
        if released_early {
            out.push(
                Phase::CreateSequences,
                0,
                1,
                tx(
                    format!("release sequence {name} from its owning column"),
                    format!("ALTER SEQUENCE {name} OWNED BY NONE"),
                    &[],
                ),
            );
        }
        match owned_by {
            Some((table, column)) => out.push(
                Phase::SequenceOwners,
                0,
                0,
                tx(
                    format!(
                        "make sequence {name} owned by {}",
                        column_name(table, column)
                    ),
                    format!(
                        "ALTER SEQUENCE {name} OWNED BY {}",
                        column_name(table, column)
                    ),
                    &[],
                ),
            ),
            None if !released_early => out.push(
                Phase::SequenceOwners,
                0,
                0,
                tx(
                    format!("release sequence {name} from its owning column"),
                    format!("ALTER SEQUENCE {name} OWNED BY NONE"),
                    &[],
                ),
            ),
            None => {}
        }
    }

    /// Functions go early, before domains (bodies are not checked, and domain checks may call
    /// them); after the domains when their signature names a domain the plan creates; after the
    /// tables when it names the row type of a table the plan creates, or when the body is
    /// SQL-standard (`BEGIN ATOMIC`, which PostgreSQL always checks).
    fn function_phase(&self, id: &FunctionId, f: &Function) -> Phase {
        let names = |set: &std::collections::BTreeSet<QualName>| {
            set.iter().any(|t| {
                let t = t.to_string();
                id.args.contains(&t) || f.returns.as_deref().is_some_and(|r| r.contains(&t))
            })
        };
        if names(&self.created_tables) || f.definition.contains("BEGIN ATOMIC") {
            Phase::LateFunctions
        } else if names(&self.created_domains) {
            Phase::DomainFunctions
        } else {
            Phase::CreateFunctions
        }
    }

    fn drop_table(&self, out: &mut Staged, name: &QualName, why: &str) {
        let (phase, rank) = match self.early_drops.rank.get(name) {
            Some(r) => (Phase::DropReplacedTables, *r),
            None => (
                Phase::DropTables,
                self.late_drops.rank.get(name).copied().unwrap_or(0),
            ),
        };
        // A partition of a table that stays, and that a foreign key references, is detached first:
        // the foreign key depends on every partition of the table it references.
        if let Some(p) = self
            .cur
            .tables
            .get(name)
            .and_then(|t| t.partition_of.as_ref())
            && !self.dropped_tables.contains(&p.parent)
            && !self.replaced_tables.contains(&p.parent)
            && self.referenced_with_ancestors(&p.parent)
        {
            out.push(
                Phase::DetachPartitions,
                self.table_rank(name),
                0,
                tx(
                    format!("detach partition {name} from {} to drop it", p.parent),
                    format!("ALTER TABLE {} DETACH PARTITION {name}", p.parent),
                    &[],
                ),
            );
        }
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        };
        out.push(
            phase,
            rank,
            1,
            tx(
                format!("drop table {name}{why}"),
                format!("DROP TABLE {name}"),
                &[DataLoss],
            ),
        );
    }

    fn add_constraint(
        &self,
        out: &mut Staged,
        table: &QualName,
        name: &str,
        c: &crate::model::Constraint,
    ) {
        let (phase, b) = match c.kind {
            ConstraintKind::PrimaryKey => (Phase::AddConstraints, 0),
            ConstraintKind::Unique => (Phase::AddConstraints, 1),
            ConstraintKind::Exclusion => (Phase::AddConstraints, 2),
            ConstraintKind::Check => (Phase::AddConstraints, 3),
            ConstraintKind::ForeignKey => (Phase::AddForeignKeys, 0),
        };
        let sql = format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {}",
            ident(name),
            c.definition
        );
        let desc = format!("add {} {} on {table}", constraint_kind(c.kind), ident(name));
        let validatable = matches!(c.kind, ConstraintKind::Check | ConstraintKind::ForeignKey);
        let existing = self.existing_table(table);
        let step = if validatable && !c.valid {
            tx(desc, format!("{sql} NOT VALID"), &[])
        } else if !existing {
            tx(desc, sql, &[])
        } else if !validatable {
            tx(desc, sql, &[LongLock, IndexBuild])
        } else if self.opts.online && !self.partitioned(table) {
            self.validate(out, table, name);
            tx(
                format!("{desc} (NOT VALID, validated later)"),
                format!("{sql} NOT VALID"),
                &[],
            )
        } else {
            tx(desc, sql, &[LongLock, ValidationScan])
        };
        out.push(phase, 0, b, step);
    }

    fn validate(&self, out: &mut Staged, table: &QualName, name: &str) {
        let desc = format!("validate constraint {} on {table}", ident(name));
        let sql = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(name));
        if self.opts.online {
            out.push(
                Phase::PostValidate,
                0,
                0,
                solo(desc, sql, &[ValidationScan]),
            );
        } else {
            out.push(
                Phase::ValidateConstraints,
                0,
                0,
                tx(desc, sql, &[ValidationScan, LongLock]),
            );
        }
    }

    /// `CREATE INDEX` inside the transaction: right after a created materialized view, or with the
    /// other indexes after the constraints.
    fn index_in_tx(&self, out: &mut Staged, table: &QualName, name: &str, index: &Index) {
        let hazards: &[Hazard] = if self.existing_relation(table) {
            &[IndexBuild, LongLock]
        } else {
            &[]
        };
        let (phase, a, b) = match self.view_create_rank.get(table) {
            Some(r) if self.created_views.contains(table) => (Phase::CreateViews, *r, 1),
            _ => (Phase::CreateIndexes, 0, 0),
        };
        out.push(
            phase,
            a,
            b,
            tx(
                format!("create index {} on {table}", sibling(table, name)),
                render::index_sql(&index.definition, false, None),
                hazards,
            ),
        );
    }

    fn replace_index(&self, out: &mut Staged, table: &QualName, name: &str, index: &Index) {
        let qn = sibling(table, name);
        let current_valid = self.cur.index(table, name).is_none_or(|i| i.valid);
        let build_post = self.build_post(table, &index.definition);
        let drop_post = build_post && self.drop_post(table, name);
        if drop_post && current_valid {
            let tmp = temp_name(name, NEW_INDEX_SUFFIX);
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                build_concurrently(table, name, index, Some(&tmp)),
            );
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                drop_concurrently(&qn, " (replaced by its new version)"),
            );
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                tx(
                    format!("rename index {} to {}", sibling(table, &tmp), ident(name)),
                    format!(
                        "ALTER INDEX {} RENAME TO {}",
                        sibling(table, &tmp),
                        ident(name)
                    ),
                    &[],
                ),
            );
            return;
        }
        if drop_post {
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                drop_concurrently(&qn, " (invalid, rebuilt below)"),
            );
        } else {
            out.push(
                Phase::DropIndexes,
                0,
                0,
                tx(
                    format!("drop index {qn} (rebuilt below)"),
                    format!("DROP INDEX {qn}"),
                    &[],
                ),
            );
        }
        if build_post {
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                build_concurrently(table, name, index, None),
            );
        } else {
            self.index_in_tx(out, table, name, index);
        }
    }

    fn trigger_enabled(&self, out: &mut Staged, table: &QualName, name: &str, enabled: &str) {
        out.push(
            Phase::CreateTriggers,
            0,
            1,
            tx(
                format!(
                    "set trigger {} on {table} to {}",
                    ident(name),
                    match enabled {
                        "D" => "disabled",
                        "R" => "replica only",
                        "A" => "always",
                        _ => "enabled",
                    }
                ),
                render::trigger_enabled(table, name, enabled),
                &[],
            ),
        );
    }
}

/// The values an identity column's sequence may take: its MINVALUE and MAXVALUE, or their defaults
/// for the column's type and direction.
fn identity_range(data_type: &str, o: &IdentityOptions) -> (i64, i64) {
    let type_max = match data_type {
        "smallint" => i64::from(i16::MAX),
        "integer" => i64::from(i32::MAX),
        _ => i64::MAX,
    };
    if o.increment > 0 {
        (o.min_value.unwrap_or(1), o.max_value.unwrap_or(type_max))
    } else {
        (
            o.min_value.unwrap_or(-type_max - 1),
            o.max_value.unwrap_or(-1),
        )
    }
}

fn create_enum(name: &QualName, labels: &[String]) -> String {
    let labels: Vec<String> = labels.iter().map(|l| literal(l)).collect();
    format!("CREATE TYPE {name} AS ENUM ({})", labels.join(", "))
}

fn domain_steps(name: &QualName, domain: &Domain, again: bool) -> Vec<Step> {
    let (sql, later) = render::create_domain(name, domain);
    let again = if again { " with its new base type" } else { "" };
    let mut steps = vec![tx(format!("create domain {name}{again}"), sql, &[])];
    for (check, def) in later {
        steps.push(tx(
            format!("add check {} to domain {name}", ident(&check)),
            format!("ALTER DOMAIN {name} ADD CONSTRAINT {} {def}", ident(&check)),
            &[],
        ));
    }
    steps
}

fn routine_kind(procedure: bool) -> &'static str {
    if procedure { "procedure" } else { "function" }
}

fn drop_function(id: &FunctionId, procedure: bool, why: &str) -> Step {
    let keyword = if procedure { "PROCEDURE" } else { "FUNCTION" };
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    tx(
        format!("drop {} {}{why}", routine_kind(procedure), function_ref(id)),
        format!("DROP {keyword} {}", function_ref(id)),
        &[BreakingChange],
    )
}

fn constraint_kind(kind: ConstraintKind) -> &'static str {
    match kind {
        ConstraintKind::PrimaryKey => "primary key",
        ConstraintKind::Unique => "unique constraint",
        ConstraintKind::Check => "check constraint",
        ConstraintKind::Exclusion => "exclusion constraint",
        ConstraintKind::ForeignKey => "foreign key",
    }
}

fn build_concurrently(table: &QualName, name: &str, index: &Index, tmp: Option<&str>) -> Step {
    let desc = match tmp {
        Some(t) => format!(
            "build new version of index {} on {table} concurrently as {}",
            sibling(table, name),
            ident(t)
        ),
        None => format!(
            "build index {} on {table} concurrently",
            sibling(table, name)
        ),
    };
    solo(
        desc,
        render::index_sql(&index.definition, true, tmp),
        &[IndexBuild],
    )
}

fn drop_concurrently(qn: &QualName, why: &str) -> Step {
    solo(
        format!("drop index {qn} concurrently{why}"),
        format!("DROP INDEX CONCURRENTLY IF EXISTS {qn}"),
        &[],
    )
}
