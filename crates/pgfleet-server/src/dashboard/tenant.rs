//! The tenant page and its actions: placement, events and corrections, check-user; Check, Fix,
//! Rotate password, and the destructive Reset and Drop (the key typed again).

use std::fmt::Write;

use axum::extract::State;
use axum::http::HeaderMap;
use pgfleet::control::browse::EventFilter;
use pgfleet::control::diagnose::{Drift, Repair};

use super::html::{badge, esc, facts, opt, page, url};
use super::pages::{F, K, R, S, events_list, record};
use super::{Fields, Refused, Signed, allow, form, html_response, see_other, segment};
use crate::api::{ApiState, Problem};

/// What an action adds to the tenant page.
enum Extra {
    None,
    Drift(Drift),
    Repair(Repair),
    Message(String),
}

fn drift_html(id: &str, d: &Drift) -> String {
    let clean = d.steps.is_empty() && d.security.is_empty();
    let mut out = format!(
        r#"<section id="{id}" class="drift{}" aria-live="polite"><h2>Drift against {}</h2>"#,
        if clean { " clean" } else { "" },
        esc(&d.target)
    );
    if let Some(b) = &d.behind {
        let _ = write!(
            out,
            r#"<p class="muted">Behind the current target {} (a rollout brings it there; that is not drift).</p>"#,
            esc(b)
        );
    }
    if clean {
        out.push_str(r#"<p class="ok">In sync: introspected and compared, no difference.</p>"#);
    }
    out.push_str("<ul>");
    for s in &d.steps {
        let _ = write!(
            out,
            r#"<li class="finding">{} {}<code class="detail">{}</code></li>"#,
            esc(&s.description),
            if s.repairable {
                badge("repairable")
            } else if s.destructive {
                badge("destructive")
            } else {
                badge("manual")
            },
            esc(&s.sql)
        );
    }
    for f in &d.security {
        let text = serde_json::to_value(f)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<li class="finding security">{} <code class="detail">{}</code></li>"#,
            badge("security"),
            esc(&text)
        );
    }
    out.push_str("</ul></section>");
    out
}

