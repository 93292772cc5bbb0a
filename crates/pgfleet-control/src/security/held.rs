//! What a tenant's role holds that it must not, read from the catalogs of its database, and the
//! findings reported from it.

use std::collections::BTreeMap;

use pgfleet_schema::Model;
use pgfleet_schema::quote::ident;
use tokio_postgres::Client;

use super::SecurityFinding;
use crate::tenant::{Mode, SHARED_GROUP_ROLE, Tenant};
use crate::{Control, ControlError, q};

/// What the findings query read.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) role_exists: bool,
    pub(super) attributes: Vec<String>,
    pub(super) member_of: Vec<String>,
    pub(super) settings: Vec<String>,
    pub(super) temporary: bool,
    pub(super) create_database: bool,
    pub(super) create_in: Vec<String>,
    pub(super) trigger_on: Vec<String>,
    pub(super) owns: i32,
}

/// A trigger on one of a tenant's relations.
#[derive(Debug, Clone)]
pub(super) struct LiveTrigger {
    pub(super) schema: String,
    pub(super) relation: String,
    pub(super) is_table: bool,
    pub(super) name: String,
    pub(super) definition: String,
    pub(super) function_schema: String,
    pub(super) function_name: String,
}

impl LiveTrigger {
    pub(super) fn describe(&self) -> String {
        format!(
            "trigger {} on {}.{} (calls {}.{})",
            ident(&self.name),
            ident(&self.schema),
            ident(&self.relation),
            ident(&self.function_schema),
            ident(&self.function_name)
        )
    }
}

/// The tenant's schemas as the queries take them (`None`: every schema of its own database) and
/// the one role its role may be a member of.
pub(super) fn scope(t: &Tenant) -> (Option<Vec<String>>, &'static str) {
    match t.mode {
        Mode::Database => (None, ""),
        Mode::Schema => (Some(vec![t.schema.clone()]), SHARED_GROUP_ROLE),
    }
}

pub(super) async fn held(in_db: &Client, t: &Tenant) -> Result<Held, ControlError> {
    let (schemas, group) = scope(t);
    let r = in_db
        .query_one(include_str!("findings.sql"), &[&t.role, &schemas, &group])
        .await
        .map_err(q("reading what the tenant's role holds"))?;
    Ok(Held {
        role_exists: r.get(0),
        attributes: r.get(1),
        member_of: r.get(2),
        settings: r.get(3),
        temporary: r.get::<_, Option<bool>>(4).unwrap_or(false),
        create_database: r.get::<_, Option<bool>>(5).unwrap_or(false),
        create_in: r.get(6),
        trigger_on: r.get(7),
        owns: r.get(8),
    })
}

