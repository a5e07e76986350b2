//! A generated avatar: the user's initials on a colour taken from their id, drawn here
//! (no image, no outside service). Decorative: the name it stands for is always beside it.

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

/// A hue (0..360) spread over ids, so neighbours in id order differ in colour.
pub fn hue(user: &User) -> u64 {
    // Fibonacci hashing: consecutive ids land far apart.
    let mixed = (user.id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) % 360
}

#[component]
pub fn Avatar(user: User, #[prop(optional)] large: bool) -> impl IntoView {
    let style = format!("background-color: hsl({} 45% 38%)", hue(&user));
    let class = if large {
        "avatar avatar-large"
    } else {
        "avatar"
    };
    view! { <span class=class style=style aria-hidden="true">{initials(&user)}</span> }
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
    fn hues_stay_in_range_and_differ_for_neighbours() {
        let hues: Vec<u64> = (1..=50).map(|id| hue(&user(id, "a", "A"))).collect();
        assert!(hues.iter().all(|h| *h < 360));
        assert!(hues.windows(2).all(|w| w[0] != w[1]));
    }
}
