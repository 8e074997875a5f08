//! The HTTPS admin API over real TLS (HTTP/2 and HTTP/1.1): every route, both roles, bad input
//! answered with problem details and nothing changed, tokens refused with 401, and the OpenAPI
//! document against the running server's routes.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tessera_proto::wire::code;

use crate::common::{begin, wait, TestServer};

/// An HTTPS client that trusts the server's CA (and nothing else).
fn client(ts: &TestServer, http1: bool) -> Client {
    let b = client_builder(ts);
    if http1 { b.http1_only() } else { b }.build().unwrap()
}

/// What [`client`] is built from (the hostile-client suite adds a source address).
pub(crate) fn client_builder(ts: &TestServer) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ts.server.as_ref().unwrap().ca_cert_path()).unwrap();
    Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(20))
}

/// An API client that checks every JSON answer against the OpenAPI document the server serves.
struct Api {
    http: Client,
    base: String,
    contract: Contract,
}

impl Api {
    async fn new(ts: &TestServer) -> Self {
        Self::with(ts, false).await
    }

    async fn with(ts: &TestServer, http1: bool) -> Self {
        let addr = ts.server.as_ref().unwrap().console_addr().expect("console");
        let http = client(ts, http1);
        let base = format!("https://localhost:{}", addr.port());
        let doc: Value = http
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .expect("the OpenAPI document")
            .json()
            .await
            .expect("the OpenAPI document is JSON");
        Self {
            http,
            base,
            contract: Contract::new(doc),
        }
    }

    /// Send a request; answers the status and the JSON body (a problem document on errors).
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method_s = method.as_str().to_ascii_lowercase();
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("HTTPS request");
        let status = resp.status();
        let media = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let problem = media.starts_with("application/problem+json");
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        self.contract.check(&method_s, status, path, &media, &v);
        if !status.is_success() {
            assert!(
                problem,
                "{path}: an error without a problem document: {status} {v}"
            );
            assert_eq!(v["status"], status.as_u16(), "{v}");
        }
        (status, v)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }
}

/// The OpenAPI document as a contract: each JSON answer must match the schema the document
/// gives for its route and status (the problem schema for errors). The document's object
/// schemas are made closed first (`unevaluatedProperties: false`), so that a field the server
/// sends and the document does not name fails too.
struct Contract {
    doc: Value,
    components: Value,
}

impl Contract {
    fn new(doc: Value) -> Self {
        let mut components = doc["components"].clone();
        // Schemas that are parts of an `allOf` stay open: the whole is closed instead.
        let mut parts = Vec::new();
        collect_all_of_refs(&components, &mut parts);
        for (name, schema) in components["schemas"].as_object_mut().unwrap() {
            close(schema, parts.contains(name));
        }
        Self { doc, components }
    }

