//! The dashboard's pages and actions.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use pgfleet::control::browse::{EventFilter, EventRecord};
use pgfleet::control::tenant::Tenant;

use super::html::{attr, badge, chart, esc, opt, page, url};
use super::{Fields, Refused, Signed, allow, form, html_response, page_query, see_other, segment};
use crate::api::{ApiState, EventQuery, Problem, StartBody, TenantQuery, tenant_cursor};

pub(super) type S = State<Arc<ApiState>>;
pub(super) type R = Result<Response, Refused>;
pub(super) type F = Result<Form<Fields>, FormRejection>;
pub(super) type K = Result<Path<String>, PathRejection>;

pub(super) fn events_list(id: &str, events: &[EventRecord]) -> String {
    let mut out = format!(r#"<ul id="{id}" class="events">"#);
    if events.is_empty() {
        out.push_str(r#"<li class="muted">No events.</li>"#);
    }
    for e in events {
        let detail = e.detail.to_string();
        let tenant = e
            .tenant
            .as_deref()
            .map(|k| format!(r#" <a href="/tenants/{}">{}</a>"#, url(k), esc(k)))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<li data-kind="{}"><time>{}</time> <strong>{}</strong>{tenant} <span class="muted">by {}</span><code class="detail">{}</code></li>"#,
            attr(&e.kind),
            esc(&e.at),
            esc(&e.kind),
            esc(&e.actor),
            esc(&detail)
        );
    }
    out.push_str("</ul>");
    out
}

pub(super) async fn record(
    s: &ApiState,
    who: &Signed,
    t: Option<&Tenant>,
    kind: &str,
    mut detail: serde_json::Value,
) {
    detail["token"] = who.token.clone().into();
    detail["via"] = "dashboard".into();
    let actor = format!("token:{}", who.token);
    if let Err(e) = s.control.record_event_as(&actor, t, kind, detail).await {
        tracing::warn!("recording event {kind} of {actor}: {e}");
    }
}

fn rollout_box(r: &serde_json::Value) -> String {
    let id = r["id"].as_i64().unwrap_or(0);
    let total = r["total"].as_i64().unwrap_or(0);
    let done = r["done"].as_i64().unwrap_or(0);
    let state = r["state"].as_str().unwrap_or("");
    let stream = if state == "running" {
        format!(r#" data-rollout-stream="/rollouts/{id}/events""#)
    } else {
        String::new()
    };
    format!(
        r#"<div class="rollout" id="rollout-{id}"{stream}><p><a href="/rollouts/{id}">Rollout {id}</a> to <code>{}</code>: <span id="rollout-state" class="state">{}</span></p><progress id="rollout-progress" max="{}" value="{done}">{done}/{total}</progress> <span id="rollout-counts">{done} of {total} done · {} migrated · {} up to date · {} failed · {} not run</span></div>"#,
        esc(r["target"].as_str().unwrap_or("")),
        esc(state),
        total.max(1),
        r["migrated"],
        r["up_to_date"],
        r["failed"],
        r["not_run"]
    )
}

pub(super) async fn overview(State(s): S, who: Signed) -> R {
    let o = s.control.overview().await?;
    let servers = s.control.servers().await?;
    let (latest, _) = s.control.rollout_page(None, 1).await?;
    let problems = s.control.problems(10).await?;
    let recent = |kind: &'static str| {
        let c = s.control.clone();
        async move {
            c.event_page(
                &EventFilter {
                    kind: Some(kind.into()),
                    ..EventFilter::default()
                },
                None,
                10,
            )
            .await
            .map(|(events, _)| events)
        }
    };
    let corrections = recent("tenant.correction").await?;
    let health_changes = recent("tenant.health").await?;
    let mut b = String::from("<h1>Overview</h1>");
    b.push_str(r#"<section id="tenants-by-state" class="cards" aria-label="Tenants by state">"#);
    for state in ["ready", "provisioning", "failed", "dropping"] {
        let n = o.by_state.get(state).copied().unwrap_or(0);
        let _ = write!(
            b,
            r#"<a class="card" data-state="{state}" href="/tenants?state={state}"><span class="count">{n}</span> <span class="label">{state}</span></a>"#
        );
    }
    let _ = write!(
        b,
        r#"<div class="card" data-state="total"><span class="count">{}</span> <span class="label">tenants</span></div></section>"#,
        o.total
    );
    b.push_str(r#"<section id="health" class="cards" aria-label="Ready tenants by health">"#);
    for h in ["healthy", "degraded", "unreachable", "unknown"] {
        let n = o.by_health.get(h).copied().unwrap_or(0);
        let _ = write!(
            b,
            r#"<div class="card" data-health="{h}"><span class="count">{n}</span> <span class="label">{h}</span></div>"#
        );
    }
    b.push_str("</section>");
    // Servers with tenants against capacity and this process's connections against the budget.
    let conns = s
        .sql
        .get()
        .map(|(svc, budget)| (svc.open_connections(), *budget));
    b.push_str(r#"<h2>Servers</h2><div class="scroll"><table id="servers"><thead><tr><th>server</th><th>state</th><th>tenants / capacity</th><th>connections / budget</th><th>PostgreSQL</th></tr></thead><tbody>"#);
    for srv in &servers {
        let conn = match &conns {
            Some((open, budget)) => {
                format!("{} / {budget}", open.get(&srv.name).copied().unwrap_or(0))
            }
            None => {
                r#"<span class="muted" title="this serve process has no SQL front door">—</span>"#
                    .into()
            }
        };
        let _ = write!(
            b,
            r#"<tr data-server="{}"><td>{}</td><td>{}</td><td><meter min="0" max="{}" value="{}"></meter> {} / {}</td><td>{conn}</td><td>{}</td></tr>"#,
            attr(&srv.name),
            esc(&srv.name),
            badge(&srv.state),
            srv.capacity.max(1),
            srv.tenants,
            srv.tenants,
            srv.capacity,
            esc(&srv.version)
        );
    }
    b.push_str("</tbody></table></div>");
    b.push_str(r#"<h2>Rollout</h2><section id="rollout">"#);
    match latest.first() {
        Some(r) => {
            let d = crate::api::rollout_detail(&s.control, r.id).await?;
            b.push_str(&rollout_box(&d));
        }
        None => b.push_str(r#"<p class="muted">No rollout yet.</p>"#),
    }
    b.push_str("</section>");
    b.push_str(r#"<h2>Last hour</h2><section class="charts">"#);
    let h = &s.history;
    b.push_str(&chart(
        "chart-provisioning",
        "Provisioning latency",
        "ms",
        &h.last_hour("provisioning"),
        |m| m.mean_ms(),
    ));
    b.push_str(&chart(
        "chart-acquire",
        "Router acquire latency",
        "ms",
        &h.last_hour("acquire"),
        |m| m.mean_ms(),
    ));
    b.push_str(&chart(
        "chart-heals",
        "Heals (requests repaired and run again)",
        "per minute",
        &h.last_hour("heals"),
        |m| m.count,
    ));
    b.push_str("</section>");
    b.push_str(
        r#"<div class="two"><section><h2>Needs attention</h2><ul id="problems" class="events">"#,
    );
    if problems.is_empty() {
        b.push_str(r#"<li class="muted">Nothing: every tenant is ready and healthy.</li>"#);
    }
    for p in &problems {
        let _ = write!(
            b,
            r#"<li><a href="/tenants/{}">{}</a> {} <span class="muted">{}</span><code class="detail">{}</code></li>"#,
            url(&p.key),
            esc(&p.key),
            badge(&p.state),
            esc(&p.at),
            esc(&p.problem)
        );
    }
    b.push_str("</ul></section><section><h2>Recent corrections</h2>");
    b.push_str(&events_list("corrections", &corrections));
    b.push_str("</section><section><h2>Health changes</h2>");
    b.push_str(&events_list("health-changes", &health_changes));
    b.push_str("</section></div>");
    Ok(html_response(page(
        "Overview",
        "/",
        Some(&who.viewer()),
        &b,
    )))
}

fn select(name: &str, label: &str, options: &[&str], current: Option<&str>) -> String {
    let mut out = format!(r#"<label>{label} <select name="{name}"><option value="">any</option>"#);
    for o in options {
        let sel = if current == Some(*o) { " selected" } else { "" };
        let _ = write!(out, r#"<option{sel}>{o}</option>"#);
    }
    out.push_str("</select></label>");
    out
}

pub(super) async fn tenants(State(s): S, who: Signed, uri: Uri) -> R {
    let q: TenantQuery = page_query(&uri)?;
    let filter = q.filter()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let (items, more) = s
        .control
        .tenant_page(&filter, q.after()?.as_deref(), limit)
        .await?;
    let mut b = String::from("<h1>Tenants</h1>");
    let _ = write!(
        b,
        r#"<form id="search" method="get" action="/tenants" role="search"><label>Key <input type="search" name="q" value="{}" placeholder="part of a key" autofocus></label>{}{}<label>Server <input name="server" value="{}" size="10"></label><button type="submit">Search</button></form>"#,
        attr(filter.search.as_deref().unwrap_or("")),
        select(
            "state",
            "State",
            &["provisioning", "ready", "failed", "dropping"],
            filter.state.as_deref()
        ),
        select(
            "mode",
            "Mode",
            &["database", "schema"],
            filter.mode.as_deref()
        ),
        attr(filter.server.as_deref().unwrap_or("")),
    );
    b.push_str(r#"<div class="scroll"><table id="tenants"><thead><tr><th>key</th><th>state</th><th>mode</th><th>server</th><th>version</th><th>health</th></tr></thead><tbody>"#);
    for t in &items {
        let _ = write!(
            b,
            r#"<tr data-key="{}"><td><a href="/tenants/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            attr(&t.key),
            url(&t.key),
            esc(&t.key),
            badge(t.state.as_str()),
            t.mode,
            opt(t.server.as_deref()),
            opt(t.schema_version.as_deref()),
            badge(t.health.as_str())
        );
    }
    if items.is_empty() {
        b.push_str(r#"<tr><td colspan="6" class="muted">No tenant matches.</td></tr>"#);
    }
    b.push_str("</tbody></table></div>");
    if more && let Some(last) = items.last() {
        let mut next = format!("/tenants?cursor={}", tenant_cursor(&last.key));
        for (k, v) in [
            ("q", &filter.search),
            ("state", &filter.state),
            ("mode", &filter.mode),
            ("server", &filter.server),
            ("version", &filter.version),
        ] {
            if let Some(v) = v {
                let _ = write!(next, "&{k}={}", url(v));
            }
        }
        let _ = write!(
            b,
            r#"<p><a id="next" href="{}">Next page →</a></p>"#,
            attr(&next)
        );
    }
    Ok(html_response(page(
        "Tenants",
        "/tenants",
        Some(&who.viewer()),
        &b,
    )))
}

pub(super) async fn servers(State(s): S, who: Signed) -> R {
    let v = who.viewer();
    let mut b = String::from(
        r#"<h1>Servers</h1><div class="scroll"><table id="server-list"><thead><tr><th>server</th><th>URL</th><th>state</th><th>tenants / capacity</th><th>weight</th><th>PostgreSQL</th><th>pgvector</th><th></th></tr></thead><tbody>"#,
    );
    for srv in s.control.servers().await? {
        let base = format!("/servers/{}", url(&srv.name));
        let mut actions = String::new();
        if v.admin() {
            if srv.state == "active" {
                actions.push_str(&v.action(
                    &format!("drain-{}", srv.name),
                    &format!("{base}/drain"),
                    "Drain",
                    "",
                    "",
                ));
            } else {
                actions.push_str(&v.action(
                    &format!("activate-{}", srv.name),
                    &format!("{base}/activate"),
                    "Activate",
                    "",
                    "",
                ));
            }
            actions.push_str(&v.action(
                &format!("spares-{}", srv.name),
                &format!("{base}/spares"),
                "Refill spares",
                "",
                "",
            ));
        }
        let _ = write!(
            b,
            r#"<tr data-server="{}"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td class="actions">{actions}</td></tr>"#,
            attr(&srv.name),
            esc(&srv.name),
            esc(&srv.url),
            badge(&srv.state),
            srv.tenants,
            srv.capacity,
            srv.weight,
            esc(&srv.version),
            if srv.has_vector { "yes" } else { "no" }
        );
    }
    b.push_str("</tbody></table></div>");
    Ok(html_response(page("Servers", "/servers", Some(&v), &b)))
}

pub(super) async fn server_action(
    State(s): S,
    who: Signed,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    f: F,
) -> R {
    let Path((name, action)) = p.map_err(|e| Refused::Problem(Problem::invalid(e.body_text())))?;
    allow(&who, &headers, &form(f)?, true)?;
    if !s.control.servers().await?.iter().any(|x| x.name == name) {
        return Err(Problem::not_found(format!("no server {name:?}")).into());
    }
    let detail = match action.as_str() {
        "drain" => {
            s.control.drain_server(&name).await?;
            serde_json::json!({"server": name})
        }
        "activate" => {
            s.control.activate_server(&name).await?;
            serde_json::json!({"server": name})
        }
        "spares" => s.control.refill_spares(&name).await?.to_json(&name),
        _ => return Err(Problem::not_found("no such server action").into()),
    };
    record(&s, &who, None, &format!("api.server.{action}"), detail).await;
    Ok(see_other("/servers"))
}

pub(super) async fn rollouts(State(s): S, who: Signed, uri: Uri) -> R {
    #[derive(serde::Deserialize)]
    struct Q {
        cursor: Option<String>,
    }
    let q: Q = page_query(&uri)?;
    let (list, more) = s
        .control
        .rollout_page(crate::api::id_cursor(&q.cursor)?, 20)
        .await?;
    let v = who.viewer();
    let mut b = String::from("<h1>Rollouts</h1>");
    if v.admin() {
        let fields = r#"<label>Canary <input name="canary" placeholder="e.g. 10 or 5%" size="8"></label><label><input type="checkbox" name="continue_on_error" value="true"> continue past failures</label><label><input type="checkbox" name="verify" value="true"> verify each tenant</label>"#;
        b.push_str(&v.action(
            "start-rollout",
            "/rollouts",
            "Start a rollout (migrate --all)",
            fields,
            "",
        ));
    }
    b.push_str(r#"<div class="scroll"><table id="rollouts"><thead><tr><th>id</th><th>target</th><th>state</th><th>progress</th><th>failed</th><th>started</th><th>owner</th></tr></thead><tbody>"#);
    for r in &list {
        let _ = write!(
            b,
            r#"<tr data-rollout="{}"><td><a href="/rollouts/{}">{}</a></td><td><code>{}</code></td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            r.id,
            r.id,
            r.id,
            esc(&r.target),
            badge(&r.state),
            r.done(),
            r.total,
            r.failed,
            esc(&r.started_at),
            esc(&r.owner)
        );
    }
    if list.is_empty() {
        b.push_str(r#"<tr><td colspan="7" class="muted">No rollout yet.</td></tr>"#);
    }
    b.push_str("</tbody></table></div>");
    if more && let Some(last) = list.last() {
        let _ = write!(
            b,
            r#"<p><a id="next" href="/rollouts?cursor={}">Older →</a></p>"#,
            last.id
        );
    }
    Ok(html_response(page("Rollouts", "/rollouts", Some(&v), &b)))
}

pub(super) async fn start_rollout(State(s): S, who: Signed, headers: HeaderMap, f: F) -> R {
    let f = form(f)?;
    allow(&who, &headers, &f, true)?;
    let yes = |k: &str| f.get(k).map(|v| v == "true" || v == "on");
    let body = StartBody {
        canary: f.get("canary").cloned(),
        continue_on_error: yes("continue_on_error"),
        verify: yes("verify"),
        ..StartBody::default()
    };
    let opts = body.options(&s.rollout_defaults)?;
    let id = crate::api::start_rollout(&s, opts, &format!("token:{}", who.token)).await?;
    Ok(see_other(&format!("/rollouts/{id}")))
}

fn rollout_id(p: K) -> Result<i64, Refused> {
    let v = segment(p)?;
    v.parse()
        .map_err(|_| Refused::Problem(Problem::not_found(format!("no rollout {v:?}"))))
}

pub(super) async fn rollout(State(s): S, who: Signed, id: K) -> R {
    let id = rollout_id(id)?;
    let d = crate::api::rollout_detail(&s.control, id).await?;
    let mut b = format!("<h1>Rollout {id}</h1>");
    b.push_str(&rollout_box(&d));
    let _ = write!(
        b,
        r#"<p class="muted">Started {} by {}; options <code>{}</code>.</p><h2>Failed tenants</h2><ul id="failures" class="events">"#,
        esc(d["started_at"].as_str().unwrap_or("")),
        esc(d["owner"].as_str().unwrap_or("")),
        esc(&d["options"].to_string())
    );
    let failures = d["failures"].as_array().cloned().unwrap_or_default();
    if failures.is_empty() {
        b.push_str(r#"<li class="muted">None.</li>"#);
    }
    for f in failures {
        let key = f["key"].as_str().unwrap_or("");
        let _ = write!(
            b,
            r#"<li><a href="/tenants/{}">{}</a><code class="detail">{}</code></li>"#,
            url(key),
            esc(key),
            esc(f["error"].as_str().unwrap_or(&f["error"].to_string()))
        );
    }
    b.push_str("</ul>");
    Ok(html_response(page(
        &format!("Rollout {id}"),
        "/rollouts",
        Some(&who.viewer()),
        &b,
    )))
}

pub(super) async fn rollout_events(State(s): S, _who: Signed, id: K) -> R {
    let id = rollout_id(id)?;
    crate::api::rollout_detail(&s.control, id).await?;
    Ok(crate::api::rollout_stream(s.control.clone(), id, s.stop.clone()).into_response())
}

pub(super) async fn events(State(s): S, who: Signed, uri: Uri) -> R {
    let q: EventQuery = page_query(&uri)?;
    let filter = q.filter()?;
    let (list, more) = s
        .control
        .event_page(&filter, crate::api::id_cursor(&q.cursor)?, 50)
        .await?;
    let mut b = String::from("<h1>Events</h1>");
    let _ = write!(
        b,
        r#"<form id="event-filter" method="get" action="/events"><label>Tenant <input name="tenant" value="{}"></label><label>Kind <input name="kind" value="{}" placeholder="tenant.correction"></label><button type="submit">Filter</button></form>"#,
        attr(filter.tenant.as_deref().unwrap_or("")),
        attr(filter.kind.as_deref().unwrap_or(""))
    );
    b.push_str(&events_list("event-list", &list));
    if more && let Some(last) = list.last() {
        let mut next = format!("/events?cursor={}", last.id);
        if let Some(t) = &filter.tenant {
            let _ = write!(next, "&tenant={}", url(t));
        }
        if let Some(k) = &filter.kind {
            let _ = write!(next, "&kind={}", url(k));
        }
        let _ = write!(
            b,
            r#"<p><a id="next" href="{}">Older →</a></p>"#,
            attr(&next)
        );
    }
    Ok(html_response(page(
        "Events",
        "/events",
        Some(&who.viewer()),
        &b,
    )))
}

/// The sign-in page, with an error when the last attempt failed.
pub(super) fn login(error: Option<&str>) -> String {
    let err = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<section class="login"><h1>Sign in</h1>{err}<form id="login" method="post" action="/login"><label for="token">Token of scope read or admin</label><input id="token" name="token" type="password" autocomplete="off" required autofocus placeholder="pgf_…"><button type="submit">Sign in</button></form><p class="muted">Make one with <code>pgfleet token create NAME --scope read</code> (or <code>--scope admin</code> to change things). The token is exchanged for a session cookie; it is never put in a URL.</p></section>"#
    );
    page("Sign in", "", None, &body)
}
