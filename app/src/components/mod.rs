//! Pieces shared by several pages.

pub mod avatar;
pub mod block;
pub mod csrf;
pub mod follow;
pub mod media;
pub mod nav;
pub mod time;