/// `(kind, name)` of the tenant's objects the owner role does not own yet.
pub(super) async fn not_owned(
    in_db: &Client,
    t: &Tenant,
    owner: &str,
) -> Result<Vec<(String, String)>, ControlError> {
    let (schemas, _) = scope(t);
    let rows = in_db
        .query(include_str!("not_owned.sql"), &[&schemas, &owner])
        .await
        .map_err(q("reading who owns the tenant's objects"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every trigger on the tenant's relations, printed with an empty `search_path` (inside the
/// caller's transaction, which must be open: the setting is local to it).
pub(super) async fn live_triggers(
    in_db: &Client,
    t: &Tenant,
) -> Result<Vec<LiveTrigger>, ControlError> {
    let (schemas, _) = scope(t);
    in_db
        .batch_execute("SET LOCAL search_path = ''")
        .await
        .map_err(q("reading the tenant's triggers"))?;
    let rows = in_db
        .query(include_str!("triggers.sql"), &[&schemas])
        .await
        .map_err(q("reading the tenant's triggers"))?;
    Ok(rows
        .iter()
        .map(|r| LiveTrigger {
            schema: r.get(0),
            relation: r.get(1),
            is_table: r.get(2),
            name: r.get(3),
            definition: r.get(4),
            function_schema: r.get(5),
            function_name: r.get(6),
        })
        .collect())
}

/// The triggers that are not the target's: on a table, one whose name or definition the target
/// model (of the tenant's version, in the target's terms) does not have; on a view or foreign
/// table (the model has no triggers there), one that calls no function of the target.
pub(super) fn foreign_triggers(
    live: &[LiveTrigger],
    t: &Tenant,
    expected: &Model,
) -> Vec<LiveTrigger> {
    // A schema tenant's objects are named `<schema>.` where the target says `public.`.
    let in_target_terms = |s: &str| match t.mode {
        Mode::Schema => s.replace(&format!("{}.", t.schema), "public."),
        Mode::Database => s.to_string(),
    };
    let schema_in_target = |s: &str| match t.mode {
        Mode::Schema if s == t.schema => "public".to_string(),
        _ => s.to_string(),
    };
    let mut wanted: BTreeMap<(String, String, String), &str> = BTreeMap::new();
    for (name, table) in &expected.tables {
        for (trigger, def) in &table.triggers {
            wanted.insert(
                (name.schema.clone(), name.name.clone(), trigger.clone()),
                def.definition.as_str(),
            );
        }
    }
    live.iter()
        .filter(|tr| {
            let schema = schema_in_target(&tr.schema);
            if tr.is_table {
                wanted
                    .get(&(schema, tr.relation.clone(), tr.name.clone()))
                    .is_none_or(|def| *def != in_target_terms(&tr.definition))
            } else {
                let fschema = schema_in_target(&tr.function_schema);
                !expected
                    .functions
                    .keys()
                    .any(|f| f.name.schema == fschema && f.name.name == tr.function_name)
            }
        })
        .cloned()
        .collect()
}

fn findings_of(
    t: &Tenant,
    held: &Held,
    foreign: &[LiveTrigger],
    not_owned: &[(String, String)],
    owner: &str,
) -> Vec<SecurityFinding> {
    let mut out = Vec::new();
    if !held.role_exists {
        return out; // check-user reports a missing role (the login fails); nothing to contain
    }
    let role = &t.role;
    if !held.attributes.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} has {}: it can act beyond its tenant",
            held.attributes.join(", ")
        )));
    }
    if !held.member_of.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} is a member of {}: it holds their privileges",
            held.member_of.join(", ")
        )));
    }
    if !held.settings.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} has settings of its own ({}): pgfleet sets none",
            held.settings.join("; ")
        )));
    }
    if !held.trigger_on.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create triggers (TRIGGER) on {}: a trigger runs in the session of whoever writes the table",
            short_list(&held.trigger_on)
        )));
    }
    if held.temporary {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create temporary objects in database {} (TEMPORARY): functions in pg_temp that a trigger could call",
            t.database
        )));
    }
    if held.create_database {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create schemas in database {} (CREATE)",
            t.database
        )));
    }
    if !held.create_in.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create objects in schema(s) {} (CREATE): other sessions could resolve them",
            short_list(&held.create_in)
        )));
    }
    if held.owns > 0 {
        out.push(SecurityFinding::critical(format!(
            "role {role} owns {} object(s) in database {}: an owner can change them and attach code",
            held.owns, t.database
        )));
    }
    for tr in foreign {
        out.push(SecurityFinding::critical(format!(
            "{} is not in the target: a tenant may have attached it",
            tr.describe()
        )));
    }
    if !not_owned.is_empty() {
        let names: Vec<String> = not_owned
            .iter()
            .map(|(k, n)| format!("{} {n}", k.to_lowercase()))
            .collect();
        out.push(SecurityFinding {
            critical: false,
            what: format!(
                "{} object(s) not owned by the fleet's owner role {owner} yet ({}): migrations and repairs run as that role",
                not_owned.len(),
                short_list(&names)
            ),
            fix: "`pgfleet check --tenant KEY --fix` (or the next `migrate --all`) hands them over"
                .into(),
        });
    }
    out
}

pub(super) fn short_list(items: &[String]) -> String {
    if items.len() <= 5 {
        items.join(", ")
    } else {
        format!("{}, … ({} in all)", items[..5].join(", "), items.len())
    }
}

impl Control {
    /// Everything the tenant's role holds that it must not, and the objects the fleet's owner role
    /// does not own yet, read on an admin connection to the tenant's database. `expected` is the
    /// target model of the tenant's version (its triggers are the only ones allowed).
    ///
    /// # Errors
    /// Connection or query errors.
    pub async fn security_findings(
        &self,
        t: &Tenant,
        in_db: &Client,
        expected: &Model,
    ) -> Result<Vec<SecurityFinding>, ControlError> {
        let server = t.server.as_deref().unwrap_or_default();
        let owner = self.owner(server).await?.role;
        let held = held(in_db, t).await?;
        in_db
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(q("reading the tenant's triggers"))?;
        let live = live_triggers(in_db, t).await;
        let _ = in_db.batch_execute("COMMIT").await;
        let foreign = foreign_triggers(&live?, t, expected);
        let not_owned = not_owned(in_db, t, &owner).await?;
        Ok(findings_of(t, &held, &foreign, &not_owned, &owner))
    }

