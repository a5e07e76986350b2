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
        crate::graph::routes::search,
        crate::chat::routes::open_dm,
        crate::chat::routes::create_group,
        crate::chat::routes::list_channels,
        crate::chat::routes::add_member,
        crate::chat::routes::remove_member,
        crate::chat::routes::history,
        crate::chat::routes::send,
        crate::chat::routes::sync,
        crate::chat::routes::typing,
        crate::chat::routes::read,
        crate::cluster::routes::servers,
        crate::presence::routes::presence,
        crate::notifications::routes::list,
        crate::notifications::routes::mark_read,
        crate::notifications::routes::unread,
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
        crate::feed::routes::NewPost,
        app::model::Channel,
        app::model::ChannelKind,
        app::model::ChannelSummary,
        app::model::Message,
        app::model::SyncResponse,
        crate::chat::routes::NewGroup,
        crate::chat::routes::NewMember,
        crate::chat::routes::NewMessage,
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
