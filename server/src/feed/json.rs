//! Posts as API JSON, assembled from pieces cached already rendered.
//!
//! A feed page is the product's hottest read. Deserializing twenty cached posts and their
//! authors into `Post`s only to serialize them again was most of its cost, so the post
//! cache holds each post's `content` and `created_at` members rendered, the user cache
//! holds each `User` rendered, and a page is written by concatenation. Only the viewer's
//! own parts (`like_count`, `liked_by_me`) and the ids are written per read. Rust code that
//! wants a typed [`Post`] (the server-rendered UI) parses one back.

use crate::error::AppError;
use app::model::{Page, Post};
use axum::{
    http::header,
    response::{IntoResponse, Response},
};

/// One `Post` object of API.md, as JSON text.
#[derive(Debug, Clone)]
pub struct PostJson(Vec<u8>);

impl PostJson {
    /// `author` is a rendered `User`, `members` the post's rendered `content` and
    /// `created_at` members (without braces).
    pub fn render(id: i64, author: &[u8], members: &[u8], likes: i64, liked: bool) -> Self {
        let mut out = Vec::with_capacity(author.len() + members.len() + 96);
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        out.extend_from_slice(b"\",\"author\":");
        out.extend_from_slice(author);
        out.push(b',');
        out.extend_from_slice(members);
        out.extend_from_slice(b",\"like_count\":");
        out.extend_from_slice(itoa::Buffer::new().format(likes).as_bytes());
        out.extend_from_slice(if liked {
            b",\"liked_by_me\":true}"
        } else {
            b",\"liked_by_me\":false}"
        });
        Self(out)
    }

    pub fn to_post(&self) -> Result<Post, AppError> {
        serde_json::from_slice(&self.0)
            .map_err(|e| AppError::internal(format!("rendered post does not parse: {e}")))
    }
}

impl IntoResponse for PostJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// A `Page` of posts, as JSON text.
#[derive(Debug, Clone)]
pub struct PageJson {
    pub items: Vec<PostJson>,
    pub next_cursor: Option<String>,
}

impl PageJson {
    /// `{"items":[...],"next_cursor":...}`
    pub fn to_json(&self) -> Vec<u8> {
        let size: usize = self.items.iter().map(|p| p.0.len() + 1).sum();
        let mut out = Vec::with_capacity(size + 64);
        out.extend_from_slice(b"{\"items\":[");
        for (i, post) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&post.0);
        }
        out.extend_from_slice(b"],\"next_cursor\":");
        match &self.next_cursor {
            // Cursors are post ids: digits, nothing to escape.
            Some(cursor) => {
                out.push(b'"');
                out.extend_from_slice(cursor.as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out
    }

    pub fn to_page(&self) -> Result<Page<Post>, AppError> {
        Ok(Page {
            items: self
                .items
                .iter()
                .map(PostJson::to_post)
                .collect::<Result<_, _>>()?,
            next_cursor: self.next_cursor.clone(),
        })
    }
}

impl IntoResponse for PageJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.to_json()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::{Id, User};

    #[test]
    fn a_rendered_page_is_the_serialized_page() {
        let author = User {
            id: Id(7),
            username: "ann".into(),
            display_name: "Ann \"A\" <b>".into(),
            bio: String::new(),
            created_at: crate::storage::to_datetime(1_700_000_000_123),
        };
        let post = Post {
            id: Id(42),
            author: author.clone(),
            content: "line\nbreak, \"quotes\", \\ and ünïcode 🎉".into(),
            created_at: crate::storage::to_datetime(1_700_000_001_456),
            media: vec![app::model::Media {
                id: Id(9),
                url: "/media/a.jpg".into(),
                thumbnail_url: "/media/b.jpg".into(),
                width: 640,
                height: 480,
                content_type: "image/jpeg".into(),
                bytes: 12_345,
                alt: "a \"cat\"".into(),
            }],
            like_count: 3,
            liked_by_me: true,
        };
        let media = serde_json::to_string(&post.media).unwrap();
        let members =
            crate::feed::caches::render_members(&post.content, 1_700_000_001_456, Some(&media));
        let rendered =
            PostJson::render(42, &serde_json::to_vec(&author).unwrap(), &members, 3, true);
        let page = PageJson {
            items: vec![rendered.clone(), rendered],
            next_cursor: Some("42".into()),
        };
        let expected = Page {
            items: vec![post.clone(), post],
            next_cursor: Some("42".into()),
        };
        assert_eq!(page.to_json(), serde_json::to_vec(&expected).unwrap());
        assert_eq!(page.to_page().unwrap(), expected);
        let empty = PageJson {
            items: vec![],
            next_cursor: None,
        };
        assert_eq!(empty.to_json(), br#"{"items":[],"next_cursor":null}"#);
    }
}
