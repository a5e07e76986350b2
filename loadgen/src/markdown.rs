//! Small formatting helpers shared by the reports of every scenario.

use crate::server::LogSummary;
use std::fmt::{Display, Write as _};

/// Distinct server log messages shown.
const LOG_LINES: usize = 8;

/// `100202` → `100,202`.
pub fn thousands(n: impl Display) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A target's verdict.
pub fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "no"
    }
}

/// What the server logged: the counts, then its most frequent distinct messages.
pub fn server_log(out: &mut String, log: &LogSummary) -> std::fmt::Result {
    writeln!(
        out,
        "\nServer log (RUST_LOG=warn): {} warnings, {} errors.",
        log.warnings, log.errors
    )?;
    for (message, count) in log.distinct.iter().take(LOG_LINES) {
        writeln!(out, "* {count} × `{message}`")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000_u64), "10,000");
        assert_eq!(thousands(100_202_usize), "100,202");
        assert_eq!(thousands(1_000_000_u32), "1,000,000");
    }

    #[test]
    fn verdicts() {
        assert_eq!((yes(true), yes(false)), ("yes", "no"));
    }
}
