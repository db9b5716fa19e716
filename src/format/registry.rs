//! A client of a Confluent-compatible Schema Registry (Confluent's REST API; Apicurio serves it
//! under `/apis/ccompat/v7`): schemas by id, a subject's latest schema, and registration, with
//! basic auth, a CA for TLS, a timeout per request and retries of transient failures.
//!
//! Schemas by id are immutable, so each is fetched once and kept. Errors name the registry by
//! its URL with any password replaced, and never show the basic-auth credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::redact::redact_url_credentials;

/// How to reach a registry, from a table's `schema.registry.*` options.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// The base URL (it may have a path, as Apicurio's `/apis/ccompat/v7`).
    pub url: String,
    /// `USER:PASSWORD` for HTTP basic auth.
    pub user_info: Option<String>,
    /// A PEM file of the CA that signed the registry's certificate, beside the system's roots.
    pub ca_location: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
    /// How many times a request that failed in transit or with a 5xx answer is tried again.
    pub retries: u32,
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("url", &redact_url_credentials(&self.url))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a registry request did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that the subject, version or id does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Anything else: unreachable, refused credentials, a malformed answer.
    #[error("{0}")]
    Failed(String),
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The schema's id, which framed records carry.
    pub id: u32,
    /// The schema text (Avro schema JSON).
    pub schema: String,
}

