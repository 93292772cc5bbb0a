//! SQL text. Identifiers go through [`crate::quote::ident`] (or [`QualName`]'s `Display`), strings
//! through [`crate::quote::literal`]; the only other text formatted into SQL is definition text that
//! PostgreSQL printed itself (types, expressions, `pg_get_*def` output).

use crate::change::CommentTarget;
use crate::model::{
    Column, Domain, FunctionId, Identity, IdentityOptions, Policy, QualName, Sequence, Table, View,
};
use crate::quote::{ident, literal};

/// Suffix of the temporary name a changed index is built under.
pub(super) const NEW_INDEX_SUFFIX: &str = "_pgfleet_new";
/// Suffix of the name a swapped type is renamed to.
pub(super) const OLD_TYPE_SUFFIX: &str = "_pgfleet_old";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
const MAX_IDENT_BYTES: usize = 63;

/// `name` cut to fit `suffix` within 63 bytes (on a character boundary), plus `suffix`.
pub(super) fn temp_name(name: &str, suffix: &str) -> String {
    let mut end = name.len().min(MAX_IDENT_BYTES - suffix.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

/// `table.column`, quoted, for descriptions.
pub(super) fn column_name(table: &QualName, column: &str) -> String {
    format!("{table}.{}", ident(column))
}

/// An object in the schema of `table` (indexes, swapped types).
pub(super) fn sibling(of: &QualName, name: &str) -> QualName {
    QualName::new(of.schema.clone(), name)
}

/// `name(args)` of a function or procedure.
pub(super) fn function_ref(id: &FunctionId) -> String {
    format!("{}({})", id.name, id.args)
}

pub(super) fn identity(kind: Identity) -> &'static str {
    match kind {
        Identity::Always => "ALWAYS",
        Identity::ByDefault => "BY DEFAULT",
    }
}

/// The sequence options of an identity column that are not the defaults, as ` (…)`, or nothing.
pub(super) fn identity_options(o: &IdentityOptions) -> String {
    let d = IdentityOptions::default();
    let mut opts = Vec::new();
    if o.increment != d.increment {
        opts.push(format!("INCREMENT BY {}", o.increment));
    }
    if let Some(v) = o.min_value {
        opts.push(format!("MINVALUE {v}"));
    }
    if let Some(v) = o.max_value {
        opts.push(format!("MAXVALUE {v}"));
    }
    if let Some(v) = o.start {
        opts.push(format!("START WITH {v}"));
    }
    if o.cache != d.cache {
        opts.push(format!("CACHE {}", o.cache));
    }
    if o.cycle {
        opts.push("CYCLE".into());
    }
    if opts.is_empty() {
        String::new()
    } else {
        format!(" ({})", opts.join(" "))
    }
}

/// Every sequence option of an identity column, as `ALTER COLUMN` subcommands (`SET …`): the ones
/// left at their defaults are set back to them.
pub(super) fn set_identity_options(o: &IdentityOptions) -> String {
    let min = o.min_value.map_or_else(
        || "SET NO MINVALUE".to_string(),
        |v| format!("SET MINVALUE {v}"),
    );
    let max = o.max_value.map_or_else(
        || "SET NO MAXVALUE".to_string(),
        |v| format!("SET MAXVALUE {v}"),
    );
    let cycle = if o.cycle { "SET CYCLE" } else { "SET NO CYCLE" };
    format!(
        "SET INCREMENT BY {} {min} {max} SET START WITH {} SET CACHE {} {cycle}",
        o.increment,
        o.first_value(),
        o.cache
    )
}

/// A column definition as in `CREATE TABLE` / `ADD COLUMN`.
pub(super) fn column_def(name: &str, c: &Column) -> String {
    let mut s = format!("{} {}", ident(name), c.data_type);
    if let Some(coll) = &c.collation {
        s.push_str(&format!(" COLLATE {coll}"));
    }
    if let Some(expr) = &c.generated {
        let kind = if c.generated_virtual {
            "VIRTUAL"
        } else {
            "STORED"
        };
        s.push_str(&format!(" GENERATED ALWAYS AS ({expr}) {kind}"));
    } else if let Some(kind) = c.identity {
        s.push_str(&format!(
            " GENERATED {} AS IDENTITY{}",
            identity(kind),
            identity_options(&c.identity_options)
        ));
    } else if let Some(default) = &c.default {
        s.push_str(&format!(" DEFAULT {default}"));
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

/// `CREATE TABLE`: columns in position order (a partition takes its parent's columns).
pub(super) fn create_table(name: &QualName, t: &Table) -> String {
    let unlogged = if t.unlogged { "UNLOGGED " } else { "" };
    let mut s = format!("CREATE {unlogged}TABLE {name}");
    match &t.partition_of {
        Some(p) => s.push_str(&format!(" PARTITION OF {} {}", p.parent, p.bound)),
        None => {
            let mut cols: Vec<(&String, &Column)> = t.columns.iter().collect();
            cols.sort_by_key(|(n, c)| (c.position, *n));
            let defs: Vec<String> = cols
                .iter()
                .map(|(n, c)| format!("    {}", column_def(n, c)))
                .collect();
            if defs.is_empty() {
                s.push_str(" ()");
            } else {
                s.push_str(&format!(" (\n{}\n)", defs.join(",\n")));
            }
        }
    }
    if let Some(key) = &t.partition_key {
        s.push_str(&format!(" PARTITION BY {key}"));
    }
    s
}

pub(super) fn is_unique_index(definition: &str) -> bool {
    definition.starts_with("CREATE UNIQUE INDEX ")
}

/// Splits `pg_get_indexdef` text into its head (`CREATE [UNIQUE] INDEX`), the index name as
/// PostgreSQL quoted it, and what follows `ON [ONLY] ` (the table and the rest).
fn split_index_def(def: &str) -> Option<(&str, &str, &str)> {
    let head = ["CREATE UNIQUE INDEX", "CREATE INDEX"]
        .into_iter()
        .find(|h| def.starts_with(h) && def[h.len()..].starts_with(' '))?;
    let after = &def[head.len() + 1..];
    let name_len = if after.starts_with('"') {
        let bytes = after.as_bytes();
        let mut i = 1;
        loop {
            match bytes.get(i) {
                None => return None,
                Some(b'"') if bytes.get(i + 1) == Some(&b'"') => i += 2,
                Some(b'"') => break i + 1,
                Some(_) => i += 1,
            }
        }
    } else {
        after.find(' ')?
    };
    let rest = after[name_len..].strip_prefix(" ON ")?;
    // An index of a partitioned table prints as `ON ONLY`; creating it without ONLY builds it on
    // every partition too.
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    Some((head, &after[..name_len], rest))
}

/// The `CREATE INDEX` statement for an index definition: optionally `CONCURRENTLY IF NOT EXISTS`,
/// optionally under another name.
pub(super) fn index_sql(def: &str, concurrently: bool, rename: Option<&str>) -> String {
    let Some((head, name, rest)) = split_index_def(def) else {
        // Not PostgreSQL's format (hand-made models): use it as it is.
        return def.to_string();
    };
    let name = rename.map(ident).unwrap_or_else(|| name.to_string());
    let conc = if concurrently {
        " CONCURRENTLY IF NOT EXISTS"
    } else {
        ""
    };
    format!("{head}{conc} {name} ON {rest}")
}

/// The options of `CREATE SEQUENCE` / `ALTER SEQUENCE`, all of them.
pub(super) fn sequence_options(s: &Sequence) -> String {
    format!(
        "AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}",
        s.data_type,
        s.increment,
        s.min_value,
        s.max_value,
        s.start,
        s.cache,
        if s.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}

/// `CREATE DOMAIN` with its valid checks inline, plus the `NOT VALID` checks to add separately.
pub(super) fn create_domain(name: &QualName, d: &Domain) -> (String, Vec<(String, String)>) {
    let mut s = format!("CREATE DOMAIN {name} AS {}", d.base_type);
    if let Some(coll) = &d.collation {
        s.push_str(&format!(" COLLATE {coll}"));
    }
    if let Some(default) = &d.default {
        s.push_str(&format!(" DEFAULT {default}"));
    }
    if d.not_null {
        s.push_str(" NOT NULL");
    }
    let mut later = Vec::new();
    for (check, def) in &d.checks {
        if def.ends_with(" NOT VALID") {
            later.push((check.clone(), def.clone()));
        } else {
            s.push_str(&format!(" CONSTRAINT {} {def}", ident(check)));
        }
    }
    (s, later)
}

/// `CREATE [OR REPLACE] [MATERIALIZED] VIEW … AS query`.
pub(super) fn create_view(name: &QualName, v: &View, or_replace: bool) -> String {
    let kind = if v.materialized {
        "MATERIALIZED VIEW"
    } else {
        "VIEW"
    };
    let replace = if or_replace { "OR REPLACE " } else { "" };
    let with = if v.options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", v.options.join(", "))
    };
    let query = v.definition.trim().trim_end_matches(';').trim_end();
    format!("CREATE {replace}{kind} {name}{with} AS\n{query}")
}

/// `CREATE POLICY`.
pub(super) fn create_policy(table: &QualName, name: &str, p: &Policy) -> String {
    let command = match p.command.to_ascii_uppercase().as_str() {
        "SELECT" | "R" => "SELECT",
        "INSERT" | "A" => "INSERT",
        "UPDATE" | "W" => "UPDATE",
        "DELETE" | "D" => "DELETE",
        _ => "ALL",
    };
    let roles = if p.roles.is_empty() {
        "PUBLIC".to_string()
    } else {
        p.roles
            .iter()
            .map(|r| {
                if r == "public" {
                    "PUBLIC".to_string()
                } else {
                    ident(r)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "CREATE POLICY {} ON {table} AS {} FOR {command} TO {roles}",
        ident(name),
        if p.permissive {
            "PERMISSIVE"
        } else {
            "RESTRICTIVE"
        }
    );
    if let Some(expr) = &p.using {
        s.push_str(&format!(" USING ({expr})"));
    }
    if let Some(expr) = &p.with_check {
        s.push_str(&format!(" WITH CHECK ({expr})"));
    }
    s
}

/// `ALTER TABLE … ENABLE/DISABLE … TRIGGER` for a `tgenabled` letter.
pub(super) fn trigger_enabled(table: &QualName, name: &str, enabled: &str) -> String {
    let what = match enabled {
        "D" => "DISABLE TRIGGER",
        "R" => "ENABLE REPLICA TRIGGER",
        "A" => "ENABLE ALWAYS TRIGGER",
        _ => "ENABLE TRIGGER",
    };
    format!("ALTER TABLE {table} {what} {}", ident(name))
}

/// The parts of a `COMMENT ON` object: its kind key word(s), its name, and the table it is on
/// (constraints, triggers, policies).
fn comment_parts(target: &CommentTarget) -> (&'static str, String, Option<&QualName>) {
    match target {
        CommentTarget::Schema(s) => ("SCHEMA", ident(s), None),
        CommentTarget::Extension(e) => ("EXTENSION", ident(e), None),
        CommentTarget::Type(t) => ("TYPE", t.to_string(), None),
        CommentTarget::Domain(d) => ("DOMAIN", d.to_string(), None),
        CommentTarget::Sequence(s) => ("SEQUENCE", s.to_string(), None),
        CommentTarget::Table(t) => ("TABLE", t.to_string(), None),
        CommentTarget::Column { table, column } => ("COLUMN", column_name(table, column), None),
        CommentTarget::Constraint { table, name } => ("CONSTRAINT", ident(name), Some(table)),
        CommentTarget::Index { table, name } => ("INDEX", sibling(table, name).to_string(), None),
        CommentTarget::Trigger { table, name } => ("TRIGGER", ident(name), Some(table)),
        CommentTarget::Policy { table, name } => ("POLICY", ident(name), Some(table)),
        CommentTarget::View(v) => ("VIEW", v.to_string(), None),
        CommentTarget::MaterializedView(v) => ("MATERIALIZED VIEW", v.to_string(), None),
        CommentTarget::Function(id) => ("FUNCTION", function_ref(id), None),
        CommentTarget::Procedure(id) => ("PROCEDURE", function_ref(id), None),
    }
}

/// The commented object in words, e.g. `constraint t_pkey on public.t`.
pub(super) fn comment_description(target: &CommentTarget) -> String {
    let (kind, name, table) = comment_parts(target);
    match table {
        Some(t) => format!("{} {name} on {t}", kind.to_lowercase()),
        None => format!("{} {name}", kind.to_lowercase()),
    }
}

/// `COMMENT ON … IS …`.
pub(super) fn comment(target: &CommentTarget, comment: &Option<String>) -> String {
    let (kind, name, table) = comment_parts(target);
    let on = table.map(|t| format!(" ON {t}")).unwrap_or_default();
    let value = comment
        .as_deref()
        .map(literal)
        .unwrap_or_else(|| "NULL".to_string());
    format!("COMMENT ON {kind} {name}{on} IS {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_definitions_are_rewritten() {
        let def = "CREATE INDEX docs_e_idx ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='16', ef_construction='64')";
        assert_eq!(
            index_sql(def, true, None),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS docs_e_idx ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='16', ef_construction='64')"
        );
        assert_eq!(
            index_sql(def, true, Some("docs_e_idx_pgfleet_new")),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS docs_e_idx_pgfleet_new ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='16', ef_construction='64')"
        );
        let quoted = r#"CREATE UNIQUE INDEX "We ""ird"" ON" ON ONLY public."T" USING btree (a)"#;
        assert_eq!(
            index_sql(quoted, false, None),
            r#"CREATE UNIQUE INDEX "We ""ird"" ON" ON public."T" USING btree (a)"#
        );
        assert_eq!(
            index_sql(quoted, true, Some("x y")),
            r#"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "x y" ON public."T" USING btree (a)"#
        );
    }

    #[test]
    fn temp_names_fit_63_bytes() {
        let long = "é".repeat(40); // 80 bytes
        let t = temp_name(&long, NEW_INDEX_SUFFIX);
        assert!(t.len() <= 63, "{}", t.len());
        assert!(t.ends_with(NEW_INDEX_SUFFIX));
        assert_eq!(temp_name("i", NEW_INDEX_SUFFIX), "i_pgfleet_new");
    }
}
