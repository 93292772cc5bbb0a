//! The table of the management API's operations: each row gives the route that serves it and what
//! the OpenAPI 3.1 document says of it ([`document`], served at `/v1/openapi.json`). The router
//! ([`super::routes`]) and the document are both built from [`endpoints`].

use std::sync::Arc;

use axum::routing::{MethodRouter, delete, get, post};
use serde_json::{Value, json};

use super::problem::KINDS;
use super::{ApiState, MAX_BODY, rollouts, tenants};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A `read` or `admin` token.
    Read,
    /// An `admin` token.
    Admin,
}

/// One operation of the API.
pub struct Endpoint {
    /// `get`, `post` or `delete`.
    pub method: &'static str,
    /// Its path below `/v1`, with `{parameters}`.
    pub path: &'static str,
    /// Its `operationId`.
    pub id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// The scope it needs.
    pub needs: Needs,
    /// Query parameters: (name, schema, description).
    pub query: Vec<(&'static str, Value, &'static str)>,
    /// The request body's schema, if it takes one.
    pub body: Option<Value>,
    /// Success answers: (status, schema, description). `text/event-stream` when the schema is
    /// `None`.
    pub ok: Vec<(u16, Option<Value>, &'static str)>,
    /// Problem kinds it may answer with besides unauthorized/forbidden.
    pub problems: &'static [&'static str],
    /// The route.
    pub route: fn() -> MethodRouter<Arc<ApiState>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} /v1{}", self.method.to_uppercase(), self.path)
    }
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn s() -> Value {
    json!({"type": "string"})
}

fn ns() -> Value {
    json!({"type": ["string", "null"]})
}

fn limit() -> (&'static str, Value, &'static str) {
    (
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
        "Items per page",
    )
}

fn cursor() -> (&'static str, Value, &'static str) {
    (
        "cursor",
        s(),
        "Where the page starts: the `next_cursor` of the previous page",
    )
}

fn page(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": r(item)}, "next_cursor": ns()},
    })
}

const KEY_LOOKUP: &[&str] = &["invalid-input", "not-found", "unavailable"];
const KEY_CHANGE: &[&str] = &[
    "invalid-input",
    "not-found",
    "conflict",
    "unprocessable",
    "unavailable",
];
const DESTROY: &[&str] = &[
    "invalid-input",
    "confirmation-required",
    "not-found",
    "conflict",
    "unprocessable",
    "unavailable",
];
const CHECK_USER: &[&str] = &["invalid-input", "not-found", "unprocessable", "unavailable"];
const LIST: &[&str] = &["invalid-input", "unavailable"];
const BODY: &[&str] = &[
    "invalid-input",
    "unsupported-media-type",
    "payload-too-large",
    "not-found",
    "conflict",
    "unprocessable",
    "unavailable",
];

fn confirm() -> (&'static str, Value, &'static str) {
    (
        "confirm",
        s(),
        "The tenant's key again: destructive actions run only when it matches",
    )
}

