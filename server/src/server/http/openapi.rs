//! The OpenAPI 3.1 document of the HTTPS API, made from the route table: each route's request
//! and answer types (from `tessera_proto::admin`) give its schemas.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, RefOr, Required, Type,
};

use super::problem::Problem;
use super::routes::{routes, Input, Output, Route, Verb};
use tessera_proto::wire::kind;
use utoipa::ToSchema;

fn method(v: Verb) -> HttpMethod {
    match v {
        Verb::Get => HttpMethod::Get,
        Verb::Post => HttpMethod::Post,
    }
}

/// An error answer: RFC 9457 problem details with the stable error code.
fn problem(status: u16) -> ResponseBuilder {
    let why = match status {
        400 => "The body or query string is not what the request takes (error 1)",
        401 => "No admin token, or one that is unknown, wrong or revoked",
        403 => "The token's role may not make this request, or a console request came without its CSRF token",
        404 => "No such PT, operation, registration, token or key epoch",
        409 => "The request conflicts with the current state (an operation no longer pending, a registration cap reached, too many pending, a device id in use)",
        408 => "The body did not arrive within the server's body timeout (30 s by default)",
        413 => "The body is larger than 64 KiB",
        415 => "The body is not `application/json`",
        422 => "An argument breaks a rule the server applies (error 5 and its field), or a token or code that does not verify",
        429 => "The token's or the address's rate limit",
        503 => "This node is behind the store's change feed and cannot answer now",
        _ => "An internal error; nothing was changed",
    };
    ResponseBuilder::new().description(why).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// The error statuses a route can answer: every route a malformed request's (400: a query
/// string where none is taken, too), the token's (401, 403, 429) and the server's (500, 503); a
/// route with arguments 422; with a body 408, 413 and 415; with an id 404; a state change 409.
fn errors(r: &Route) -> Vec<u16> {
    let mut out = vec![400, 401, 403, 429, 500, 503];
    if !matches!(r.input, Input::Nothing) {
        out.push(422);
    }
    if matches!(r.input, Input::Body(_)) {
        out.extend([408, 413, 415]);
    }
    let names_a_thing = matches!(r.input, Input::PathParam(..))
        || matches!(
            r.kind,
            kind::PT_REVOKE
                | kind::OP_APPROVE
                | kind::OP_REJECT
                | kind::DEVICE_REVOKE
                | kind::KEYS_RETIRE
                | kind::TOKEN_REVOKE
        );
    if names_a_thing {
        out.push(404);
    }
    if r.method == Verb::Post && r.kind != kind::INTROSPECT {
        out.push(409);
    }
    out.sort_unstable();
    out
}

/// The document.
pub(crate) fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut schemas = Vec::new();
    for r in routes() {
        (r.schemas)(&mut schemas);
        let mut op = OperationBuilder::new()
            .operation_id(Some(r.operation_id))
            .summary(Some(r.summary))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        match r.input {
            Input::Nothing => {}
            Input::Query { params, .. } => {
                for p in params() {
                    op = op.parameter(p);
                }
            }
            Input::PathParam(name, request) => {
                // The request type's field of that name: its pattern is the parameter's.
                let field = match request() {
                    RefOr::T(Schema::Object(o)) => o.properties.get(name).cloned(),
                    _ => None,
                };
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(field.unwrap_or_else(|| {
                            ObjectBuilder::new().schema_type(Type::String).into()
                        }))),
                );
            }
            Input::Body(schema) => {
                // A request without arguments may come without a body (`{}` is the same).
                let required = if schema() == "NoArgs" {
                    Required::False
                } else {
                    Required::True
                };
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(schema())))
                                .build(),
                        )
                        .required(Some(required))
                        .build(),
                ));
            }
        }
        let ok = match r.output {
            Output::Tsv => ResponseBuilder::new()
                .description("The batch's `pt_id<TAB>token` lines, one PT a line, streamed (a body that ends in an error means nothing was stored)")
                .content(
                    "text/tab-separated-values",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                ),
            Output::Json(schema) => ResponseBuilder::new()
                .description("The answer (the same as on the QUIC admin endpoint)")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema())))
                        .build(),
                ),
        };
        let mut responses = ResponsesBuilder::new().response("200", ok);
        for status in errors(&r) {
            responses = responses.response(status.to_string(), problem(status));
        }
        op = op.responses(responses.build());
        paths = paths.path(r.path, PathItem::new(method(r.method), op.build()));
    }
    paths = paths.path(
        "/api/v1/events",
        PathItem::new(
            HttpMethod::Get,
            OperationBuilder::new()
                .operation_id(Some("events"))
                .summary(Some(
                    "Live updates (technician): an event `change` at once, then after every \
                     operation change and revocation",
                ))
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                .responses(
                    [401, 403, 429, 500, 503]
                        .into_iter()
                        .fold(ResponsesBuilder::new(), |b, status| {
                            b.response(status.to_string(), problem(status))
                        })
                        .response(
                            "200",
                            ResponseBuilder::new()
                                .description("Server-Sent Events")
                                .content(
                                    "text/event-stream",
                                    ContentBuilder::new()
                                        .schema(Some(
                                            ObjectBuilder::new()
                                                .schema_type(Type::Object)
                                                .description(Some(
                                                    "Each event: `change`, its data a counter",
                                                ))
                                                .property(
                                                    "event",
                                                    ObjectBuilder::new()
                                                        .schema_type(Type::String)
                                                        .enum_values(Some(["change"])),
                                                )
                                                .property(
                                                    "data",
                                                    ObjectBuilder::new()
                                                        .schema_type(Type::String)
                                                        .pattern(Some("^[0-9]+$")),
                                                )
                                                .required("event")
                                                .required("data"),
                                        ))
                                        .build(),
                                ),
                        )
                        .build(),
                )
                .build(),
        ),
    );
    let components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    // The routes' requests, answers and the records in them, and the errors.
    Problem::schemas(&mut schemas);
    let components = components
        .schema_from::<Problem>()
        .schemas_from_iter(schemas);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Tessera admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every admin request of the QUIC admin endpoint, over HTTPS, with the same \
                     admin tokens (Authorization: Bearer tsat_…), roles, checks and error codes.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

