//! `/v1/rollouts`: start `migrate --all` (it runs in this process, in the background: the request
//! answers `202` with the rollout's resource as soon as its row exists), poll it, or follow it as
//! server-sent events. Progress lives in the rollout's catalog row, so any `serve` process of the
//! fleet answers for a rollout any other one runs.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use pgfleet::control::Control;
use pgfleet::control::browse::EventFilter;
use pgfleet::control::fleet::{Canary, FleetOptions, ProgressFn};
use serde::Deserialize;

use super::tenants::{id_cursor, path_text};
use super::{Admin, ApiState, Problem, ROLLOUT_START_WAIT, Reader, json, json_body, query};

type S = State<Arc<ApiState>>;
type R = Result<Response, Problem>;

/// How often a rollout's stream looks at its row.
const POLL: Duration = Duration::from_millis(400);

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub(super) async fn list(State(s): S, _: Reader, uri: Uri) -> R {
    let q: Page = query(&uri)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=pgfleet::control::browse::MAX_PAGE).contains(&limit) {
        return Err(Problem::invalid(format!(
            "limit must be 1 to 1000, got {limit}"
        )));
    }
    let (items, more) = s.control.rollout_page(id_cursor(&q.cursor)?, limit).await?;
    let next = more
        .then(|| items.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"items": items, "next_cursor": next}),
    ))
}

/// What a rollout started over HTTP is asked (the flags of `migrate --all`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Migrate this many tenants (`"10"`) or this share (`"5%"`) first; stop if any fails.
    pub canary: Option<String>,
    /// Keep going after a tenant fails.
    pub continue_on_error: Option<bool>,
    /// Verify each migrated tenant.
    pub verify: Option<bool>,
    /// Tenants migrated at once.
    pub concurrency: Option<u32>,
    /// Tenants migrated at once per server.
    pub per_server: Option<u32>,
    /// Only these tenant keys.
    pub tenants: Option<Vec<String>>,
}

impl StartBody {
    /// The options, over `defaults`.
    ///
    /// # Errors
    /// `invalid-input`.
    pub fn options(self, defaults: &FleetOptions) -> Result<FleetOptions, Problem> {
        let mut o = defaults.clone();
        if let Some(c) = self.canary.filter(|c| !c.trim().is_empty()) {
            o.canary = Some(
                c.parse::<Canary>()
                    .map_err(|e| Problem::invalid(format!("canary: {e}")))?,
            );
        }
        let bound = |name: &str, v: Option<u32>, d: usize| match v {
            None => Ok(d),
            Some(n @ 1..=256) => Ok(n as usize),
            Some(n) => Err(Problem::invalid(format!(
                "{name} must be 1 to 256, got {n}"
            ))),
        };
        o.concurrency = bound("concurrency", self.concurrency, o.concurrency)?;
        o.per_server = bound("per_server", self.per_server, o.per_server)?;
        o.continue_on_error = self.continue_on_error.unwrap_or(o.continue_on_error);
        o.verify = self.verify.unwrap_or(o.verify);
        if let Some(t) = self.tenants {
            for k in &t {
                super::text("tenants[]", k, super::tenants::MAX_KEY)?;
            }
            o.tenants = t;
        }
        Ok(o)
    }
}

/// Starts a rollout in the background and returns its id once its row exists; `serve` waits for it
/// when it stops.
///
/// # Errors
/// `conflict` when one is running (the catalog allows one at a time); the rollout's own errors (no
/// target, unknown tenants).
pub async fn start(state: &ApiState, opts: FleetOptions, actor: &str) -> Result<i64, Problem> {
    let control = &state.control;
    let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
    let tx = Mutex::new(Some(tx));
    let progress: ProgressFn = Arc::new(move |p| {
        if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(p.rollout);
        }
    });
    let c = control.clone();
    let mut run = tokio::spawn(async move { c.migrate_all(None, &opts, progress).await });
    let finished = |done: Result<
        Result<pgfleet::control::fleet::FleetMigration, _>,
        tokio::task::JoinError,
    >| match done {
        Ok(Ok(report)) => Ok(Some(report.rollout)),
        Ok(Err(e)) => Err(Problem::from(e)),
        Err(e) => Err(Problem::new(
            "internal",
            format!("the rollout's task failed: {e}"),
        )),
    };
    let id = tokio::select! {
        id = rx => match id {
            Ok(id) => Some(id),
            // The run ended before its first report: its outcome says why.
            Err(_) => finished((&mut run).await)?,
        },
        done = &mut run => finished(done)?,
        () = tokio::time::sleep(ROLLOUT_START_WAIT) => None,
    };
    let Some(id) = id else {
        // Still not started (a slow catalog): it goes on; say where to look.
        state
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tokio::spawn(async move {
                let _ = run.await;
            }));
        return Err(Problem::new(
            "unavailable",
            "the rollout did not start within 30 s; it may still start: see GET /v1/rollouts",
        ));
    };
    let _ = control
        .record_event_as(
            actor,
            None,
            "api.rollout.start",
            serde_json::json!({"rollout": id, "token": actor.trim_start_matches("token:")}),
        )
        .await;
    if !run.is_finished() {
        let task = tokio::spawn(async move {
            match run.await {
                Ok(Ok(r)) => tracing::info!(
                    "rollout {}: {} migrated, {} up to date, {} failed, {} not run",
                    r.rollout,
                    r.migrated,
                    r.up_to_date,
                    r.failed,
                    r.not_run
                ),
                Ok(Err(e)) => {
                    tracing::error!("rollout {id}: {}", pgfleet::control::error::chain(&e))
                }
                Err(e) => tracing::error!("rollout {id}: its task failed: {e}"),
            }
        });
        let mut running = state.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|t| !t.is_finished());
        running.push(task);
    }
    Ok(id)
}

