//! A generated avatar: the user's initials on one of [`COLOURS`] colours, picked by their
//! id, drawn here (no image, no outside service; a class per colour, since the CSP allows
//! no inline style). Decorative: the name it stands for is always beside it.

use crate::model::User;
use leptos::prelude::*;

/// Up to two initials: the first letters of the display name's first two words, or of the
/// username when the display name has none.
pub fn initials(user: &User) -> String {
    let from = |text: &str| -> String {
        text.split_whitespace()
            .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
            .take(2)
            .flat_map(char::to_uppercase)
            .collect()
    };
    let own = from(&user.display_name);
    if own.is_empty() {
        from(&user.username)
    } else {
        own
    }
}

/// Avatar colours (`.avatar-0` … in the style sheet).
pub const COLOURS: u64 = 12;

/// The colour of a user's avatar (0..[`COLOURS`]), spread over ids.
pub fn colour(user: &User) -> u64 {
    // Fibonacci hashing: consecutive ids land far apart.
    let mixed = (user.id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) % COLOURS
}

#[component]
pub fn Avatar(user: User, #[prop(optional)] large: bool) -> impl IntoView {
    let size = if large { " avatar-large" } else { "" };
    let class = format!("avatar avatar-{}{size}", colour(&user));
    view! { <span class=class aria-hidden="true">{initials(&user)}</span> }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Id;

    fn user(id: i64, username: &str, display_name: &str) -> User {
        User {
            id: Id(id),
            username: username.into(),
            display_name: display_name.into(),
            bio: String::new(),
            created_at: chrono::DateTime::default(),
        }
    }

    #[test]
    fn initials_come_from_the_first_two_words() {
        assert_eq!(initials(&user(1, "ana", "Ana María López")), "AM");
        assert_eq!(initials(&user(1, "ana", "ana")), "A");
        assert_eq!(initials(&user(1, "ana", "élan vital")), "ÉV");
        assert_eq!(initials(&user(1, "bo_9", "  ")), "B");
        assert_eq!(initials(&user(1, "bo_9", "(the) \"best\"")), "TB");
    }

    #[test]
    fn colours_stay_in_range_and_cover_them_all() {
        let colours: Vec<u64> = (1..=200).map(|id| colour(&user(id, "a", "A"))).collect();
        assert!(colours.iter().all(|c| *c < COLOURS));
        assert!((0..COLOURS).all(|c| colours.contains(&c)));
    }
}
