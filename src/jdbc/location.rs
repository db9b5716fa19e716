//! Where a JDBC table lives: the database URL of its `LOCATION`, which database kind it names,
//! and how it may be shown — with the password replaced by `********` in every message, log line
//! and description.

use datafusion::error::{DataFusionError, Result};

use crate::redact::{REDACTED, is_secret_key, redact_url_credentials};

/// The kinds of database a JDBC table can live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    Mysql,
    /// SQLite (`sqlite://`).
    Sqlite,
}

/// A parsed database URL.
#[derive(Clone)]
pub struct Location {
    /// The kind of database.
    pub database: Database,
    /// The URL to connect with (for SQLite, the file's path). Holds the password: never show it.
    connect: String,
    /// The URL as it may be shown.
    shown: String,
    /// The password, to scrub from driver messages that might quote it.
    secret: Option<String>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("database", &self.database)
            .field("url", &self.shown)
            .finish()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Location {
    /// Parses `postgres://user:password@host:port/db?…`, `mysql://…` or `sqlite://path`.
    pub fn parse(text: &str) -> Result<Location> {
        let text = text.trim();
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let database = match scheme.as_deref() {
            Some("postgres" | "postgresql") => Database::Postgres,
            Some("mysql" | "mariadb") => Database::Mysql,
            Some("sqlite") => Database::Sqlite,
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "a JDBC table's LOCATION is a database URL: postgres://user@host:5432/db, \
                     mysql://user@host:3306/db or sqlite:///path/to/file.db, not '{}'",
                    redact_url_credentials(text)
                )));
            }
        };
        if database == Database::Sqlite {
            let path = &text["sqlite://".len()..];
            if path.is_empty() {
                return Err(DataFusionError::Plan(
                    "a SQLite LOCATION names a file: sqlite:///absolute/path.db or \
                     sqlite://relative/path.db"
                        .to_string(),
                ));
            }
            return Ok(Location {
                database,
                connect: path.to_string(),
                shown: text.to_string(),
                secret: None,
            });
        }
        let mut url = url::Url::parse(text).map_err(|e| {
            DataFusionError::Plan(format!(
                "the JDBC LOCATION '{}' is not a valid URL: {e}",
                redact_url_credentials(text)
            ))
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DataFusionError::Plan(format!(
                "the JDBC LOCATION '{}' names no host",
                redact_url_credentials(text)
            )));
        }
        let mut secrets: Vec<String> = vec![];
        if let Some(password) = url.password() {
            secrets.push(percent_decode(password));
            secrets.push(password.to_string());
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = url.set_password(Some(REDACTED));
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.iter().any(|(k, _)| is_secret_key(k)) {
            let mut query = url.query_pairs_mut();
            query.clear();
            for (key, value) in &pairs {
                if is_secret_key(key) {
                    secrets.push(value.clone());
                    query.append_pair(key, REDACTED);
                } else {
                    query.append_pair(key, value);
                }
            }
        }
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Location {
            database,
            connect: text.to_string(),
            shown: url.to_string(),
            secret: (!secrets.is_empty()).then(|| secrets.join("\u{0}")),
        })
    }

    /// The URL (or SQLite path) to connect with. Contains the password.
    pub fn connect_string(&self) -> &str {
        &self.connect
    }

    /// `message` with every secret of the URL replaced by `********`, for driver messages that
    /// might quote the URL or its password.
    pub fn scrub(&self, message: impl std::fmt::Display) -> String {
        let mut text = message.to_string();
        if let Some(secrets) = &self.secret {
            for secret in secrets.split('\u{0}') {
                text = text.replace(secret, REDACTED);
            }
        }
        if self.database == Database::Sqlite {
            // A SQLite path has no secret, and messages naming it are clear as they are.
            return text;
        }
        text.replace(&self.connect, &self.shown)
    }
}

/// Decodes `%XX` escapes (a URL's password as the driver sees it).
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let location = Location::parse("postgres://app:hunter2@db.example:5432/shop").unwrap();
        assert_eq!(location.database, Database::Postgres);
        assert_eq!(
            location.to_string(),
            "postgres://app:********@db.example:5432/shop"
        );
        assert!(!format!("{location:?}").contains("hunter2"));
        assert_eq!(
            location
                .scrub("auth failed for hunter2 at postgres://app:hunter2@db.example:5432/shop"),
            "auth failed for ******** at postgres://app:********@db.example:5432/shop"
        );
        assert_eq!(
            location.connect_string(),
            "postgres://app:hunter2@db.example:5432/shop"
        );

        let escaped = Location::parse("mysql://root:p%40ss@127.0.0.1:3306/test").unwrap();
        assert_eq!(escaped.database, Database::Mysql);
        assert_eq!(
            escaped.to_string(),
            "mysql://root:********@127.0.0.1:3306/test"
        );
        assert_eq!(escaped.scrub("bad p@ss"), "bad ********");

        let query =
            Location::parse("postgresql://app@localhost/db?password=s3cret&application_name=weir")
                .unwrap();
        assert!(!query.to_string().contains("s3cret"), "{query}");
        assert!(
            query.to_string().contains("application_name=weir"),
            "{query}"
        );
        assert_eq!(query.scrub("s3cret"), REDACTED);

        let plain = Location::parse("postgres://postgres@127.0.0.1:5432/test").unwrap();
        assert_eq!(plain.to_string(), "postgres://postgres@127.0.0.1:5432/test");
    }

    #[test]
    fn sqlite_paths_absolute_and_relative() {
        let absolute = Location::parse("sqlite:///var/lib/weir/out.db").unwrap();
        assert_eq!(absolute.database, Database::Sqlite);
        assert_eq!(absolute.connect_string(), "/var/lib/weir/out.db");
        let relative = Location::parse("sqlite://data/out.db").unwrap();
        assert_eq!(relative.connect_string(), "data/out.db");
        assert!(Location::parse("sqlite://").is_err());
    }

    #[test]
    fn other_urls_are_refused_without_their_password() {
        let e = Location::parse("oracle://scott:tiger@db/orcl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres://") && !e.contains("tiger"), "{e}");
        let e = Location::parse("postgres://u:pw@/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("u:********@") && !e.contains(":pw@"), "{e}");
        let e = Location::parse("mysql:///db").unwrap_err().to_string();
        assert!(e.contains("no host") || e.contains("empty host"), "{e}");
    }
}
