//! Pieces shared by several pages.

pub mod csrf;
pub mod nav;