/// Every operation (paths below `/v1`).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint {
            method: "get",
            path: "/tenants",
            id: "listTenants",
            summary: "Tenants in key order, filtered and paged",
            needs: Needs::Read,
            query: vec![
                (
                    "state",
                    json!({"type": "string", "enum": ["provisioning", "ready", "failed", "dropping"]}),
                    "Only tenants in this state",
                ),
                ("server", s(), "Only tenants on this server"),
                (
                    "mode",
                    json!({"type": "string", "enum": ["database", "schema"]}),
                    "Only tenants in this mode",
                ),
                ("version", s(), "Only tenants at this schema version"),
                ("q", s(), "Only tenants whose key contains this text"),
                limit(),
                cursor(),
            ],
            body: None,
            ok: vec![(200, Some(page("Tenant")), "A page of tenants")],
            problems: LIST,
            route: || get(tenants::list),
        },
        Endpoint {
            method: "post",
            path: "/tenants",
            id: "createTenant",
            summary: "Create a tenant and queue its provisioning (idempotent on the key)",
            needs: Needs::Admin,
            query: vec![],
            body: Some(json!({
                "type": "object",
                "required": ["key"],
                "additionalProperties": false,
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": 256},
                    "mode": {"type": "string", "enum": ["database", "schema"]},
                    "server": {"type": "string", "minLength": 1, "maxLength": 63},
                },
            })),
            ok: vec![
                (201, Some(r("Tenant")), "Created; provisioning is queued"),
                (
                    200,
                    Some(r("Tenant")),
                    "The tenant existed with these options",
                ),
            ],
            problems: BODY,
            route: || post(tenants::create),
        },
        Endpoint {
            method: "get",
            path: "/tenants/{key}",
            id: "getTenant",
            summary: "One tenant",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(200, Some(r("Tenant")), "The tenant")],
            problems: KEY_LOOKUP,
            route: || get(tenants::get),
        },
        Endpoint {
            method: "delete",
            path: "/tenants/{key}",
            id: "dropTenant",
            summary: "Drop a tenant: its database or schema, role and catalog row (needs ?confirm=KEY)",
            needs: Needs::Admin,
            query: vec![confirm()],
            body: None,
            ok: vec![(200, Some(r("Tenant")), "Dropped (as it was)")],
            problems: DESTROY,
            route: || delete(tenants::drop),
        },
        Endpoint {
            method: "post",
            path: "/tenants/{key}/check",
            id: "checkTenant",
            summary: "Drift of the tenant against the target (reads only: scope read may)",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(200, Some(r("Drift")), "The drift report")],
            problems: KEY_CHANGE,
            route: || post(tenants::check),
        },
        Endpoint {
            method: "post",
            path: "/tenants/{key}/fix",
            id: "fixTenant",
            summary: "Repair the tenant's drift additively (each change recorded as a correction)",
            needs: Needs::Admin,
            query: vec![],
            body: None,
            ok: vec![(200, Some(r("Repair")), "What was applied and what is left")],
            problems: KEY_CHANGE,
            route: || post(tenants::fix),
        },
        Endpoint {
            method: "post",
            path: "/tenants/{key}/rotate-password",
            id: "rotateTenantPassword",
            summary: "Give the tenant's role a new password (sealed in the catalog)",
            needs: Needs::Admin,
            query: vec![],
            body: None,
            ok: vec![(
                200,
                Some(
                    json!({"type": "object", "required": ["key", "rotated"], "properties": {"key": s(), "rotated": {"type": "boolean"}}}),
                ),
                "Rotated",
            )],
            problems: KEY_CHANGE,
            route: || post(tenants::rotate_password),
        },
        Endpoint {
            method: "post",
            path: "/tenants/{key}/reset",
            id: "resetTenant",
            summary: "Re-create the tenant's database or schema from the target: its data is lost (needs ?confirm=KEY)",
            needs: Needs::Admin,
            query: vec![confirm()],
            body: None,
            ok: vec![(200, Some(r("Tenant")), "Reset and ready")],
            problems: DESTROY,
            route: || post(tenants::reset),
        },
        Endpoint {
            method: "get",
            path: "/tenants/{key}/check-user",
            id: "checkUser",
            summary: "The tenant end to end: placement, state, login as its role, version, drift, events",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(
                200,
                Some(json!({
                    "type": "object",
                    "required": ["tenant", "healthy", "findings", "events"],
                    "properties": {
                        "tenant": r("Tenant"),
                        "healthy": {"type": "boolean"},
                        "findings": {"type": "array", "items": r("Finding")},
                        "events": {"type": "array", "items": {"type": "object", "required": ["at", "kind", "actor", "detail"], "properties": {"at": s(), "kind": s(), "actor": s(), "detail": {}}}},
                    },
                })),
                "The findings",
            )],
            problems: CHECK_USER,
            route: || get(tenants::check_user),
        },
        Endpoint {
            method: "get",
            path: "/servers",
            id: "listServers",
            summary: "Servers with their tenant counts",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(
                200,
                Some(
                    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": r("Server")}}}),
                ),
                "Every server",
            )],
            problems: LIST,
            route: || get(tenants::servers),
        },
        Endpoint {
            method: "post",
            path: "/servers",
            id: "addServer",
            summary: "Check a PostgreSQL server (reachable, version, rights, pgvector) and add it",
            needs: Needs::Admin,
            query: vec![],
            body: Some(json!({
                "type": "object",
                "required": ["name", "url"],
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
                    "url": {"type": "string", "pattern": "^postgres(ql)?://", "description": "postgres:// URL of an admin role; stored sealed, never shown again"},
                    "capacity": {"type": "integer", "minimum": 0, "maximum": 2147483647, "default": 1000},
                    "weight": {"type": "integer", "minimum": 1, "maximum": 2147483647, "default": 1},
                },
            })),
            ok: vec![(201, Some(r("Server")), "Added")],
            problems: BODY,
            route: || post(tenants::add_server),
        },
        Endpoint {
            method: "post",
            path: "/servers/{name}/drain",
            id: "drainServer",
            summary: "Stop placing new tenants on the server",
            needs: Needs::Admin,
            query: vec![],
            body: None,
            ok: vec![(200, Some(r("Server")), "Draining")],
            problems: KEY_LOOKUP,
            route: || post(tenants::drain),
        },
        Endpoint {
            method: "post",
            path: "/servers/{name}/activate",
            id: "activateServer",
            summary: "Place new tenants on the server again",
            needs: Needs::Admin,
            query: vec![],
            body: None,
            ok: vec![(200, Some(r("Server")), "Active")],
            problems: KEY_LOOKUP,
            route: || post(tenants::activate),
        },
        Endpoint {
            method: "post",
            path: "/servers/{name}/spares",
            id: "refillSpares",
            summary: "Build the server's verified spare schemas and spare databases up to the configured numbers",
            needs: Needs::Admin,
            query: vec![],
            body: None,
            ok: vec![(
                200,
                Some(
                    json!({"type": "object", "required": ["server", "built", "schemas", "databases"], "properties": {"server": s(), "built": {"type": "integer", "minimum": 0}, "schemas": {"type": "integer", "minimum": 0}, "databases": {"type": "integer", "minimum": 0}}}),
                ),
                "How many were built: in all, spare schemas, spare databases",
            )],
            problems: KEY_CHANGE,
            route: || post(tenants::spares),
        },
        Endpoint {
            method: "get",
            path: "/rollouts",
            id: "listRollouts",
            summary: "Rollouts (`migrate --all` runs), newest first",
            needs: Needs::Read,
            query: vec![
                (
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}),
                    "Items per page",
                ),
                cursor(),
            ],
            body: None,
            ok: vec![(200, Some(page("Rollout")), "A page of rollouts")],
            problems: LIST,
            route: || get(rollouts::list),
        },
        Endpoint {
            method: "post",
            path: "/rollouts",
            id: "startRollout",
            summary: "Start `migrate --all` in the background: poll the answer's Location or follow its events",
            needs: Needs::Admin,
            query: vec![],
            body: Some(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "canary": {"type": "string", "description": "Migrate this many tenants (\"10\") or this share (\"5%\") first; stop if any fails"},
                    "continue_on_error": {"type": "boolean", "default": false},
                    "verify": {"type": "boolean", "default": false},
                    "concurrency": {"type": "integer", "minimum": 1, "maximum": 256},
                    "per_server": {"type": "integer", "minimum": 1, "maximum": 256},
                    "tenants": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 256}},
                },
            })),
            ok: vec![(202, Some(r("RolloutDetail")), "Started")],
            problems: BODY,
            route: || post(rollouts::create),
        },
        Endpoint {
            method: "get",
            path: "/rollouts/{id}",
            id: "getRollout",
            summary: "A rollout's progress and its failed tenants with their reasons",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(200, Some(r("RolloutDetail")), "The rollout")],
            problems: KEY_LOOKUP,
            route: || get(rollouts::get),
        },
        Endpoint {
            method: "get",
            path: "/rollouts/{id}/events",
            id: "followRollout",
            summary: "A rollout's progress as server-sent events (`progress`, then `end`)",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(200, None, "An event stream")],
            problems: KEY_LOOKUP,
            route: || get(rollouts::events),
        },
        Endpoint {
            method: "get",
            path: "/events",
            id: "listEvents",
            summary: "The audit trail, newest first (corrections included; API changes name their token)",
            needs: Needs::Read,
            query: vec![
                ("tenant", s(), "Only events of this tenant key"),
                (
                    "kind",
                    s(),
                    "Only this kind (`tenant.correction`) or family (`tenant`)",
                ),
                limit(),
                cursor(),
            ],
            body: None,
            ok: vec![(200, Some(page("Event")), "A page of events")],
            problems: LIST,
            route: || get(tenants::events),
        },
        Endpoint {
            method: "get",
            path: "/validate",
            id: "validate",
            summary: "Configuration, catalog, servers, extensions, templates and roles, as `pgfleet validate`",
            needs: Needs::Read,
            query: vec![],
            body: None,
            ok: vec![(
                200,
                Some(
                    json!({"type": "object", "required": ["ok", "findings"], "properties": {"ok": {"type": "boolean"}, "findings": {"type": "array", "items": r("Finding")}}}),
                ),
                "The findings",
            )],
            problems: LIST,
            route: || get(tenants::validate),
        },
    ]
}

