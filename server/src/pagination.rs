//! `limit` and `cursor` query parameters of list endpoints (API.md "Pagination").
//!
//! Cursors are keyset positions (the last item's sort key), never offsets, so pages stay
//! stable while new items arrive.

use crate::error::AppError;
use serde::Deserialize;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// `?limit&cursor`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1..=100, default 20.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<usize, AppError> {
        match &self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(AppError::invalid_request(
                    "limit must be an integer from 1 to 100",
                )),
            },
        }
    }

    /// The cursor as an id (feeds and post lists).
    pub fn id_cursor(&self) -> Result<Option<i64>, AppError> {
        self.cursor
            .as_deref()
            .map(|c| c.parse::<i64>().ok().filter(|v| *v > 0))
            .map(|v| {
                v.ok_or_else(|| AppError::invalid_request("cursor is not one this server issued"))
            })
            .transpose()
    }

    /// The cursor as a `(time, id)` pair (follow lists, ordered by when the follow happened).
    pub fn time_id_cursor(&self) -> Result<Option<(i64, i64)>, AppError> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.split_once('.')
                    .and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)))
                    .ok_or_else(|| {
                        AppError::invalid_request("cursor is not one this server issued")
                    })
            })
            .transpose()
    }
}

/// A `(time, id)` cursor in its wire form.
pub fn time_id_cursor(time: i64, id: i64) -> String {
    format!("{time}.{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_string),
            cursor: cursor.map(str::to_string),
        }
    }

    #[test]
    fn limits_and_cursors_are_validated() {
        assert_eq!(q(None, None).limit().ok(), Some(20));
        assert_eq!(q(Some("100"), None).limit().ok(), Some(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(q(Some(bad), None).limit().is_err(), "{bad}");
        }
        assert_eq!(q(None, Some("42")).id_cursor().ok(), Some(Some(42)));
        assert!(q(None, Some("x")).id_cursor().is_err());
        assert_eq!(
            q(None, Some("5.7")).time_id_cursor().ok(),
            Some(Some((5, 7)))
        );
        assert!(q(None, Some("57")).time_id_cursor().is_err());
    }
}