/// A registry client; cheap to share behind an `Arc`.
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    shown: String,
    user_info: Option<(String, String)>,
    retries: u32,
    by_id: Mutex<HashMap<u32, Arc<str>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryClient({})", self.shown)
    }
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct VersionAnswer {
    id: u32,
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error_code: Option<i64>,
    message: Option<String>,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    /// A client of the registry `options` names; fails on a malformed URL or user info, or an
    /// unreadable CA file.
    pub fn new(options: &RegistryOptions) -> Result<Self, String> {
        let shown = redact_url_credentials(&options.url);
        let parsed = url::Url::parse(&options.url)
            .map_err(|e| format!("'schema.registry.url' ('{shown}') is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "'schema.registry.url' ('{shown}') must start with http:// or https://"
            ));
        }
        let user_info = match &options.user_info {
            None => None,
            Some(info) => match info.split_once(':') {
                Some((user, password)) => Some((user.to_string(), password.to_string())),
                None => {
                    return Err(
                        "'schema.registry.basic.auth.user.info' must be USER:PASSWORD".to_string(),
                    );
                }
            },
        };
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout);
        if let Some(path) = &options.ca_location {
            let pem = std::fs::read(path).map_err(|e| {
                format!("cannot read 'schema.registry.ssl.ca.location' ('{path}'): {e}")
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "'schema.registry.ssl.ca.location' ('{path}') holds no PEM certificate: {e}"
                )
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot make an HTTP client for the schema registry: {e}"))?;
        Ok(Self {
            http,
            base: options.url.trim_end_matches('/').to_string(),
            shown,
            user_info,
            retries: options.retries,
            by_id: Mutex::default(),
        })
    }

    /// The registry's URL as it may be shown.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// The schema with id `id` (fetched once, then kept).
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let answer: SchemaAnswer = self
            .request(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        check_avro(answer.schema_type.as_deref(), &format!("schema id {id}"))?;
        let schema: Arc<str> = answer.schema.into();
        if let Ok(mut cache) = self.by_id.lock() {
            cache.insert(id, Arc::clone(&schema));
        }
        Ok(schema)
    }

    fn cached(&self, id: u32) -> Option<Arc<str>> {
        self.by_id.lock().ok()?.get(&id).cloned()
    }

    /// The latest schema registered under `subject`, or `None` when there is no such subject.
    pub async fn latest(&self, subject: &str) -> Result<Option<RegisteredSchema>, RegistryError> {
        let path = format!("/subjects/{}/versions/latest", encode(subject));
        match self
            .request::<VersionAnswer>(reqwest::Method::GET, &path, None)
            .await
        {
            Ok(answer) => {
                check_avro(
                    answer.schema_type.as_deref(),
                    &format!("the latest schema of subject '{subject}'"),
                )?;
                Ok(Some(RegisteredSchema {
                    id: answer.id,
                    schema: answer.schema,
                }))
            }
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fails unless the registry answers a listing of its subjects.
    pub async fn check_reachable(&self) -> Result<(), RegistryError> {
        self.request::<Vec<String>>(reqwest::Method::GET, "/subjects", None)
            .await
            .map(|_| ())
    }

    /// Registers the Avro `schema` under `subject` (or finds it there) and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({"schema": schema, "schemaType": "AVRO", "references": []});
        let path = format!("/subjects/{}/versions", encode(subject));
        let answer: IdAnswer = self
            .request(reqwest::Method::POST, &path, Some(&body))
            .await?;
        Ok(answer.id)
    }

    /// Sends one request, again after a transient failure, and parses the JSON answer.
    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let what = format!("{method} {path}");
        let mut attempt = 0;
        loop {
            match self.send_once::<T>(method.clone(), path, body).await {
                Err(Transient(e)) if attempt < self.retries => {
                    attempt += 1;
                    log::warn!("schema registry {}: {what}: {e}; trying again", self.shown);
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                }
                Err(Transient(e)) => {
                    return Err(RegistryError::Failed(format!(
                        "the schema registry at {} did not answer {what}: {e}",
                        self.shown
                    )));
                }
                Ok(answer) => return answer,
            }
        }
    }

    /// One try: `Err` for a failure worth another try, else the answer or its final error.
    async fn send_once<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Result<T, RegistryError>, Transient> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(
                reqwest::header::ACCEPT,
                format!("{CONTENT_TYPE}, application/json"),
            );
        if let Some((user, password)) = &self.user_info {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Transient(without_url(e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Transient(without_url(e)))?;
        if status.is_server_error() {
            return Err(Transient(format!(
                "HTTP {status}: {}",
                error_message(&text)
            )));
        }
        let what = format!("{method} {path}");
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Err(RegistryError::NotFound(format!(
                "the schema registry at {} has no {}: {}",
                self.shown,
                path.trim_start_matches('/'),
                error_message(&text)
            ))));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Ok(Err(RegistryError::Failed(format!(
                "the schema registry at {} refused {what} (HTTP {status}): check \
                 'schema.registry.basic.auth.user.info'",
                self.shown
            ))));
        }
        if !status.is_success() {
            return Ok(Err(RegistryError::Failed(format!(
                "the schema registry at {} refused {what} (HTTP {status}): {}",
                self.shown,
                error_message(&text)
            ))));
        }
        Ok(serde_json::from_str(&text).map_err(|e| {
            RegistryError::Failed(format!(
                "the schema registry at {} answered {what} with something unexpected: {e}",
                self.shown
            ))
        }))
    }
}

/// A failure in transit or a 5xx answer, worth another try.
struct Transient(String);

/// A reqwest error's text with its causes, without the URL, which may hold credentials.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    redact_url_credentials(&text)
}

/// The registry's error message in `body`, or the body itself.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<ErrorAnswer>(body) {
        Ok(ErrorAnswer {
            message: Some(message),
            error_code,
        }) => match error_code {
            Some(code) if code != 0 => format!("{message} (error code {code})"),
            _ => message,
        },
        _ => body.chars().take(200).collect(),
    }
}

fn check_avro(schema_type: Option<&str>, what: &str) -> Result<(), RegistryError> {
    match schema_type {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("AVRO") => Ok(()),
        Some(other) => Err(RegistryError::Failed(format!(
            "{what} is a {other} schema, not Avro"
        ))),
    }
}

/// `subject` as one URL path segment.
fn encode(subject: &str) -> String {
    url::form_urlencoded::byte_serialize(subject.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
