//! Columns added, altered or dropped after `CREATE TABLE`: one `ALTER TABLE` step each, grouped by
//! table and ordered inside it so that what must be undone (a dropped default, identity or
//! `NOT NULL`) is undone before what is set.

use crate::change::Change;
use crate::model::{Column, Identity, IdentityOptions, QualName};
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::conversion::{self, Class, Conversion, Using};
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render::{self, column_def, column_name};
use crate::quote::{ident, literal};

use Hazard::{BreakingChange, DataLoss, LongLock, MayFail, TableRewrite};

impl Ctx<'_> {
    /// The steps of a column change.
    pub(super) fn lower_column(&self, change: &Change, out: &mut Staged) {
        match change {
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
                self.replace_column(out, table, column, def)
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
            } => self.alter_column_identity(
                out,
                table,
                column,
                (*from, *to),
                options,
                *options_changed,
            ),
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
            _ => unreachable!("not a column change: {change:?}"),
        }
    }

    /// Drops a column and adds it again: its stored generated expression appeared or changed.
    fn replace_column(&self, out: &mut Staged, table: &QualName, column: &str, def: &Column) {
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

    /// `ADD GENERATED … AS IDENTITY` (and, on a table with rows, its sequence moved past the values
    /// in use), `SET GENERATED …` and the sequence options, or `DROP IDENTITY`.
    fn alter_column_identity(
        &self,
        out: &mut Staged,
        table: &QualName,
        column: &str,
        (from, to): (Option<Identity>, Option<Identity>),
        options: &IdentityOptions,
        options_changed: bool,
    ) {
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
                        render::identity(k),
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
                    actions.push(format!("SET GENERATED {}", render::identity(k)));
                }
                if options_changed {
                    actions.push(render::set_identity_options(options));
                }
                let hazards: &[Hazard] =
                    if options_changed && self.identity_range_narrows(table, column) {
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

    /// One `ALTER TABLE t …` step of the column phase.
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