fn schemas() -> Value {
    let int = json!({"type": "integer"});
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "enum": KINDS.iter().map(|(k, ..)| format!("urn:pgfleet:problem:{k}")).collect::<Vec<_>>()},
                "title": s(), "status": int, "detail": s(),
            },
        },
        "Tenant": {
            "type": "object",
            "required": ["key", "id", "mode", "state", "step", "server", "database", "schema", "role", "schema_version", "last_error", "created_at", "health"],
            "properties": {
                "key": s(), "id": s(),
                "mode": {"type": "string", "enum": ["database", "schema"]},
                "state": {"type": "string", "enum": ["provisioning", "ready", "failed", "dropping"]},
                "step": s(), "server": ns(), "database": s(), "schema": s(), "role": s(),
                "schema_version": ns(), "last_error": ns(), "created_at": s(), "migrate_error": ns(),
                "health": {"type": "string", "enum": ["unknown", "healthy", "degraded", "unreachable"]},
                "health_checked_at": ns(), "health_latency_ms": {"type": ["number", "null"]}, "health_error": ns(),
            },
        },
        "DriftStep": {
            "type": "object",
            "required": ["description", "sql", "hazards", "repairable", "destructive"],
            "properties": {"description": s(), "sql": s(), "hazards": {"type": "array"}, "repairable": {"type": "boolean"}, "destructive": {"type": "boolean"}},
        },
        "Drift": {
            "type": "object",
            "required": ["key", "target", "behind", "steps", "security"],
            "properties": {
                "key": s(), "target": s(), "behind": ns(),
                "steps": {"type": "array", "items": r("DriftStep")},
                "security": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Repair": {
            "type": "object",
            "required": ["applied", "remaining"],
            "properties": {"applied": {"type": "array", "items": s()}, "remaining": r("Drift")},
        },
        "Finding": {
            "type": "object",
            "required": ["check", "ok", "detail"],
            "properties": {"check": s(), "ok": {"type": "boolean"}, "detail": s()},
        },
        "Server": {
            "type": "object",
            "required": ["name", "url", "capacity", "weight", "state", "version", "has_vector", "tenants"],
            "properties": {
                "name": s(), "url": {"type": "string", "description": "without its password"},
                "capacity": int, "weight": int,
                "state": {"type": "string", "enum": ["active", "draining"]},
                "version": s(), "has_vector": {"type": "boolean"}, "tenants": int,
            },
        },
        "Rollout": {
            "type": "object",
            "required": ["id", "target", "owner", "started_at", "finished_at", "state", "total", "migrated", "up_to_date", "failed", "not_run", "options"],
            "properties": {
                "id": int, "target": s(), "owner": s(), "started_at": s(), "finished_at": ns(),
                "state": {"type": "string", "enum": ["running", "done", "failed", "abandoned"]},
                "total": int, "migrated": int, "up_to_date": int, "failed": int, "not_run": int,
                "options": {"type": "object"},
            },
        },
        "RolloutDetail": {
            "allOf": [r("Rollout"), {
                "type": "object",
                "required": ["done", "failures", "failures_truncated"],
                "properties": {
                    "done": int,
                    "failures_truncated": {"type": "boolean"},
                    "failures": {"type": "array", "items": {"type": "object", "required": ["key", "error", "at"], "properties": {"key": ns(), "error": {}, "at": s()}}},
                },
            }],
        },
        "Event": {
            "type": "object",
            "required": ["id", "at", "tenant", "kind", "actor", "detail"],
            "properties": {"id": int, "at": s(), "tenant": ns(), "kind": s(), "actor": s(), "detail": {}},
        },
    })
}