    /// The response schema the document gives for `method path` answering `status`, or the
    /// problem schema for an error on a route it does not name.
    fn schema_for(&self, method: &str, path: &str, status: StatusCode) -> Value {
        let path = path.split('?').next().unwrap();
        let op = self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(template, _)| matches_template(template, path))
            .find_map(|(_, item)| item.get(method));
        let problem = json!({ "$ref": "#/components/schemas/Problem" });
        match op {
            Some(op) if status.is_success() => {
                let content = &op["responses"]["200"]["content"];
                assert!(
                    content.get("application/json").is_some(),
                    "{method} {path}: JSON answered where the document says {content}"
                );
                content["application/json"]["schema"].clone()
            }
            // A method a path does not take (GET on /api/v1/devices/block, which the template
            // /api/v1/devices/{device_id} also matches) is about the path, not an operation.
            Some(_) if status == StatusCode::METHOD_NOT_ALLOWED => problem,
            Some(op) => {
                // Every error a test meets is one the document lists for the operation.
                let documented = &op["responses"][status.as_u16().to_string()];
                assert!(
                    documented.is_object(),
                    "{method} {path} answered {status}, which the document does not list"
                );
                documented["content"]["application/problem+json"]["schema"].clone()
            }
            None => {
                assert!(
                    !status.is_success(),
                    "{method} {path} answered {status} but is not in the document"
                );
                problem
            }
        }
    }

    /// Check one answer (JSON answers only: a file or an event stream is checked where it is
    /// read).
    fn check(&self, method: &str, status: StatusCode, path: &str, media: &str, v: &Value) {
        if !(media.starts_with("application/json") || media.starts_with("application/problem+json"))
        {
            return;
        }
        let schema = self.schema_for(method, path, status);
        if let Err(e) = self.validate(&schema, v) {
            panic!("{method} {path} ({status}): the answer does not match the OpenAPI document: {e}\n{v:#}");
        }
    }

    /// Validate `v` against `schema`, which may refer to the document's components.
    fn validate(&self, schema: &Value, v: &Value) -> Result<(), String> {
        let mut root = schema.clone();
        root["components"] = self.components.clone();
        let validator = jsonschema::draft202012::new(&root).map_err(|e| e.to_string())?;
        let errors: Vec<String> = validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Whether `path` is an instance of the OpenAPI path `template` (`{name}` matches a segment).
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// The component names referred to directly from an `allOf`.
fn collect_all_of_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(parts)) = m.get("allOf") {
                for p in parts {
                    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
                        out.push(r.rsplit('/').next().unwrap().to_owned());
                    }
                }
            }
            m.values().for_each(|v| collect_all_of_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_all_of_refs(v, out)),
        _ => {}
    }
}

