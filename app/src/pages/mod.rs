//! One module per route.

pub mod auth;
pub mod chat;
pub mod home;
pub mod not_found;
pub mod notifications;
pub mod people;
pub mod profile;
pub mod settings;
