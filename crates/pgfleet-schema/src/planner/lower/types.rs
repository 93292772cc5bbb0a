//! Types of our own: enums (new labels added before the transaction, so they are committed before
//! anything uses them) and domains; a type whose labels are removed or reordered, or whose base type
//! changes, is swapped: renamed away, created again, its columns converted, the old one dropped.

use crate::change::{Change, EnumValuePosition, TypeUse};
use crate::model::{Domain, QualName};
use crate::plan::{Hazard, Step};
use crate::planner::context::Ctx;
use crate::planner::conversion;
use crate::planner::phase::{Phase, Staged, solo, tx};
use crate::planner::render::{self, OLD_TYPE_SUFFIX, column_name, sibling, temp_name};
use crate::quote::{ident, literal};

use Hazard::{DataLoss, LongLock, TableRewrite, ValidationScan};

impl Ctx<'_> {
    /// The steps of an enum change.
    pub(super) fn lower_enum(&self, change: &Change, out: &mut Staged) {
        match change {
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
            _ => unreachable!("not an enum change: {change:?}"),
        }
    }

    /// The steps of a domain change.
    pub(super) fn lower_domain(&self, change: &Change, out: &mut Staged) {
        match change {
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
            _ => unreachable!("not a domain change: {change:?}"),
        }
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