pub(super) async fn create(State(s): S, Admin(c): Admin, headers: HeaderMap, body: Bytes) -> R {
    let b: StartBody = json_body(&headers, &body)?;
    let opts = b.options(&s.rollout_defaults)?;
    let id = start(&s, opts, &c.actor()).await?;
    let mut r = json(StatusCode::ACCEPTED, detail(&s.control, id).await?);
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/rollouts/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn rollout_id(p: Result<Path<String>, PathRejection>) -> Result<i64, Problem> {
    let v = path_text(p, "id")?;
    v.parse::<i64>()
        .map_err(|_| Problem::invalid(format!("id must be a rollout number, got {v:?}")))
}

/// A rollout with how many tenants are done and its failed tenants with their reasons (the first
/// 100: `failures_truncated` says when there are more; `GET /v1/events?kind=tenant.migrate_failed`
/// lists them all). A `running` rollout whose process died is marked `abandoned` first.
///
/// # Errors
/// `not-found`, catalog errors.
pub async fn detail(control: &Control, id: i64) -> Result<serde_json::Value, Problem> {
    let r = control.rollout_checked(id).await?.ok_or_else(|| {
        Problem::not_found(format!("no rollout {id} (list them: GET /v1/rollouts)"))
    })?;
    let (failed, truncated) = control
        .event_page(
            &EventFilter {
                kind: Some("tenant.migrate_failed".into()),
                rollout: Some(id),
                ..EventFilter::default()
            },
            None,
            100,
        )
        .await?;
    let failures: Vec<serde_json::Value> = failed
        .iter()
        .map(|e| {
            serde_json::json!({
                "key": e.tenant,
                "error": e.detail.get("error").cloned().unwrap_or_default(),
                "at": e.at,
            })
        })
        .collect();
    let mut v = serde_json::to_value(&r).unwrap_or_default();
    v["done"] = r.done().into();
    v["failures"] = failures.into();
    v["failures_truncated"] = truncated.into();
    Ok(v)
}

pub(super) async fn get(State(s): S, _: Reader, id: Result<Path<String>, PathRejection>) -> R {
    let id = rollout_id(id)?;
    Ok(json(StatusCode::OK, detail(&s.control, id).await?))
}

pub(super) async fn events(State(s): S, _: Reader, id: Result<Path<String>, PathRejection>) -> R {
    let id = rollout_id(id)?;
    detail(&s.control, id).await?;
    Ok(stream(s.control.clone(), id, s.stop.clone()).into_response())
}

/// How long one event stream lasts at most; the browser's `EventSource` then connects again.
const STREAM_FOR: Duration = Duration::from_secs(600);

/// A rollout's progress as server-sent events: a `progress` event (the rollout as `GET
/// /v1/rollouts/{id}` shows it) each time it changes, then an `end` event when it is no longer
/// running (or a `problem` event when it cannot be read), then the stream closes. It also closes,
/// without `end`, when `serve` stops (`stop` turns true) and after [`STREAM_FOR`].
pub fn stream(
    control: Control,
    id: i64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let events = futures_util::stream::unfold(
        (control, String::new(), false),
        move |(control, last, ended)| {
            let stop = stop.clone();
            async move {
                if ended {
                    return None;
                }
                let mut first = last.is_empty();
                loop {
                    if !first {
                        tokio::time::sleep(POLL).await;
                    }
                    first = false;
                    if *stop.borrow() || tokio::time::Instant::now() >= until {
                        return None;
                    }
                    let v = match detail(&control, id).await {
                        Ok(v) => v,
                        Err(p) => {
                            let e = Event::default().event("problem").data(p.body().to_string());
                            return Some((Ok(e), (control, last, true)));
                        }
                    };
                    let text = v.to_string();
                    if v["state"] != "running" {
                        let e = Event::default().event("end").data(text);
                        return Some((Ok(e), (control, String::new(), true)));
                    }
                    if text != last {
                        let e = Event::default().event("progress").data(text.clone());
                        return Some((Ok(e), (control, text, false)));
                    }
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
