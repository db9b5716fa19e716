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
    "user.info",
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

/// `text` with the password of every `scheme://user:password@host` URL in it replaced by
/// [`REDACTED`].
pub fn redact_url_credentials(text: &str) -> String {
    static URL_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@']*):[^\s@']*@")
            .expect("the URL password pattern compiles")
    });
    URL_PASSWORD
        .replace_all(text, format!("${{1}}:{REDACTED}@"))
        .into_owned()
}

/// `sql` with the values of secret options (`'kafka.sasl.password' 'x'`) replaced by
/// [`REDACTED`], and passwords in URLs (a JDBC table's `LOCATION`) too, for the REPL's history
/// file.
pub fn redact_statement(sql: &str) -> String {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let Ok(tokens) = crate::statements::tokenize(sql) else {
        return sql.to_string();
    };
    let mut out = String::with_capacity(sql.len());
    let mut previous_key: Option<String> = None;
    for token in tokens {
        let token = token.token;
        match &token {
            Token::SingleQuotedString(value) | Token::DoubleQuotedString(value) => {
                if previous_key.as_deref().is_some_and(is_secret_key) {
                    out.push_str(&format!("'{REDACTED}'"));
                    previous_key = None;
                    continue;
                }
                previous_key = Some(value.clone());
                let redacted = redact_url_credentials(value);
                if &redacted != value {
                    out.push_str(&format!("'{redacted}'"));
                    continue;
                }
            }
            Token::Whitespace(_) => {}
            _ => previous_key = None,
        }
        out.push_str(&token.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_lose_their_secrets() {
        let sql = "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS (\n  'kafka.sasl.password' 'hunter2', 'subscribe' 't')";
        let redacted = redact_statement(sql);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(
            redacted.contains("'kafka.sasl.password' '********', 'subscribe' 't'"),
            "{redacted}"
        );
        assert_eq!(
            redact_statement("SELECT 'password', 'kept'"),
            "SELECT 'password', 'kept'"
        );
    }

    #[test]
    fn url_passwords_are_redacted() {
        let sql = "CREATE EXTERNAL TABLE t (a INT) STORED AS JDBC LOCATION 'postgres://app:hunter2@db:5432/shop'";
        let redacted = redact_statement(sql);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(
            redacted.contains("'postgres://app:********@db:5432/shop'"),
            "{redacted}"
        );
        assert_eq!(
            redact_url_credentials("mysql://root@h/db and s3://k:s@x/y"),
            "mysql://root@h/db and s3://k:********@x/y"
        );
    }

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
