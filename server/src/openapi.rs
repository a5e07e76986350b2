//! The OpenAPI document served at `/v1/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the shared model types.

use utoipa::{
    openapi::{
        path::{Operation, ParameterIn},
        security::{Http, HttpAuthScheme, SecurityScheme},
        ContentBuilder, Ref, ResponseBuilder,
    },
    Modify, OpenApi,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Kith API", description = "News feed and chat. IDs are decimal strings; errors are {\"error\": {\"code\", \"message\"}}."),
    paths(
        crate::auth::routes::register,
        crate::auth::routes::login,
        crate::auth::routes::logout,
        crate::auth::routes::change_password,
        crate::auth::routes::list_sessions,
        crate::auth::routes::end_session,
        crate::users::routes::me,
        crate::users::routes::update_me,
        crate::users::routes::delete_me,
        crate::users::routes::profile,
        crate::feed::routes::publish,
        crate::feed::routes::read_feed,
        crate::feed::routes::get_post,
        crate::feed::routes::delete_post,
        crate::feed::routes::like,
        crate::feed::routes::unlike,
        crate::feed::routes::user_posts,
        crate::graph::routes::follow,
        crate::graph::routes::unfollow,
        crate::graph::routes::following,
        crate::graph::routes::followers,
        crate::graph::routes::friends,
        crate::graph::routes::block,
        crate::graph::routes::unblock,
        crate::graph::routes::blocks,
        crate::graph::routes::search,
        crate::chat::routes::open_dm,
        crate::chat::routes::create_group,
        crate::chat::routes::list_channels,
        crate::chat::routes::rename_group,
        crate::chat::routes::add_member,
        crate::chat::routes::remove_member,
        crate::chat::routes::history,
        crate::chat::routes::send,
        crate::chat::routes::edit_message,
        crate::chat::routes::delete_message,
        crate::chat::routes::sync,
        crate::chat::routes::typing,
        crate::chat::routes::read,
        crate::cluster::routes::servers,
        crate::presence::routes::presence,
        crate::notifications::routes::list,
        crate::notifications::routes::mark_read,
        crate::notifications::routes::unread,
        crate::media::routes::upload,
        crate::media::routes::file,
        crate::media::routes::describe,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
    ),
    components(schemas(
        app::model::User,
        app::model::ChatServer,
        app::model::ChatServers,
        app::model::Profile,
        app::model::AuthResponse,
        app::model::ErrorBody,
        app::model::ErrorDetail,
        app::model::ErrorCode,
        app::model::Post,
        app::model::Media,
        crate::media::routes::UploadForm,
        crate::media::routes::MediaUpdate,
        crate::feed::routes::NewPost,
        app::model::Channel,
        app::model::ChannelKind,
        app::model::ChannelSummary,
        app::model::Message,
        app::model::SyncResponse,
        crate::chat::routes::NewGroup,
        crate::chat::routes::GroupUpdate,
        crate::chat::routes::NewMember,
        crate::chat::routes::NewMessage,
        crate::chat::routes::MessageEdit,
        crate::chat::routes::ChannelList,
        crate::chat::routes::ReadReceipt,
        app::model::PresenceStatus,
        app::model::UserPresence,
        crate::presence::routes::PresenceList,
        app::model::Notification,
        app::model::NotificationKind,
        app::model::UnreadCount,
        crate::notifications::routes::MarkRead,
        crate::auth::routes::RegisterRequest,
        crate::auth::routes::LoginRequest,
        crate::auth::routes::PasswordChange,
        crate::users::routes::ProfileUpdate,
        crate::users::routes::AccountDeletion,
        app::model::Sessions,
        app::model::SessionInfo,
    )),
    modifiers(&BearerAuth, &CommonErrors),
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

/// The error answers any route may give besides those its handler names, added to every
/// `/v1` operation that can give them (each with the `ErrorBody` schema):
/// - 400 `invalid_request`: a malformed query, path, header or body, or a body that is not
///   `application/json`;
/// - 401 `unauthorized`: a missing, unknown or revoked token, on routes that read one;
/// - 404 `not_found`: no such user, post or channel named in the path;
/// - 413 `payload_too_large`: a body over the limit;
/// - 503 `unavailable`: the database or Redis out of reach (try again later).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_common_errors(operation);
            }
        }
    }
}

fn add_common_errors(operation: &mut Operation) {
    let reads_token = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let names_a_resource = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_body = operation.request_body.is_some();
    let errors = [
        (
            "400",
            "malformed request: query, path, header or body",
            true,
        ),
        ("401", "missing, unknown or revoked token", reads_token),
        ("404", "no such resource", names_a_resource),
        ("413", "body too large", has_body),
        ("503", "a backend is out of reach; try again later", true),
    ];
    for (status, description, applies) in errors {
        if applies && !operation.responses.responses.contains_key(status) {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            operation
                .responses
                .responses
                .insert(status.to_string(), response.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiDoc;
    use utoipa::OpenApi as _;

    #[test]
    fn every_v1_operation_documents_the_common_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for (method, op) in item.as_object().unwrap() {
                let has = |status: &str| op["responses"].get(status).is_some();
                let at = format!("{method} {path}");
                assert!(has("400") && has("503"), "{at}: 400 and 503");
                if op.get("security").is_some() {
                    assert!(has("401"), "{at} reads a token: 401");
                }
                if path.contains('{') {
                    assert!(has("404"), "{at} names a resource: 404");
                }
                if op.get("requestBody").is_some() {
                    assert!(has("413"), "{at} takes a body: 413");
                }
                checked += 1;
            }
        }
        assert!(checked > 30, "only {checked} operations");
    }
}