fn problem_response(kinds: &[&str]) -> Value {
    json!({
        "description": format!("Problem: {}", kinds.join(", ")),
        "content": {"application/problem+json": {"schema": r("Problem")}},
    })
}

/// The OpenAPI 3.1 document of the API.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for e in endpoints() {
        let mut params: Vec<Value> = Vec::new();
        for name in e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            let schema = if name == "id" {
                json!({"type": "string", "pattern": "^[0-9]{1,18}$"})
            } else {
                json!({"type": "string", "minLength": 1, "maxLength": 256})
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
        for (name, schema, description) in &e.query {
            params.push(json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description}));
        }
        let mut responses = serde_json::Map::new();
        for (status, schema, description) in &e.ok {
            let content = match schema {
                Some(s) => json!({"application/json": {"schema": s}}),
                None => json!({"text/event-stream": {"schema": {"type": "string"}}}),
            };
            responses.insert(
                status.to_string(),
                json!({"description": description, "content": content}),
            );
        }
        // Each status the operation may answer with a problem, with the kinds behind it.
        let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
        let mut kinds: Vec<&str> = vec!["unauthorized", "forbidden", "internal"];
        kinds.extend(e.problems);
        for k in kinds {
            if let Some((_, status, _)) = KINDS.iter().find(|(kind, ..)| *kind == k) {
                by_status.entry(*status).or_default().push(k);
            }
        }
        for (status, kinds) in by_status {
            responses.insert(status.to_string(), problem_response(&kinds));
        }
        let mut op = json!({
            "operationId": e.id,
            "summary": e.summary,
            "parameters": params,
            "responses": responses,
            "security": [{"token": []}],
            "x-pgfleet-scope": match e.needs { Needs::Read => "read", Needs::Admin => "admin" },
        });
        if let Some(b) = &e.body {
            op["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": b}},
                "description": format!("JSON, at most {MAX_BODY} bytes"),
            });
        }
        let item = paths
            .entry(format!("/v1{}", e.path))
            .or_insert_with(|| json!({}));
        item[e.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pgfleet management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Everything the pgfleet CLI does to a fleet, over HTTP. Tokens: `pgfleet token create NAME --scope read|admin`. Errors are application/problem+json (RFC 9457) with type urn:pgfleet:problem:<kind>.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "description": "A pgfleet token (pgf_…) of scope read or admin"}},
        },
    })
}
