//! A client of a Confluent-compatible Schema Registry (Confluent's REST API; Apicurio serves it
//! under `/apis/ccompat/v7`): schemas by id, a subject's versions, and registration, with
//! basic auth, a CA for TLS, a timeout per request and retries of transient failures; and the
//! registry's framing of values.
//!
//! Schemas by id are immutable, so each is fetched once and kept. Errors name the registry by
//! its URL with any password replaced, and never show the basic-auth credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::BinaryArray;
use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
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

/// The kinds of schema weir reads from a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    /// Avro schema JSON (the registry's default type).
    Avro,
    /// A Protobuf file, as `.proto` text or a base64 `FileDescriptorProto`.
    Protobuf,
}

impl SchemaType {
    fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }
}

/// Another schema a schema imports: a Protobuf file by its import path, found in the registry
/// under a subject and version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Reference {
    /// The name the schema imports it by (a `.proto` file path).
    pub name: String,
    /// The subject it is registered under.
    pub subject: String,
    /// Its version under that subject.
    pub version: i64,
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The schema's id, which framed records carry.
    pub id: u32,
    /// The schema text.
    pub schema: String,
    /// The schemas it references.
    pub references: Vec<Reference>,
    /// Its version under the subject it was asked for by, when asked by subject.
    pub version: Option<i64>,
}

/// A registry client; cheap to share behind an `Arc`.
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    shown: String,
    user_info: Option<(String, String)>,
    retries: u32,
    by_id: Mutex<HashMap<u32, Arc<RegisteredSchema>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryClient({})", self.shown)
    }
}