/// Close every object schema in `v` that names its properties (or is an `allOf` of parts)
/// and does not say what else it takes; the parts of an `allOf` stay open. `open` leaves `v`
/// itself open.
fn close(v: &mut Value, open: bool) {
    match v {
        Value::Object(m) => {
            let names_properties = m.contains_key("properties") || m.contains_key("allOf");
            if names_properties
                && !open
                && !m.contains_key("additionalProperties")
                && !m.contains_key("unevaluatedProperties")
            {
                m.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
            for (k, child) in m.iter_mut() {
                match (k.as_str(), child) {
                    ("allOf", Value::Array(parts)) => parts.iter_mut().for_each(|p| close(p, true)),
                    (_, child) => close(child, false),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| close(v, false)),
        _ => {}
    }
}

/// An admin token valid in form that no server issued.
pub(crate) fn unknown_admin_token() -> String {
    let mut payload =
        vec![9u8; tessera_proto::token::PT_BINARY_LEN - tessera_proto::codec::CHECKSUM_LEN];
    payload[0] = tessera_proto::token::PT_VERSION;
    tessera_proto::codec::encode(tessera_proto::token::ADMIN_TOKEN_PREFIX, &payload)
}

async fn token_of_role(ts: &TestServer, api: &Api, role: &str) -> (String, String) {
    let admin = ts.admin_token.expose();
    let (s, v) = api
        .post(
            "/api/v1/tokens",
            admin,
            json!({ "name": format!("{role}-1"), "role": role }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (
        v["admin_token"]["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// A whole provisioning through the API, with every route along the way: create a PT (code
/// policy), the device begins, the technician lists and approves with the device's code (a
/// wrong one first), the device gets its RT; then devices, revocation, block, audit, leaks,
/// keys, tokens, status and a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_for_its_role() {
    let ts = TestServer::start().await;
    for http1 in [false, true] {
        let api = Api::with(&ts, http1).await;
        let admin = ts.admin_token.expose();
        let (_, tech) = token_of_role(&ts, &api, "technician").await;

        let (s, v) = api
            .post(
                "/api/v1/pts",
                admin,
                json!({ "label": "line 3", "kind": "fleet", "max_registrations": 5,
                        "approval": "manual_with_code" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let pt_id = v["pt"]["id"].as_str().unwrap().to_owned();
        let pt = v["token"].as_str().unwrap().to_owned();
        let (s, v) = api.get("/api/v1/pts?limit=10", admin).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["pts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == pt_id));
        let (s, v) = api.get(&format!("/api/v1/pts/{pt_id}"), admin).await;
        assert_eq!(
            (s, v["pt"]["label"].clone()),
            (StatusCode::OK, json!("line 3"))
        );

        // The device begins; the technician sees its operation and approves with its code.
        let t = ts.device_transport();
        let device = format!("pump-{http1}");
        let op = begin(&t, &pt, Some(&device), &device).await.unwrap();
        let (s, v) = api.get("/api/v1/operations?state=pending", &tech).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // With how full each operation's PT is (the console warns near the cap).
        assert_eq!(v["pts"][&pt_id]["max_registrations"], 5, "{v}");
        assert_eq!(v["pts"][&pt_id]["registrations_created"], 0, "{v}");
        assert!(v["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == op.operation_id.as_str()));
        let (s, _) = api
            .get(&format!("/api/v1/operations/{}", op.operation_id), &tech)
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = api
            .post(
                "/api/v1/operations/approve",
                &tech,
                json!({ "id": op.operation_id, "code": "AAAA-AAAA" }),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["code"], code::WRONG_CODE);
        assert!(v["remaining_attempts"].as_u64().is_some(), "{v}");
        let code_text = op.verification_code.clone().expect("a code");
        let (s, v) = api
            .post(
                "/api/v1/operations/approve",
                &tech,
                json!({ "id": op.operation_id, "code": code_text }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let got = wait(&t, &op, 5_000).await.unwrap();
        let reg = got.registration.expect("the device has its RT");

        // Devices: list, show, revoke (the RT is refused from then on), block, unblock.
        let (s, v) = api
            .get(&format!("/api/v1/devices?device_id={device}"), &tech)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["registrations"].as_array().unwrap().len(), 1);
        let (s, v) = api.get(&format!("/api/v1/devices/{device}"), &tech).await;
        assert_eq!(
            (s, v["blocked"].clone()),
            (StatusCode::OK, Value::Null),
            "not blocked"
        );
        let (s, v) = api
            .post(
                "/api/v1/devices/revoke",
                admin,
                json!({ "registration_id": reg.registration_id, "reason": "test" }),
            )
            .await;
        assert_eq!(
            (s, v["registrations_revoked"].clone()),
            (StatusCode::OK, json!(1))
        );
        let refused = crate::common::refresh(&t, &reg.rt).await.unwrap_err();
        assert_eq!(crate::common::code_of(&refused), code::REVOKED);
        let (s, _) = api
            .post(
                "/api/v1/devices/block",
                admin,
                json!({ "device_id": device, "reason": "lost" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = api
            .post(
                "/api/v1/devices/unblock",
                admin,
                json!({ "device_id": device }),
            )
            .await;
        assert_eq!((s, v["was_blocked"].clone()), (StatusCode::OK, json!(true)));

        // Reject, PT revoke, audit, leaks, status.
        let op2 = begin(&t, &pt, Some("other"), &format!("other-{http1}"))
            .await
            .unwrap();
        let (s, _) = api
            .post(
                "/api/v1/operations/reject",
                &tech,
                json!({ "id": op2.operation_id, "reason": "not ours" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = api
            .post(
                "/api/v1/pts/revoke",
                admin,
                json!({ "id": pt_id, "reason": "done" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = api.get("/api/v1/audit?newest=true&limit=50", admin).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["events"].as_array().unwrap().len() >= 5, "{v}");
        let (s, _) = api.get("/api/v1/leaks", admin).await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = api.get("/api/v1/status", &tech).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["engine"].is_object());

        // Keys and tokens.
        let (s, v) = api.post("/api/v1/keys/rotate", admin, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = api.get("/api/v1/keys", admin).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["epochs"].as_array().unwrap().len() >= 2);
        let (s, v) = api
            .post("/api/v1/keys/retire", admin, json!({ "epoch": 999 }))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (id, svc) = token_of_role(&ts, &api, "service").await;
        let (s, v) = api.get("/api/v1/tokens", admin).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["admin_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str()));

        // A service introspects and follows revocations, and does nothing else.
        let (s, v) = api
            .post("/api/v1/introspect", &svc, json!({ "rt": reg.rt }))
            .await;
        assert_eq!(
            (s, v["code"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!(code::REVOKED))
        );
        let (s, v) = api.get("/api/v1/revocations", &svc).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["cursor"].is_u64());
        let (s, _) = api.get("/api/v1/status", &svc).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = api
            .post("/api/v1/tokens/revoke", admin, json!({ "id": id }))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = api.get("/api/v1/revocations", &svc).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "a revoked token: {v}");

        // A batch: the file of lines, each PT usable.
        let (s, _) = api
            .post(
                "/api/v1/pts/batch",
                admin,
                json!({ "label": "factory run", "approval": "automatic", "count": 3 }),
            )
            .await;
        // The body is a file, not JSON: ask again and read it as text.
        assert_eq!(s, StatusCode::OK);
        let text = api
            .http
            .post(format!("{}/api/v1/pts/batch", api.base))
            .bearer_auth(admin)
            .json(&json!({ "label": "factory run 2", "approval": "automatic", "count": 2 }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // Over HTTPS a batch is at most 10,000 PTs; more is refused before anything is made.
        let (s, v) = api
            .post(
                "/api/v1/pts/batch",
                admin,
                json!({ "label": "too many", "count": 10_001 }),
            )
            .await;
        assert_eq!(
            (s, v["code"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!(5))
        );
        let first_pt = lines[0].split('\t').nth(1).unwrap();
        let op3 = begin(
            &t,
            first_pt,
            Some(&format!("batch-{http1}")),
            &format!("b-{http1}"),
        )
        .await
        .unwrap();
        assert!(wait(&t, &op3, 5_000).await.unwrap().registration.is_some());
        t.close().await;
    }
    ts.shutdown().await;
}

/// A technician cannot reach what needs an admin token, and a missing, unknown or malformed
/// token gets 401 before anything else is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_tokens_are_enforced() {
    // Twelve failed authentications from this address: more than the default throttle lets
    // through (`hostile.rs` tests the throttle).
    let ts = TestServer::start_with(|c| c.auth_failure_burst = 100).await;
    let api = Api::new(&ts).await;
    let (_, tech) = token_of_role(&ts, &api, "technician").await;
    let unknown = unknown_admin_token();
    for (method, path, body) in [
        (Method::POST, "/api/v1/pts", Some(json!({ "label": "x" }))),
        (Method::GET, "/api/v1/pts", None),
        (
            Method::POST,
            "/api/v1/devices/revoke",
            Some(json!({ "device_id": "d" })),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "n", "role": "admin" })),
        ),
        (Method::POST, "/api/v1/keys/rotate", Some(json!({}))),
        (Method::GET, "/api/v1/audit", None),
    ] {
        let (s, v) = api
            .send(method.clone(), path, Some(&tech), body.clone())
            .await;
        assert_eq!(
            (s, v["code"].clone()),
            (StatusCode::FORBIDDEN, json!(code::FORBIDDEN)),
            "{path}"
        );
        // No token, a token that is not one, one the server never issued: 401, even with a
        // body that is itself bad.
        for token in [None, Some("hunter2"), Some(unknown.as_str())] {
            let (s, v) = api
                .send(method.clone(), path, token, Some(json!({ "bogus": 1 })))
                .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} {token:?}: {v}");
        }
    }
    let (s, v) = api.get("/api/v1/pts", "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    ts.shutdown().await;
}

/// Bad input gets a problem document and changes nothing: malformed JSON, a body that is not
/// an object, unknown fields, wrong types, an oversized body, a wrong content type, a bad
/// query string, an unknown route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let ts = TestServer::start().await;
    let api = Api::new(&ts).await;
    let admin = ts.admin_token.expose();
    let url = format!("{}/api/v1/pts", api.base);
    let raw = |body: Vec<u8>, ctype: &'static str| {
        api.http
            .post(&url)
            .bearer_auth(admin)
            .header("content-type", ctype)
            .body(body)
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode)> = vec![
        (
            b"{\"label\": ".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"[\"label\"]".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"{\"label\":\"x\",\"bogus\":1}".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"{\"label\":7}".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"{\"label\":\"x\",\"kind\":\"galaxy\"}".to_vec(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{{\"label\":\"{}\"}}", "x".repeat(70_000)).into_bytes(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            b"{\"label\":\"x\"}".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (body, ctype, want) in cases {
        let r = raw(body.clone(), ctype).send().await.unwrap();
        assert_eq!(
            r.status(),
            want,
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let v: Value = r.json().await.unwrap();
        assert!(
            v["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:tessera:problem:"),
            "{v}"
        );
        assert!(v["code"].is_u64() && v["detail"].is_string(), "{v}");
    }
    for (path, want) in [
        ("/api/v1/pts?limit=lots", StatusCode::BAD_REQUEST),
        ("/api/v1/pts?surprise=1", StatusCode::BAD_REQUEST),
        ("/api/v1/status?x=1", StatusCode::BAD_REQUEST),
        ("/api/v1/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let (s, v) = api.get(path, admin).await;
        assert_eq!(s, want, "{path}: {v}");
    }
    // Nothing was created.
    let (_, v) = api.get("/api/v1/pts?include_revoked=true", admin).await;
    assert_eq!(v["pts"], json!([]), "{v}");
    ts.shutdown().await;
}

/// The OpenAPI document (3.1, generated from the code) names exactly the routes the server
/// answers: each documented operation is routed (401 without a token, never 404 or 405), and
/// the server routes nothing under /api/v1/ that the document leaves out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_running_server() {
    let ts = TestServer::start().await;
    let api = Api::new(&ts).await;
    let doc: Value = api
        .http
        .get(format!("{}/api/v1/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(op["security"].is_array(), "{method} {path}");
            let concrete = path.replace("{id}", "x").replace("{device_id}", "x");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (s, _) = api.send(m.clone(), &concrete, None, Some(json!({}))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
            // The other method on the same path is either documented or not routed.
            let other = if m == Method::GET { "post" } else { "get" };
            if item.get(other).is_none() {
                let om = Method::from_bytes(other.to_uppercase().as_bytes()).unwrap();
                let (s, _) = api.send(om, &concrete, None, None).await;
                assert!(
                    s == StatusCode::METHOD_NOT_ALLOWED || s == StatusCode::NOT_FOUND,
                    "{other} {path}: {s}"
                );
            }
        }
    }
    // Every admin request kind of the QUIC endpoint is in the HTTPS API, and the live events.
    assert_eq!(
        operations,
        26,
        "{}",
        serde_json::to_string_pretty(paths).unwrap()
    );
    for schema in ["PtArgs", "ApproveArgs", "Problem"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Every answer the tests get is checked against the document (Api::send); the check can
    // fail: a field the document does not name, a missing one, a wrong type, also inside a
    // record made of parts (allOf) and a tagged union (oneOf).
    let admin = ts.admin_token.expose();
    let c = &api.contract;
    let revoked = json!({ "$ref": "#/components/schemas/Revoked" });
    assert!(c
        .validate(&revoked, &json!({ "registrations_revoked": 1 }))
        .is_ok());
    for bad in [
        json!({ "registrations_revoked": 1, "extra": 1 }),
        json!({}),
        json!({ "registrations_revoked": "1" }),
    ] {
        assert!(c.validate(&revoked, &bad).is_err(), "{bad}");
    }
    let (s, keys) = api.get("/api/v1/keys", admin).await;
    assert_eq!(s, StatusCode::OK);
    let epochs = json!({ "$ref": "#/components/schemas/Epochs" });
    assert!(c.validate(&epochs, &keys).is_ok());
    let mut extra = keys.clone();
    extra["epochs"][0]["extra"] = json!(1);
    assert!(c.validate(&epochs, &extra).is_err());
    let mut missing = keys.clone();
    missing["epochs"][0]
        .as_object_mut()
        .unwrap()
        .remove("created_at");
    assert!(c.validate(&epochs, &missing).is_err());
    let policy = json!({ "$ref": "#/components/schemas/ApprovalPolicy" });
    let rule = json!({ "policy": "attribute_rule",
                       "conditions": [{ "equals": { "key": "k", "value": "v" } }] });
    assert!(c.validate(&policy, &rule).is_ok(), "{rule}");
    let mut bad_rule = rule.clone();
    bad_rule["extra"] = json!(1);
    assert!(c.validate(&policy, &bad_rule).is_err());
    assert!(c
        .validate(&policy, &json!({ "policy": "sometimes" }))
        .is_err());
    ts.shutdown().await;
}

/// Lists come in pages: `limit` at a time, newest first, `next` leading to the following page
/// until the last; every item once. A limit above 1,000 or a cursor that no page gave is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_in_pages_with_a_cursor() {
    let ts = TestServer::start().await;
    let api = Api::new(&ts).await;
    let admin = ts.admin_token.expose();
    let (_, pt) = ts
        .pt(json!({ "label": "pages", "kind": "fleet", "max_registrations": 100, "approval": "manual" }))
        .await;
    let t = ts.device_transport();
    let mut begun = Vec::new();
    for i in 0..25 {
        let op = begin(&t, &pt, Some(&format!("dev-{i}")), &format!("page-{i}"))
            .await
            .unwrap();
        begun.push(op.operation_id);
        // Most a millisecond apart; a few at the same time (ordered by id then).
        if i % 4 != 2 {
            ts.clock.advance(Duration::from_millis(1));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/api/v1/operations?state=pending&limit=10".to_owned();
    loop {
        let (s, v) = api.get(&path, admin).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = v["operations"].as_array().unwrap();
        sizes.push(page.len());
        seen.extend(page.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match v["next"].as_str() {
            Some(n) => path = format!("/api/v1/operations?state=pending&limit=10&before={n}"),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    let mut want = begun.clone();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want, "every operation once");
    // Newest first: the last begun comes first, the first begun last.
    assert_eq!(seen[0], begun[24]);
    assert_eq!(seen[24], begun[0]);

    // Registrations page by id.
    for op in &begun[..12] {
        let (s, v) = api
            .post("/api/v1/operations/approve", admin, json!({ "id": op }))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, v1) = api.get("/api/v1/devices?limit=5", admin).await;
    let n1 = v1["next"].as_u64().expect("a next page");
    let (_, v2) = api
        .get(&format!("/api/v1/devices?limit=5&before={n1}"), admin)
        .await;
    let n2 = v2["next"].as_u64().expect("a next page");
    let (_, v3) = api
        .get(&format!("/api/v1/devices?limit=5&before={n2}"), admin)
        .await;
    assert!(v3["next"].is_null());
    let ids: Vec<u64> = [&v1, &v2, &v3]
        .iter()
        .flat_map(|v| v["registrations"].as_array().unwrap().iter())
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=12).rev().collect::<Vec<u64>>());

    // PTs page the same way (the one made above, and 14 more).
    for i in 0..14 {
        ts.pt(json!({ "label": format!("pt-{i}") })).await;
        if i % 3 == 0 {
            ts.clock.advance(Duration::from_millis(1));
        }
    }
    let mut labels = Vec::new();
    let mut path = "/api/v1/pts?limit=4".to_owned();
    loop {
        let (s, v) = api.get(&path, admin).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        labels.extend(
            v["pts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["label"].as_str().unwrap().to_owned()),
        );
        match v["next"].as_str() {
            Some(n) => path = format!("/api/v1/pts?limit=4&before={n}"),
            None => break,
        }
    }
    assert_eq!(labels.len(), 15, "{labels:?}");
    assert_eq!(
        labels.last().map(String::as_str),
        Some("pages"),
        "oldest last"
    );
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), 15, "each PT once");

    for path in [
        "/api/v1/pts?limit=1001",
        "/api/v1/operations?limit=1001",
        "/api/v1/operations?before=yesterday",
        "/api/v1/devices?limit=5000",
    ] {
        let (s, v) = api.get(path, admin).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
    }
    t.close().await;
    ts.shutdown().await;
}

/// Live updates: an event at once, then one when an operation begins, one when it is approved,
/// and one when anything else is audited (a PT created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_operations_as_they_change() {
    let ts = TestServer::start().await;
    let api = Api::new(&ts).await;
    let (_, tech) = token_of_role(&ts, &api, "technician").await;
    let mut resp = api
        .http
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&tech)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // Read until an event named `change` has arrived (keep-alive comments may come between).
    async fn next_change(resp: &mut reqwest::Response, buf: &mut String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(i) = buf.find("event: change") {
                buf.drain(..i + "event: change".len());
                return;
            }
            let chunk = tokio::time::timeout_at(deadline, resp.chunk())
                .await
                .expect("an event within 5 s")
                .unwrap()
                .expect("the stream stays open");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let mut buf = String::new();
    next_change(&mut resp, &mut buf).await;
    let (_, pt) = ts.pt(crate::common::manual()).await;
    let t = ts.device_transport();
    let op = begin(&t, &pt, Some("sse-1"), "sse-1").await.unwrap();
    next_change(&mut resp, &mut buf).await;
    let (s, _) = api
        .post(
            "/api/v1/operations/approve",
            &tech,
            json!({ "id": op.operation_id }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    next_change(&mut resp, &mut buf).await;
    // Anything the audit log records, a PT's creation say, is one too (the audit page is live).
    ts.pt(json!({ "label": "audited" })).await;
    next_change(&mut resp, &mut buf).await;
    // A service token may not follow them.
    let (_, svc) = token_of_role(&ts, &api, "service").await;
    let (s, _) = api.get("/api/v1/events", &svc).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    t.close().await;
    ts.shutdown().await;
}

/// The live-update stream checks its token again: revoking the token ends the streams it holds
/// (the revocation is itself an event); a token holds at most 16 streams at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_when_its_token_is_revoked() {
    let ts = TestServer::start().await;
    let api = Api::new(&ts).await;
    let admin = ts.admin_token.expose();
    let (id, tech) = token_of_role(&ts, &api, "technician").await;
    let open = || async {
        api.http
            .get(format!("{}/api/v1/events", api.base))
            .bearer_auth(&tech)
            .send()
            .await
            .unwrap()
    };
    let mut streams = Vec::new();
    for _ in 0..16 {
        let r = open().await;
        assert_eq!(r.status(), StatusCode::OK);
        streams.push(r);
    }
    let refused = open().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Each stream has its first event; then the token is revoked.
    for r in &mut streams {
        let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("the first event")
            .unwrap()
            .expect("an event");
        assert!(String::from_utf8_lossy(&first).contains("event: change"));
    }
    let (s, _) = api
        .post("/api/v1/tokens/revoke", admin, json!({ "id": id }))
        .await;
    assert_eq!(s, StatusCode::OK);
    for r in &mut streams {
        // Whatever was in flight, then the end of the stream (not another event).
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match r.chunk().await {
                    Ok(Some(c)) => assert!(
                        !String::from_utf8_lossy(&c).contains("event: change"),
                        "an event after the revocation"
                    ),
                    _ => return,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream outlived its token");
    }
    // Its slots are free again, for a token that works.
    drop(streams);
    let (_, other) = token_of_role(&ts, &api, "technician").await;
    let r = api
        .http
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ts.shutdown().await;
}
