//! A session's device label ("Firefox on Linux"), read from the User-Agent it signed in
//! with, for the owner's list of sessions. Best effort: anything unrecognised is shown as
//! sent (shortened), and no User-Agent at all as an API client.

/// Longest label kept from an unrecognised User-Agent, in characters.
const MAX_LABEL: usize = 80;

pub fn label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|ua| !ua.is_empty()) else {
        return "API client".to_string();
    };
    // Order matters: Edge and Opera say "Chrome", Chrome says "Safari".
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(token, _)| ua.contains(token))
    .map(|(_, name)| name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(token, _)| ua.contains(token))
    .map(|(_, name)| name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        _ => ua
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_LABEL)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn browsers_and_systems_are_named() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(label(Some(firefox)), "Firefox on Linux");
        let chrome_mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        assert_eq!(label(Some(chrome_mac)), "Chrome on macOS");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                    Gecko) Chrome/126.0 Safari/537.36 Edg/126.0";
        assert_eq!(label(Some(edge)), "Edge on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(label(Some(iphone)), "Safari on iOS");
    }

    #[test]
    fn other_clients_show_as_sent() {
        assert_eq!(label(None), "API client");
        assert_eq!(label(Some("  ")), "API client");
        assert_eq!(label(Some("curl/8.5.0")), "curl/8.5.0");
        assert_eq!(label(Some(&"x".repeat(500))).chars().count(), 80);
        assert_eq!(label(Some("bot\u{7}\nv1")), "botv1");
    }
}