/// The answer to `GET /schemas/ids/{id}` and `GET /subjects/{s}/versions/{v}` (which adds the
/// id).
#[derive(Deserialize)]
struct SchemaAnswer {
    id: Option<u32>,
    version: Option<i64>,
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

impl SchemaAnswer {
    /// The schema, when it is of `kind`; `id` when the answer does not say it.
    fn into_schema(
        self,
        kind: SchemaType,
        id: Option<u32>,
        what: &str,
    ) -> Result<RegisteredSchema, RegistryError> {
        let found = self.schema_type.as_deref().unwrap_or("AVRO");
        if !found.eq_ignore_ascii_case(kind.name()) {
            return Err(RegistryError::Failed(format!(
                "{what} is a {found} schema, not {}",
                kind.name()
            )));
        }
        let id = self.id.or(id).ok_or_else(|| {
            RegistryError::Failed(format!("the registry's answer for {what} has no id"))
        })?;
        Ok(RegisteredSchema {
            id,
            schema: self.schema,
            references: self.references,
            version: self.version,
        })
    }
}

#[derive(Deserialize)]
struct VersionNumber {
    version: i64,
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

/// The registry's JSON content type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    /// A client of the registry `options` names; fails on a malformed URL or user info, or an
    /// unreadable CA file.
    pub fn new(options: &RegistryOptions) -> Result<Self, String> {
        let parsed = url::Url::parse(options.url.trim()).map_err(|e| {
            format!("'schema.registry.url' is not a URL ({e}); give one like http://registry:8081")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("'schema.registry.url' must start with http:// or https://".to_string());
        }
        if parsed.password().is_some() && options.user_info.is_some() {
            return Err(
                "give the registry's credentials either in 'schema.registry.url' or in \
                 'schema.registry.basic.auth.user.info', not both"
                    .to_string(),
            );
        }
        let mut shown_url = parsed.clone();
        if shown_url.password().is_some() {
            let _ = shown_url.set_password(Some(crate::redact::REDACTED));
        }
        let shown = shown_url.as_str().trim_end_matches('/').to_string();
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
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|found| !found.is_empty())
                .ok_or_else(|| {
                    format!(
                        "'schema.registry.ssl.ca.location' ('{path}') holds no PEM certificate \
                         (-----BEGIN CERTIFICATE-----)"
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
            base: parsed.as_str().trim_end_matches('/').to_string(),
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

    /// The schema with id `id`, which must be of `kind` (fetched once, then kept).
    pub async fn schema_by_id(
        &self,
        id: u32,
        kind: SchemaType,
    ) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let what = format!("schema id {id}");
        let answer: SchemaAnswer = self
            .request(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        let schema = Arc::new(answer.into_schema(kind, Some(id), &what)?);
        if let Ok(mut cache) = self.by_id.lock() {
            cache.insert(id, Arc::clone(&schema));
        }
        Ok(schema)
    }

    fn cached(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.by_id.lock().ok()?.get(&id).cloned()
    }

    /// The latest schema registered under `subject`, of `kind`, or `None` when there is no
    /// such subject.
    pub async fn latest(
        &self,
        subject: &str,
        kind: SchemaType,
    ) -> Result<Option<RegisteredSchema>, RegistryError> {
        match self.version(subject, "latest", kind).await {
            Ok(schema) => Ok(Some(schema)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Version `version` (a number, or `latest`) of `subject`, of `kind`.
    pub async fn version(
        &self,
        subject: &str,
        version: &str,
        kind: SchemaType,
    ) -> Result<RegisteredSchema, RegistryError> {
        let path = format!("/subjects/{}/versions/{version}", path_segment(subject));
        let answer: SchemaAnswer = self.request(reqwest::Method::GET, &path, None).await?;
        answer.into_schema(
            kind,
            None,
            &format!("version {version} of subject '{subject}'"),
        )
    }

    /// Fails unless the registry answers a listing of its subjects.
    pub async fn check_reachable(&self) -> Result<(), RegistryError> {
        self.request::<Vec<String>>(reqwest::Method::GET, "/subjects", None)
            .await
            .map(|_| ())
    }

    /// Registers `schema` of `kind`, which imports `references`, under `subject` (or finds it
    /// there) and returns its id.
    pub async fn register(
        &self,
        subject: &str,
        kind: SchemaType,
        schema: &str,
        references: &[Reference],
    ) -> Result<u32, RegistryError> {
        let body = serde_json::json!({
            "schema": schema, "schemaType": kind.name(), "references": references
        });
        let path = format!("/subjects/{}/versions", path_segment(subject));
        let answer: IdAnswer = self
            .request(reqwest::Method::POST, &path, Some(&body))
            .await?;
        Ok(answer.id)
    }

    /// The version under `subject` of `schema` of `kind`, which must be registered there.
    pub async fn version_of(
        &self,
        subject: &str,
        kind: SchemaType,
        schema: &str,
        references: &[Reference],
    ) -> Result<i64, RegistryError> {
        let body = serde_json::json!({
            "schema": schema, "schemaType": kind.name(), "references": references
        });
        let path = format!("/subjects/{}", path_segment(subject));
        let answer: VersionNumber = self
            .request(reqwest::Method::POST, &path, Some(&body))
            .await?;
        Ok(answer.version)
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
        Ok(self.read_answer(status, &text, &format!("{method} {path}")))
    }

    /// The answer `text` with `status` to the request `what`, parsed, or what it says failed.
    fn read_answer<T: serde::de::DeserializeOwned>(
        &self,
        status: reqwest::StatusCode,
        text: &str,
        what: &str,
    ) -> Result<T, RegistryError> {
        use reqwest::StatusCode;
        if status == StatusCode::NOT_FOUND && is_not_found_code(text) {
            return Err(RegistryError::NotFound(format!(
                "the schema registry at {} answered {what} with: {}",
                self.shown,
                error_message(text)
            )));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Failed(format!(
                "the schema registry at {} refused {what} (HTTP {status}): check \
                 'schema.registry.basic.auth.user.info'",
                self.shown
            )));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::Failed(format!(
                "{} does not serve {what} (HTTP 404): is 'schema.registry.url' the registry's \
                 API (Apicurio's ends in /apis/ccompat/v7)?",
                self.shown
            )));
        }
        if !status.is_success() {
            return Err(RegistryError::Failed(format!(
                "the schema registry at {} refused {what} (HTTP {status}): {}",
                self.shown,
                error_message(text)
            )));
        }
        serde_json::from_str(text).map_err(|e| {
            RegistryError::Failed(format!(
                "the schema registry at {} answered {what} with something unexpected: {e}",
                self.shown
            ))
        })
    }
}

/// Whether a 404 answer carries one of Confluent's "no such subject, version or schema" codes
/// (40401, 40402, 40403), not a 404 of a server that is not a registry.
fn is_not_found_code(body: &str) -> bool {
    serde_json::from_str::<ErrorAnswer>(body)
        .is_ok_and(|answer| matches!(answer.error_code, Some(40401..=40403)))
}

/// The schema id of a value in the registry's framing (magic byte 0, a 4-byte big-endian id),
/// and the rest of the value.
pub fn split_frame(value: &[u8]) -> Result<(u32, &[u8]), ArrowError> {
    if value.len() < 5 {
        return Err(ArrowError::ParseError(format!(
            "the payload is {} bytes, shorter than the registry's 5-byte frame",
            value.len()
        )));
    }
    if value[0] != 0 {
        return Err(ArrowError::ParseError(format!(
            "the payload starts with byte {:#04x}, not the registry's magic byte 0",
            value[0]
        )));
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok((id, &value[5..]))
}

/// The schema ids of the framed `values` for which `is_known` does not hold, each with the
/// index of its first value.
pub fn unknown_ids(values: &BinaryArray, is_known: impl Fn(u32) -> bool) -> Vec<(u32, usize)> {
    let mut ids: Vec<(u32, usize)> = vec![];
    for (i, value) in values.iter().enumerate() {
        if let Some(Ok((id, _))) = value.map(split_frame)
            && !is_known(id)
            && !ids.iter().any(|(seen, _)| *seen == id)
        {
            ids.push((id, i));
        }
    }
    ids
}

/// What looking up schema `id` for a batch gave: the schema, or why the registry lacks it (its
/// values are then undecodable, and it is asked for again next batch); a registry that could
/// not answer fails, naming `first`, the first record with the id.
pub fn lookup_outcome<T>(
    fetched: Result<T, RegistryError>,
    id: u32,
    first: &str,
) -> Result<Result<T, String>, DataFusionError> {
    match fetched {
        Ok(schema) => Ok(Ok(schema)),
        Err(RegistryError::NotFound(e)) => {
            log::warn!("schema id {id} (first at {first}) is unknown: {e}");
            Ok(Err(e))
        }
        Err(RegistryError::Failed(e)) => Err(DataFusionError::Execution(format!(
            "cannot read the schema of {first}: {e}"
        ))),
    }
}

/// Runs a registry request from a scan's blocking reader thread.
pub fn block_on<T>(request: impl Future<Output = T>) -> Result<T, DataFusionError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        DataFusionError::Internal("a registry lookup outside the engine's runtime".to_string())
    })?;
    Ok(runtime.block_on(request))
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

/// `subject` as one URL path segment.
fn path_segment(subject: &str) -> String {
    url::form_urlencoded::byte_serialize(subject.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str, user_info: Option<&str>) -> RegistryOptions {
        RegistryOptions {
            url: url.to_string(),
            user_info: user_info.map(str::to_string),
            ca_location: None,
            timeout: Duration::from_secs(1),
            retries: 0,
        }
    }

    #[test]
    fn urls_are_checked_and_shown_without_their_password() {
        let client = RegistryClient::new(&options("http://u:hunter2@registry:8081/apis/", None));
        assert_eq!(
            client.unwrap().shown_url(),
            "http://u:********@registry:8081/apis"
        );
        for bad in [
            "u:hunter2@registry:8081",
            "registry:8081",
            "ftp://registry",
            "not a url",
        ] {
            let e = RegistryClient::new(&options(bad, None)).unwrap_err();
            assert!(
                e.contains("'schema.registry.url'") && !e.contains("hunter2"),
                "{bad}: {e}"
            );
        }
        let e = RegistryClient::new(&options("http://u:p@registry", Some("u:p"))).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = RegistryClient::new(&options("http://registry", Some("no-colon"))).unwrap_err();
        assert!(
            e.contains("USER:PASSWORD") && !e.contains("no-colon"),
            "{e}"
        );
    }

    #[test]
    fn only_confluents_codes_make_a_404_a_missing_schema() {
        assert!(is_not_found_code(
            r#"{"error_code":40403,"message":"Schema 9 not found."}"#
        ));
        assert!(is_not_found_code(
            r#"{"error_code":40401,"message":"Subject 's' not found."}"#
        ));
        assert!(!is_not_found_code("<html>Not Found</html>"));
        assert!(!is_not_found_code(
            r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#
        ));
        assert_eq!(
            error_message(r#"{"error_code":40403,"message":"Schema 9 not found."}"#),
            "Schema 9 not found. (error code 40403)"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    /// A registry on loopback that answers its connections, in turn, with `answers` (raw
    /// HTTP responses; `None` accepts and never answers); its URL.
    async fn scripted_registry(answers: Vec<Option<&'static str>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                match answer {
                    Some(answer) => {
                        let _ = socket.write_all(answer.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            }
        });
        url
    }

    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const SUBJECTS: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            content-length: 5\r\nconnection: close\r\n\r\n[\"s\"]";

    #[tokio::test]
    async fn a_5xx_answer_is_tried_again_as_often_as_the_retries_allow() {
        let url = scripted_registry(vec![Some(UNAVAILABLE), Some(SUBJECTS)]).await;
        let client = RegistryClient::new(&RegistryOptions {
            retries: 1,
            ..options(&url, None)
        })
        .unwrap();
        client.check_reachable().await.unwrap();

        let url = scripted_registry(vec![Some(UNAVAILABLE), Some(SUBJECTS)]).await;
        let client = RegistryClient::new(&options(&url, None)).unwrap();
        let e = client.check_reachable().await.unwrap_err().to_string();
        assert!(
            e.contains(&url) && e.contains("GET /subjects") && e.contains("503"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_registry_that_does_not_answer_fails_after_the_timeout() {
        let url = scripted_registry(vec![None]).await;
        let client = RegistryClient::new(&RegistryOptions {
            timeout: Duration::from_millis(300),
            ..options(&url, None)
        })
        .unwrap();
        let e = client.check_reachable().await.unwrap_err().to_string();
        assert!(
            e.contains(&url) && e.contains("GET /subjects") && e.contains("timed out"),
            "{e}"
        );
    }
}