/// The document as served: [`document`], with the rules that join fields, which the types'
/// derives cannot state (JSON Schema `if`/`then` and `anyOf`).
pub(crate) fn document_json() -> String {
    let mut v = match serde_json::to_value(document()) {
        Ok(v) => v,
        Err(_) => return "{}".to_owned(),
    };
    let schemas = &mut v["components"]["schemas"];
    // A fleet PT needs its cap; the rule policy needs its rule; a PT that approves by itself
    // needs device-chosen ids. Only a batch takes a count, and needs one.
    let mut batch = schemas["PtArgs"].clone();
    if let Some(props) = schemas["PtArgs"]["properties"].as_object_mut() {
        props.remove("count");
    }
    batch["description"] = "The arguments of a PT batch: a PT's, and how many.".into();
    batch["properties"]["count"]["type"] = "integer".into();
    match batch["required"].as_array_mut() {
        Some(r) => r.push("count".into()),
        None => batch["required"] = serde_json::json!(["count"]),
    }
    schemas["PtArgs"]["allOf"] = serde_json::json!([
        {
            "if": { "properties": { "kind": { "const": "fleet" } }, "required": ["kind"] },
            "then": {
                "properties": { "max_registrations": { "type": "integer" } },
                "required": ["max_registrations"]
            }
        },
        {
            "if": { "properties": { "approval": { "const": "rule" } }, "required": ["approval"] },
            "then": { "properties": { "rule": { "type": "string" } }, "required": ["rule"] }
        },
        {
            "if": {
                "properties": { "approval": { "enum": ["automatic", "rule"] } },
                "required": ["approval"]
            },
            "then": { "properties": { "device_id_policy": { "not": { "const": "technician" } } } }
        }
    ]);
    batch["allOf"] = schemas["PtArgs"]["allOf"].clone();
    schemas["PtBatchArgs"] = batch;
    // DEVICE_REVOKE names a registration or a device id.
    schemas["DeviceRevokeArgs"]["anyOf"] = serde_json::json!([
        {
            "properties": { "registration_id": { "type": "integer" } },
            "required": ["registration_id"]
        },
        { "properties": { "device_id": { "type": "string" } }, "required": ["device_id"] }
    ]);
    v["paths"]["/api/v1/pts/batch"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"] = serde_json::json!({ "$ref": "#/components/schemas/PtBatchArgs" });
    v.to_string()
}
