//! The catalog queries of introspection: one per object kind (`src/sql/<kind>.sql`), each behind
//! the scope it reads (`src/sql/scope/`): every user schema, or the one schema named by
//! `pgfleet.only_schema`.

/// The catalog queries of every object kind that has a scope, with that scope prepended.
pub(super) struct Queries {
    pub(super) schemas: &'static str,
    pub(super) enums: &'static str,
    pub(super) domains: &'static str,
    pub(super) sequences: &'static str,
    pub(super) functions: &'static str,
    pub(super) tables: &'static str,
    pub(super) columns: &'static str,
    pub(super) constraints: &'static str,
    pub(super) indexes: &'static str,
    pub(super) triggers: &'static str,
    pub(super) policies: &'static str,
    pub(super) views: &'static str,
}

/// `src/sql/scope/<scope>.sql` followed by `src/sql/<kind>.sql`, as one literal.
macro_rules! scoped {
    ($scope:literal, $kind:literal) => {
        concat!(
            include_str!(concat!("../sql/scope/", $scope, ".sql")),
            include_str!(concat!("../sql/", $kind, ".sql"))
        )
    };
}

macro_rules! queries {
    ($scope:literal) => {
        Queries {
            schemas: scoped!($scope, "schemas"),
            enums: scoped!($scope, "enums"),
            domains: scoped!($scope, "domains"),
            sequences: scoped!($scope, "sequences"),
            functions: scoped!($scope, "functions"),
            tables: scoped!($scope, "tables"),
            columns: scoped!($scope, "columns"),
            constraints: scoped!($scope, "constraints"),
            indexes: scoped!($scope, "indexes"),
            triggers: scoped!($scope, "triggers"),
            policies: scoped!($scope, "policies"),
            views: scoped!($scope, "views"),
        }
    };
}

/// Every user schema of the database.
pub(super) const DATABASE: Queries = queries!("database");
/// The schema named by `pgfleet.only_schema`.
pub(super) const SCHEMA: Queries = queries!("schema");
