//! Recognises configuration keys whose values are secrets, so that they never reach logs,
//! error messages, table descriptions or progress records.

/// Substrings of a configuration key that mark its value as secret.
const SECRET_KEY_MARKERS: &[&str] = &[
    "password",
    "secret",
    "jaas",
    "ssl.key.pem",
    "ssl.keystore",
    "credential",
    "token",
    "sasl.oauthbearer.config",
];

/// What a secret value is shown as.
pub const REDACTED: &str = "********";

/// True when the value of `key` must not be shown to anyone.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_MARKERS.iter().any(|marker| key.contains(marker))
}

/// The value of `key` as it may be shown: itself, or [`REDACTED`] for a secret.
pub fn shown_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) { REDACTED } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised() {
        for key in [
            "kafka.sasl.password",
            "kafka.ssl.key.password",
            "kafka.sasl.oauthbearer.client.secret",
            "kafka.ssl.keystore.password",
            "kafka.sasl.jaas.config",
        ] {
            assert!(is_secret_key(key), "{key}");
            assert_eq!(shown_value(key, "hunter2"), REDACTED);
        }
        for key in [
            "kafka.bootstrap.servers",
            "kafka.sasl.username",
            "subscribe",
        ] {
            assert!(!is_secret_key(key), "{key}");
            assert_eq!(shown_value(key, "x"), "x");
        }
    }
}
