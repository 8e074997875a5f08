//! The OpenAPI 3.1 document of the HTTPS API, made from the route table: each route's request
//! and answer types (from `tessera_proto::admin`) give its schemas.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, Required, Type,
};

use super::problem::Problem;
use super::routes::{routes, Input, Output, Verb};
use utoipa::ToSchema;

fn method(v: Verb) -> HttpMethod {
    match v {
        Verb::Get => HttpMethod::Get,
        Verb::Post => HttpMethod::Post,
    }
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
            Input::PathParam(name) => {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            Input::Body(schema) => {
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(schema())))
                                .build(),
                        )
                        .required(Some(Required::True))
                        .build(),
                ));
            }
        }
        let ok = match r.output {
            Output::Tsv => ResponseBuilder::new()
                .description("The batch's `pt_id<TAB>token` lines, one PT a line")
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
        let problem = ResponseBuilder::new()
            .description("An error, as RFC 9457 problem details with the stable error code")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            );
        op = op.responses(
            ResponsesBuilder::new()
                .response("200", ok)
                .response("default", problem)
                .build(),
        );
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
                    ResponsesBuilder::new()
                        .response(
                            "200",
                            ResponseBuilder::new()
                                .description("Server-Sent Events")
                                .content(
                                    "text/event-stream",
                                    ContentBuilder::new()
                                        .schema(Some(
                                            ObjectBuilder::new().schema_type(Type::String),
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
