//! Account names that look alike. `alice`, `Alice`, `ａｌｉｃｅ` (full width) and `аlice` (with a
//! Cyrillic а) are different strings, so logins (which look names up exactly, in NFC) keep
//! them apart, but a person reading a log, an audit line or an admin screen cannot. A new
//! account whose skeleton equals an existing account's is therefore refused.
//!
//! The skeleton: compatibility normalisation (NFKC: full-width and other compatibility forms
//! become their plain letters), lower case, then the UTS #39 skeleton (Unicode's table of
//! confusable characters maps each one to a prototype: Cyrillic and Greek look-alikes of Latin
//! letters, `0` to `O`, `1` and `I` to `l`, `m` to `rn` ...). Lower case and the skeleton are
//! applied twice, because a prototype may be a capital (`O`) whose lower case has its own.

use unicode_normalization::UnicodeNormalization;

/// The key under which look-alike names meet. Not for display; stored per account.
pub fn skeleton(name: &str) -> String {
    let mut s: String = name.nfkc().collect::<String>();
    for _ in 0..2 {
        s = unicode_security::skeleton(&s.to_lowercase())
            .collect::<String>()
            .to_lowercase();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::skeleton;

    #[test]
    fn look_alikes_share_a_skeleton() {
        let alice = skeleton("alice");
        for v in [
            "Alice",
            "ALICE",
            "ａｌｉｃｅ",    // full width
            "\u{430}lice",   // Cyrillic а
            "\u{410}LICE",   // Cyrillic А
            "\u{3b1}lice",   // Greek α
            "al\u{456}ce",   // Cyrillic і
            "alic\u{435}",   // Cyrillic е
            "a\u{200b}lice", // zero-width space
        ] {
            assert_eq!(skeleton(v), alice, "{v:?}");
        }
        assert_eq!(skeleton("b0b"), skeleton("bob"));
        for other in ["alicia", "bob", "alice2", "al"] {
            assert_ne!(skeleton(other), alice, "{other}");
        }
        assert_ne!(skeleton("user1"), skeleton("user2"));
    }
}