    /// Which of `tenants` (all of one database) [`Control::secure`] has something to do for: one
    /// query on a connection to their database (any role may run it), for a whole chunk of schema
    /// tenants. Triggers are not compared with the target here: without `TRIGGER` privileges and
    /// ownership, a tenant cannot have attached any since it was secured. Returns their roles.
    ///
    /// # Errors
    /// Query errors.
    pub(crate) async fn needing_security(
        &self,
        in_db: &Client,
        tenants: &[&Tenant],
    ) -> Result<std::collections::HashSet<String>, ControlError> {
        let Some(first) = tenants.first() else {
            return Ok(Default::default());
        };
        let server = first.server.as_deref().unwrap_or_default();
        let owner = self.owner(server).await?.role;
        let roles: Vec<&str> = tenants.iter().map(|t| t.role.as_str()).collect();
        let schemas: Vec<Option<&str>> = tenants
            .iter()
            .map(|t| (t.mode == Mode::Schema).then_some(t.schema.as_str()))
            .collect();
        let group = if first.mode == Mode::Schema {
            SHARED_GROUP_ROLE
        } else {
            ""
        };
        let rows = in_db
            .query(
                include_str!("needs.sql"),
                &[&roles, &schemas, &owner, &group],
            )
            .await
            .map_err(q("reading what the tenants' roles hold"))?;
        Ok(rows
            .iter()
            .filter(|r| r.get::<_, Option<bool>>(1).unwrap_or(false))
            .map(|r| r.get(0))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Mode;

    fn tenant(mode: Mode) -> Tenant {
        Tenant {
            key: "k".into(),
            id: "t0123456789abcdef".into(),
            mode,
            state: crate::tenant::State::Ready,
            step: "ready".into(),
            server: Some("s".into()),
            database: "db".into(),
            schema: "t0123456789abcdef".into(),
            role: "pgfleet_t0123456789abcdef".into(),
            schema_version: None,
            last_error: None,
            created_at: String::new(),
            migrate_error: None,
            health: crate::tenant::Health::Unknown,
            health_checked_at: None,
            health_latency_ms: None,
            health_error: None,
        }
    }

    fn model_with_trigger(def: &str) -> Model {
        use pgfleet_schema::model::{QualName, Table, TableKind, Trigger};
        let mut triggers = BTreeMap::new();
        triggers.insert(
            "touch".to_string(),
            Trigger {
                definition: def.into(),
                enabled: "O".into(),
                comment: None,
            },
        );
        let mut m = Model::default();
        m.tables.insert(
            QualName::new("public", "users"),
            Table {
                kind: TableKind::Regular,
                unlogged: false,
                partition_key: None,
                partition_of: None,
                columns: BTreeMap::new(),
                constraints: BTreeMap::new(),
                indexes: BTreeMap::new(),
                triggers,
                policies: BTreeMap::new(),
                rls_enabled: false,
                rls_forced: false,
                comment: None,
            },
        );
        m
    }

    fn live(schema: &str, name: &str, def: &str, is_table: bool) -> LiveTrigger {
        LiveTrigger {
            schema: schema.into(),
            relation: "users".into(),
            is_table,
            name: name.into(),
            definition: def.into(),
            function_schema: "pg_temp_3".into(),
            function_name: "evil".into(),
        }
    }

    #[test]
    fn triggers_of_the_target_stay_and_others_are_foreign_in_both_modes() {
        let target_def = "CREATE TRIGGER touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.touch()";
        let model = model_with_trigger(target_def);
        let db = tenant(Mode::Database);
        let ok = live("public", "touch", target_def, true);
        let extra = live(
            "public",
            "zz",
            "CREATE TRIGGER zz BEFORE UPDATE ON public.users FOR EACH STATEMENT EXECUTE FUNCTION pg_temp_3.evil()",
            true,
        );
        // Same name, other definition (CREATE OR REPLACE TRIGGER by a tenant).
        let replaced = live(
            "public",
            "touch",
            "CREATE TRIGGER touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION pg_temp_3.evil()",
            true,
        );
        let foreign = foreign_triggers(&[ok.clone(), extra, replaced], &db, &model);
        assert_eq!(
            foreign
                .iter()
                .map(|t| t.definition.contains("evil"))
                .collect::<Vec<_>>(),
            vec![true, true]
        );
        let sch = tenant(Mode::Schema);
        let in_schema = live(
            &sch.schema,
            "touch",
            &target_def.replace("public.", &format!("{}.", sch.schema)),
            true,
        );
        assert!(foreign_triggers(&[in_schema], &sch, &model).is_empty());
        // A view trigger that calls no target function is foreign.
        let on_view = live("public", "v", "CREATE TRIGGER v INSTEAD OF …", false);
        assert_eq!(foreign_triggers(&[on_view], &db, &model).len(), 1);
    }

    #[test]
    fn every_kind_of_privilege_is_a_critical_finding() {
        let t = tenant(Mode::Schema);
        let held = Held {
            role_exists: true,
            attributes: vec!["SUPERUSER".into()],
            member_of: vec!["pg_read_server_files".into()],
            settings: vec!["everywhere: search_path=evil".into()],
            temporary: true,
            create_database: true,
            create_in: vec!["public".into()],
            trigger_on: vec!["t.users".into()],
            owns: 2,
        };
        let f = findings_of(&t, &held, &[], &[("TABLE".into(), "t.users".into())], "o");
        assert_eq!(f.iter().filter(|f| f.critical).count(), 8);
        assert_eq!(f.iter().filter(|f| !f.critical).count(), 1);
        let clean = Held {
            role_exists: true,
            ..Held::default()
        };
        assert!(findings_of(&t, &clean, &[], &[], "o").is_empty());
    }
}
