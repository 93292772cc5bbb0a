//! The management API (`/v1`) against a real fleet and a real `pgfleet serve` over real sockets:
//! every operation with each scope, the fleet operations end to end (create under races, check,
//! fix, reset, drop, servers, rollouts with their event stream, events naming the token),
//! problem+json for bad input, paging over 10,000 tenants, and the OpenAPI document.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{Fleet, enc};
use pgfleet_server::api::openapi::{Needs, endpoints};

/// A concrete path of an operation: the fleet's tenant and server, a rollout id.
fn concrete(path: &str) -> String {
    path.replace("{key}", &enc("alice@example.com"))
        .replace("{name}", "main")
        .replace("{id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_refuses_missing_unknown_and_out_of_scope_tokens() {
    let f = Fleet::start().await;
    let list = endpoints();
    assert!(list.len() >= 19, "{list:?}");
    for e in &list {
        let path = format!("/v1{}", concrete(e.path));
        let m = e.method.to_uppercase();
        let r = f.call(&m, &path, None, None).await;
        r.problem(401, "unauthorized");
        assert!(r.header("www-authenticate").starts_with("Bearer"), "{e:?}");
        f.call(
            &m,
            &path,
            Some("pgf_not-a-real-token-at-all-000000000000000000"),
            None,
        )
        .await
        .problem(401, "unauthorized");
        // A sql token opens only the SQL front doors.
        let p = f
            .call(&m, &path, Some(&f.sql), None)
            .await
            .problem(403, "forbidden");
        assert!(p["detail"].as_str().unwrap().contains("scope sql"), "{p}");
        if e.needs == Needs::Admin {
            // Refused before anything is looked at: the read token learns nothing.
            let p = f
                .call(&m, &path, Some(&f.read), None)
                .await
                .problem(403, "forbidden");
            assert!(
                p["detail"].as_str().unwrap().contains("scope admin"),
                "{e:?}: {p}"
            );
        }
    }
    // The read token may look at everything a read operation names.
    for e in list.iter().filter(|e| e.needs == Needs::Read) {
        if e.path.contains("rollouts/{id}") {
            continue; // no rollout yet: 404 below
        }
        let r = f
            .call(
                &e.method.to_uppercase(),
                &format!("/v1{}", concrete(e.path)),
                Some(&f.read),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{e:?} with the read token: {}", r.body);
        assert_eq!(r.header("content-type"), "application/json", "{e:?}");
    }
    f.call("GET", "/v1/rollouts/1", Some(&f.read), None)
        .await
        .problem(404, "not-found");
    // A revoked token stops working at once (the API does not cache tokens).
    f.control.revoke_token("viewer").await.unwrap();
    f.call("GET", "/v1/tenants", Some(&f.read), None)
        .await
        .problem(401, "unauthorized");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_created_once_checked_fixed_reset_and_dropped() {
    let f = Fleet::start().await;
    let admin = Some(f.admin.as_str());
    // Idempotent create under 8 concurrent requests: one 201, seven 200, one tenant.
    let calls = (0..8).map(|_| {
        f.call(
            "POST",
            "/v1/tenants",
            admin,
            Some(serde_json::json!({"key": "carol/ü 1", "mode": "schema"})),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    let same = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!((created, same), (1, 7), "{answers:?}");
    let ids: HashSet<String> = answers
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1);
    // The same key with other options conflicts.
    f.call(
        "POST",
        "/v1/tenants",
        admin,
        Some(serde_json::json!({"key": "carol/ü 1", "mode": "database"})),
    )
    .await
    .problem(409, "conflict");
    // The workers of `serve` provision it.
    let key = enc("carol/ü 1");
    let mut state = String::new();
    for _ in 0..600 {
        let r = f
            .call("GET", &format!("/v1/tenants/{key}"), admin, None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        state = r.json()["state"].as_str().unwrap().to_string();
        if state == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "ready");
    let events = f
        .call(
            "GET",
            &format!("/v1/events?tenant={key}&kind=api"),
            admin,
            None,
        )
        .await
        .json();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one create event: {events}");
    assert_eq!(items[0]["kind"], "api.tenant.create");
    assert_eq!(items[0]["actor"], "token:ops");

    // Check → drift after a table is dropped behind pgfleet's back → fix → clean.
    let alice = enc("alice@example.com");
    let r = f
        .call(
            "POST",
            &format!("/v1/tenants/{alice}/check"),
            Some(&f.read),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["steps"].as_array().unwrap().len(), 0, "{}", r.body);
    let (db, table) = f.tenant_table("alice@example.com", "chat_messages").await;
    db.batch_execute(&format!("DROP TABLE {table} CASCADE"))
        .await
        .unwrap();
    let drift = f
        .call(
            "POST",
            &format!("/v1/tenants/{alice}/check"),
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert!(
        drift["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["description"].as_str().unwrap().contains("chat_messages")),
        "{drift}"
    );
    f.call(
        "POST",
        &format!("/v1/tenants/{alice}/fix"),
        Some(&f.read),
        None,
    )
    .await
    .problem(403, "forbidden");
    let repair = f
        .call("POST", &format!("/v1/tenants/{alice}/fix"), admin, None)
        .await;
    assert_eq!(repair.status, 200, "{}", repair.body);
    let repair = repair.json();
    assert!(
        !repair["applied"].as_array().unwrap().is_empty(),
        "{repair}"
    );
    assert_eq!(
        repair["remaining"]["steps"].as_array().unwrap().len(),
        0,
        "{repair}"
    );
    let corrections = f
        .call(
            "GET",
            &format!("/v1/events?tenant={alice}&kind=tenant.correction"),
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert!(
        !corrections["items"].as_array().unwrap().is_empty(),
        "{corrections}"
    );
    let fixes = f
        .call(
            "GET",
            &format!("/v1/events?tenant={alice}&kind=api.tenant.fix"),
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert_eq!(fixes["items"][0]["actor"], "token:ops", "{fixes}");
    assert_eq!(fixes["items"][0]["detail"]["token"], "ops", "{fixes}");

    // check-user, rotate-password.
    let cu = f
        .call(
            "GET",
            &format!("/v1/tenants/{alice}/check-user"),
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert_eq!(cu["healthy"], true, "{cu}");
    let r = f
        .call(
            "POST",
            &format!("/v1/tenants/{alice}/rotate-password"),
            admin,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["rotated"].clone()),
        (200, serde_json::json!(true))
    );

    // Reset and drop need the key again.
    db.batch_execute(&format!("INSERT INTO {table} DEFAULT VALUES"))
        .await
        .ok();
    f.call("POST", &format!("/v1/tenants/{alice}/reset"), admin, None)
        .await
        .problem(400, "confirmation-required");
    f.call(
        "POST",
        &format!("/v1/tenants/{alice}/reset?confirm=alice"),
        admin,
        None,
    )
    .await
    .problem(400, "confirmation-required");
    let r = f
        .call(
            "POST",
            &format!("/v1/tenants/{alice}/reset?confirm={alice}"),
            admin,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, serde_json::json!("ready")),
        "{}",
        r.body
    );
    f.call("DELETE", "/v1/tenants/bob", admin, None)
        .await
        .problem(400, "confirmation-required");
    let r = f
        .call("DELETE", "/v1/tenants/bob?confirm=bob", admin, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    f.call("GET", "/v1/tenants/bob", admin, None)
        .await
        .problem(404, "not-found");
    let dropped = f
        .call(
            "GET",
            "/v1/events?tenant=bob&kind=api.tenant.drop",
            admin,
            None,
        )
        .await
        .json();
    assert_eq!(dropped["items"][0]["actor"], "token:ops", "{dropped}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_rollouts_events_and_validate() {
    let f = Fleet::start().await;
    let admin = Some(f.admin.as_str());
    let servers = f
        .call("GET", "/v1/servers", Some(&f.read), None)
        .await
        .json();
    assert_eq!(servers["items"][0]["name"], "main", "{servers}");
    assert!(
        !servers["items"][0]["url"]
            .as_str()
            .unwrap()
            .contains(f.db.password())
    );
    let r = f.call("POST", "/v1/servers/main/drain", admin, None).await;
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, serde_json::json!("draining"))
    );
    let r = f
        .call("POST", "/v1/servers/main/activate", admin, None)
        .await;
    assert_eq!(r.json()["state"], "active");
    f.call("POST", "/v1/servers/nope/drain", admin, None)
        .await
        .problem(404, "not-found");
    let r = f.call("POST", "/v1/servers/main/spares", admin, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (schemas, databases) = (r.json()["schemas"].as_u64(), r.json()["databases"].as_u64());
    assert_eq!(
        r.json()["built"].as_u64(),
        schemas.zip(databases).map(|(s, d)| s + d),
        "{}",
        r.body
    );
    // A server that cannot be reached is the caller's problem (422), never a 5xx.
    let port = pgfleet_testkit::free_port();
    f.call(
        "POST",
        "/v1/servers",
        admin,
        Some(serde_json::json!({"name": "gone", "url": format!("postgres://x:y@127.0.0.1:{port}/postgres")})),
    )
    .await
    .problem(422, "unprocessable");
    f.call(
        "POST",
        "/v1/servers",
        admin,
        Some(serde_json::json!({"name": "main", "url": "mysql://nope"})),
    )
    .await
    .problem(400, "invalid-input");

    // A rollout: 202 at once with its resource; its events stream ends with `end`.
    let r = f
        .call(
            "POST",
            "/v1/rollouts",
            admin,
            Some(serde_json::json!({"canary": "1"})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.header("location"), format!("/v1/rollouts/{id}"));
    assert_eq!(r.json()["options"]["canary"], "1");
    let stream = f
        .call(
            "GET",
            &format!("/v1/rollouts/{id}/events"),
            Some(&f.read),
            None,
        )
        .await;
    assert_eq!(stream.header("content-type"), "text/event-stream");
    assert!(stream.body.contains("event: end"), "{}", stream.body);
    let done = f
        .call("GET", &format!("/v1/rollouts/{id}"), Some(&f.read), None)
        .await
        .json();
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["total"], 2);
    assert_eq!(done["done"], 2, "{done}");
    let list = f
        .call("GET", "/v1/rollouts", Some(&f.read), None)
        .await
        .json();
    assert_eq!(list["items"][0]["id"], id);
    let started = f
        .call("GET", "/v1/events?kind=api.rollout", admin, None)
        .await
        .json();
    assert_eq!(started["items"][0]["detail"]["rollout"], id, "{started}");
    // One rollout at a time: while another process runs one (its row running, its lock held),
    // a start is refused; once that process is gone, its rollout is abandoned and a start works.
    let other = pgfleet_testkit::connect(f.db.url()).await;
    let running: i64 = other
        .query_one(
            "INSERT INTO pgfleet.rollouts (target, owner, total) VALUES ('x', 'elsewhere', 0) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    other
        .execute(
            "SELECT pg_advisory_lock($1::int4, $2::int4)",
            &[&0x7066_6c72_i32, &(running as i32)],
        )
        .await
        .unwrap();
    let p = f
        .call("POST", "/v1/rollouts", admin, Some(serde_json::json!({})))
        .await
        .problem(409, "conflict");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("rollout {running} is running")),
        "{p}"
    );
    let r = f
        .call(
            "GET",
            &format!("/v1/rollouts/{running}"),
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert_eq!(r["state"], "running");
    drop(other);
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        state = f
            .call(
                "GET",
                &format!("/v1/rollouts/{running}"),
                Some(&f.read),
                None,
            )
            .await
            .json()["state"]
            .clone();
        if state == "abandoned" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "abandoned", "a rollout whose process is gone");
    let r = f
        .call("POST", "/v1/rollouts", admin, Some(serde_json::json!({})))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let stream = f
        .call(
            "GET",
            &format!("/v1/rollouts/{}/events", r.json()["id"]),
            Some(&f.read),
            None,
        )
        .await;
    assert!(stream.body.contains("event: end"), "{}", stream.body);
    // An empty filter means any.
    let all = f
        .call("GET", "/v1/events?tenant=&kind=", Some(&f.read), None)
        .await;
    assert_eq!(all.status, 200, "{}", all.body);

    // Bad options are refused before anything runs.
    f.call(
        "POST",
        "/v1/rollouts",
        admin,
        Some(serde_json::json!({"canary": "0"})),
    )
    .await
    .problem(400, "invalid-input");
    f.call(
        "POST",
        "/v1/rollouts",
        admin,
        Some(serde_json::json!({"tenants": ["nobody"]})),
    )
    .await
    .problem(404, "not-found");

    // Health changes are events: every check slower than 0 ms is degraded, then healthy again.
    for degraded_after in [Duration::ZERO, Duration::from_secs(30)] {
        let opts = pgfleet::control::health::HealthOptions {
            interval: Duration::ZERO,
            degraded_after,
            ..Default::default()
        };
        let round = f.control.health_round(&opts).await.unwrap();
        assert_eq!(round.total(), 2, "{round:?}");
    }
    let changes = f
        .call(
            "GET",
            "/v1/events?kind=tenant.health&tenant=bob",
            Some(&f.read),
            None,
        )
        .await
        .json();
    let moves: Vec<(String, String)> = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["detail"]["from"].as_str().unwrap().into(),
                e["detail"]["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("degraded".to_string(), "healthy".to_string()),
            ("unknown".into(), "degraded".into())
        ],
        "{changes}"
    );

    let v = f
        .call("GET", "/v1/validate", Some(&f.read), None)
        .await
        .json();
    assert!(v["findings"].as_array().unwrap().len() > 3, "{v}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_problem_json_and_paging_covers_10000_tenants() {
    let f = Fleet::start().await;
    let admin = Some(f.admin.as_str());
    for (path, kind) in [
        ("/v1/tenants?limit=0", "invalid-input"),
        ("/v1/tenants?limit=abc", "invalid-input"),
        ("/v1/tenants?state=happy", "invalid-input"),
        ("/v1/tenants?cursor=zz", "invalid-input"),
        ("/v1/tenants?q=%00", "invalid-input"),
        ("/v1/tenants/%00", "invalid-input"),
        ("/v1/events?cursor=x", "invalid-input"),
        ("/v1/rollouts/abc", "invalid-input"),
        ("/v1/nothing-here", "not-found"),
    ] {
        f.call("GET", path, admin, None)
            .await
            .problem(if kind == "not-found" { 404 } else { 400 }, kind);
    }
    let h = [("authorization", format!("Bearer {}", f.admin))];
    let auth: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = crate::common::request(f.addr, "POST", "/v1/tenants", &auth, b"{\"key\":\"x\"}").await;
    r.problem(415, "unsupported-media-type");
    f.call(
        "POST",
        "/v1/tenants",
        admin,
        Some(serde_json::json!({"key": "x", "extra": 1})),
    )
    .await
    .problem(400, "invalid-input");
    f.call(
        "POST",
        "/v1/tenants",
        admin,
        Some(serde_json::json!({"key": ""})),
    )
    .await
    .problem(400, "invalid-input");
    f.call("PUT", "/v1/tenants", admin, None)
        .await
        .problem(405, "method-not-allowed");
    let big = serde_json::json!({"key": "k".repeat(70_000)});
    f.call("POST", "/v1/tenants", admin, Some(big))
        .await
        .problem(413, "payload-too-large");

    // 10,000 more tenants (catalog rows): every one seen exactly once, in key order.
    pgfleet_testkit::insert_catalog_tenants(&f.control.catalog(), "main", "bulk-", 10_000, 0).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = f
            .call(
                "GET",
                &format!("/v1/tenants?limit=1000&cursor={cursor}"),
                Some(&f.read),
                None,
            )
            .await
            .json();
        pages += 1;
        for t in page["items"].as_array().unwrap() {
            seen.push(t["key"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10_002);
    assert_eq!(pages, 11);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "keys in order, none twice");
    // Filters: 1 in 5 of the made-up tenants failed.
    let failed = f
        .call(
            "GET",
            "/v1/tenants?state=failed&limit=1000&q=bulk-",
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert_eq!(failed["items"].as_array().unwrap().len(), 1000);
    assert!(
        failed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "failed")
    );
    let next = failed["next_cursor"].as_str().unwrap();
    let rest = f
        .call(
            "GET",
            &format!("/v1/tenants?state=failed&limit=1000&q=bulk-&cursor={next}"),
            Some(&f.read),
            None,
        )
        .await
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1000);
    assert!(rest["next_cursor"].is_null());
    f.stop().await;
}

#[test]
fn the_openapi_document_lists_every_operation_with_its_problems() {
    let doc = pgfleet_server::api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for e in endpoints() {
        let op = &paths[&format!("/v1{}", e.path)][e.method];
        assert_eq!(op["operationId"], e.id, "{e:?}");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.contains_key("401") && responses.contains_key("403"),
            "{e:?}"
        );
        for status in responses.keys() {
            let s: u16 = status.parse().unwrap();
            let ct = if s >= 400 {
                "application/problem+json"
            } else if e.ok.iter().any(|(_, sch, _)| sch.is_none()) {
                "text/event-stream"
            } else {
                "application/json"
            };
            assert!(
                responses[status]["content"][ct].is_object(),
                "{e:?} {status}"
            );
        }
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for name in text.split("#/components/schemas/").skip(1) {
        let name = name.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

/// schemathesis (PyPI, pinned by `scripts/schemathesis.sh`) fuzzes every operation of the
/// document at `/v1/openapi.json` against the live server with the admin token (the event stream
/// left out): no answer may be a 5xx, and every answer must match the document (status, content
/// type, body schema, headers). Its report goes to `target/schemathesis/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let f = Fleet::start().await;
    let root = crate::common::repo_root();
    let work = root.join("target/schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/schemathesis.sh"))
        .args([
            "run",
            &format!("http://{}/v1/openapi.json", f.addr),
            "--header",
            &format!("Authorization: Bearer {}", f.admin),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--exclude-path-regex",
            "/rollouts/[^/]+/events$",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "20261204",
            "--request-timeout",
            "30",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-junit-path",
            "junit.xml",
            "--no-color",
        ])
        .current_dir(&work)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", work.join("hypothesis"))
        .output()
        .expect("running scripts/schemathesis.sh");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The token never reaches the report schemathesis prints.
    assert!(
        !text.contains(&f.admin) || !out.status.success(),
        "the token in the output"
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
    eprintln!("{text}");
    f.stop().await;
}
