//! The OpenAPI document served at `/v1/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the shared model types.

use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Kith API", description = "News feed and chat. IDs are decimal strings; errors are {\"error\": {\"code\", \"message\"}}."),
    paths(
        crate::auth::routes::register,
        crate::auth::routes::login,
        crate::auth::routes::logout,
        crate::users::routes::me,
        crate::users::routes::profile,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
    ),
    components(schemas(
        app::model::User,
        app::model::Profile,
        app::model::AuthResponse,
        app::model::ErrorBody,
        app::model::ErrorDetail,
        app::model::ErrorCode,
        crate::auth::routes::RegisterRequest,
        crate::auth::routes::LoginRequest,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