async fn tenant_page(s: &ApiState, who: &Signed, key: &str, extra: Extra) -> R {
    let t = s.control.tenant(key).await?;
    let (events, _) = s
        .control
        .event_page(
            &EventFilter {
                tenant: Some(key.to_string()),
                ..EventFilter::default()
            },
            None,
            30,
        )
        .await?;
    let v = who.viewer();
    let base = format!("/tenants/{}", url(key));
    let mut b = format!(r#"<h1><span class="muted">Tenant</span> {}</h1>"#, esc(key));
    if let Extra::Message(m) = &extra {
        let _ = write!(b, r#"<p class="ok" role="status">{}</p>"#, esc(m));
    }
    b.push_str(&facts(
        "placement",
        &[
            (
                "state",
                format!(
                    "{} <span class=\"muted\">step {}</span>",
                    badge(t.state.as_str()),
                    esc(&t.step)
                ),
            ),
            ("mode", esc(t.mode.as_str())),
            ("server", opt(t.server.as_deref())),
            ("database", esc(&t.database)),
            ("schema", esc(&t.schema)),
            ("role", esc(&t.role)),
            ("version", opt(t.schema_version.as_deref())),
            (
                "health",
                format!(
                    "{} {}",
                    badge(t.health.as_str()),
                    opt(t.health_error.as_deref())
                ),
            ),
            ("last error", opt(t.last_error.as_deref())),
            ("migration error", opt(t.migrate_error.as_deref())),
            ("created", esc(&t.created_at)),
        ],
    ));
    b.push_str(r#"<div class="actions">"#);
    b.push_str(&v.action("check", &format!("{base}/check"), "Check drift", "", ""));
    let _ = write!(
        b,
        r#"<a class="button" href="{base}/check-user">check-user</a>"#
    );
    if v.admin() {
        b.push_str(&v.action(
            "fix",
            &format!("{base}/fix"),
            "Fix (additive repair)",
            "",
            "",
        ));
        b.push_str(&v.action(
            "rotate",
            &format!("{base}/rotate-password"),
            "Rotate password",
            "",
            "",
        ));
    }
    b.push_str("</div>");
    match &extra {
        Extra::Drift(d) => b.push_str(&drift_html("drift", d)),
        Extra::Repair(r) => {
            b.push_str(r#"<section id="repair" aria-live="polite"><h2>Repair</h2><ul>"#);
            if r.applied.is_empty() {
                b.push_str(r#"<li class="muted">Nothing to repair.</li>"#);
            }
            for a in &r.applied {
                let _ = write!(b, r#"<li class="change"><code>{}</code></li>"#, esc(a));
            }
            b.push_str("</ul></section>");
            b.push_str(&drift_html("remaining", &r.remaining));
        }
        _ => {}
    }
    b.push_str(r#"<h2>Events and corrections</h2>"#);
    b.push_str(&events_list("events", &events));
    let _ = write!(
        b,
        r#"<p><a href="/events?tenant={}">All events of this tenant →</a> · <a href="/events?tenant={}&amp;kind=tenant.correction">its corrections</a></p>"#,
        url(key),
        url(key)
    );
    if v.admin() {
        let confirm = r#"<label>Type the key to confirm <input name="confirm" required autocomplete="off" aria-label="tenant key, to confirm"></label>"#;
        b.push_str(r#"<details class="danger"><summary>Destructive actions</summary>"#);
        b.push_str(&v.action(
            "reset",
            &format!("{base}/reset"),
            "Reset (re-create from the target; data is lost)",
            confirm,
            "danger",
        ));
        b.push_str(&v.action(
            "drop",
            &format!("{base}/drop"),
            "Drop the tenant",
            confirm,
            "danger",
        ));
        b.push_str("</details>");
    }
    Ok(html_response(page(key, "/tenants", Some(&v), &b)))
}

pub(super) async fn tenant(State(s): S, who: Signed, key: K) -> R {
    let key = segment(key)?;
    tenant_page(&s, &who, &key, Extra::None).await
}

pub(super) async fn check(State(s): S, who: Signed, headers: HeaderMap, key: K, f: F) -> R {
    let key = segment(key)?;
    allow(&who, &headers, &form(f)?, false)?;
    let d = s.control.check(&key).await?;
    tenant_page(&s, &who, &key, Extra::Drift(d)).await
}

pub(super) async fn fix(State(s): S, who: Signed, headers: HeaderMap, key: K, f: F) -> R {
    let key = segment(key)?;
    allow(&who, &headers, &form(f)?, true)?;
    let t = s.control.tenant(&key).await?;
    let r = s
        .control
        .fix(&key, &format!("token:{} (dashboard)", who.token))
        .await?;
    record(
        &s,
        &who,
        Some(&t),
        "api.tenant.fix",
        serde_json::json!({"applied": r.applied.len()}),
    )
    .await;
    tenant_page(&s, &who, &key, Extra::Repair(r)).await
}

pub(super) async fn rotate(State(s): S, who: Signed, headers: HeaderMap, key: K, f: F) -> R {
    let key = segment(key)?;
    allow(&who, &headers, &form(f)?, true)?;
    let t = s.control.tenant(&key).await?;
    s.control.rotate_password(&key).await?;
    record(
        &s,
        &who,
        Some(&t),
        "api.tenant.rotate_password",
        serde_json::json!({}),
    )
    .await;
    tenant_page(
        &s,
        &who,
        &key,
        Extra::Message("The role's password was rotated.".into()),
    )
    .await
}

fn confirmed(f: &Fields, key: &str) -> Result<(), Refused> {
    if f.get("confirm").map(String::as_str) != Some(key) {
        return Err(Problem::new(
            "confirmation-required",
            "type the tenant's key exactly to confirm a destructive action",
        )
        .into());
    }
    Ok(())
}

pub(super) async fn reset(State(s): S, who: Signed, headers: HeaderMap, key: K, f: F) -> R {
    let key = segment(key)?;
    let f = form(f)?;
    allow(&who, &headers, &f, true)?;
    confirmed(&f, &key)?;
    let t = s
        .control
        .reset_tenant(&key, std::time::Duration::from_secs(120))
        .await?;
    record(
        &s,
        &who,
        Some(&t),
        "api.tenant.reset",
        serde_json::json!({}),
    )
    .await;
    tenant_page(
        &s,
        &who,
        &key,
        Extra::Message("The tenant was reset to the target.".into()),
    )
    .await
}

pub(super) async fn drop(State(s): S, who: Signed, headers: HeaderMap, key: K, f: F) -> R {
    let key = segment(key)?;
    let f = form(f)?;
    allow(&who, &headers, &f, true)?;
    confirmed(&f, &key)?;
    let t = s.control.drop_tenant(&key).await?;
    record(&s, &who, Some(&t), "api.tenant.drop", serde_json::json!({})).await;
    Ok(see_other("/tenants"))
}

pub(super) async fn check_user(State(s): S, who: Signed, key: K) -> R {
    let key = segment(key)?;
    let (_, findings, _) = s.control.check_user(&key).await?;
    let mut b = format!(
        r#"<h1><span class="muted">check-user</span> {}</h1><p><a href="/tenants/{}">← the tenant</a></p><ul id="findings" class="events">"#,
        esc(&key),
        url(&key)
    );
    for f in &findings {
        let _ = write!(
            b,
            r#"<li class="{}">{} <strong>{}</strong> {}</li>"#,
            if f.ok { "ok" } else { "bad" },
            badge(if f.ok { "ok" } else { "failed" }),
            esc(&f.check),
            esc(&f.detail)
        );
    }
    b.push_str("</ul>");
    Ok(html_response(page(
        &key,
        "/tenants",
        Some(&who.viewer()),
        &b,
    )))
}
