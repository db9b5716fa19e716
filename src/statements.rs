//! Splitting SQL text into statements (with the line each starts on), telling whether a REPL
//! buffer holds a complete statement, and recognising weir's own statements, which DataFusion's
//! parser does not know.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::{Error, Result, syntax_error};

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, without the closing `;`.
    pub text: String,
    /// The 1-based line of the script on which it starts.
    pub line: usize,
}

/// Tokenizes `sql` as DataFusion does.
pub fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::Sql(syntax_error(&e.into())))
}

fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_) | Token::EOF)
}

/// Maps a token's (line, column) to its byte offset in `sql`.
fn byte_offsets(sql: &str) -> impl Fn(u64, u64) -> usize + '_ {
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    move |line: u64, column: u64| -> usize {
        let start = line_starts
            .get(line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(sql.len());
        let rest = &sql[start..];
        let chars = column.saturating_sub(1) as usize;
        start
            + rest
                .char_indices()
                .nth(chars)
                .map_or(rest.len(), |(i, _)| i)
    }
}

/// Splits a script into statements at top-level `;`, skipping empty ones and comments.
pub fn split_statements(sql: &str) -> Result<Vec<Statement>> {
    let tokens = tokenize(sql)?;
    let byte_offset = byte_offsets(sql);
    let mut statements = vec![];
    let mut first: Option<&TokenWithSpan> = None;
    for token in &tokens {
        match &token.token {
            Token::SemiColon | Token::EOF => {
                if let Some(start) = first.take() {
                    let from = byte_offset(start.span.start.line, start.span.start.column);
                    let to = if token.token == Token::EOF {
                        sql.len()
                    } else {
                        byte_offset(token.span.start.line, token.span.start.column)
                    };
                    statements.push(Statement {
                        text: sql[from..to].trim_end().to_string(),
                        line: start.span.start.line as usize,
                    });
                }
            }
            t if is_blank(t) => {}
            _ => {
                first.get_or_insert(token);
            }
        }
    }
    if let Some(start) = first {
        let from = byte_offset(start.span.start.line, start.span.start.column);
        statements.push(Statement {
            text: sql[from..].trim_end().to_string(),
            line: start.span.start.line as usize,
        });
    }
    Ok(statements)
}

/// True when `buffer` ends with a `;` outside strings and comments (the REPL runs it then).
pub fn is_complete(buffer: &str) -> bool {
    match tokenize(buffer) {
        Ok(tokens) => tokens
            .iter()
            .rev()
            .find(|t| !is_blank(&t.token))
            .is_some_and(|t| t.token == Token::SemiColon),
        Err(_) => false,
    }
}

/// The statements weir handles itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeirStatement {
    /// `CREATE TOPIC [IF NOT EXISTS] name [PARTITIONS n]`
    CreateTopic {
        /// Topic name.
        name: String,
        /// Partition count.
        partitions: i32,
        /// Whether an existing topic is fine.
        if_not_exists: bool,
    },
    /// `CREATE STREAMING QUERY name [WITH ('key' 'value', …)] AS INSERT INTO …`
    CreateStreamingQuery {
        /// Query name.
        name: String,
        /// Options of the WITH clause.
        options: Vec<(String, String)>,
        /// The INSERT statement.
        insert: String,
    },
    /// `SHOW QUERIES`
    ShowQueries,
    /// `STOP QUERY name`
    StopQuery {
        /// Query name.
        name: String,
    },
    /// `DESCRIBE QUERY name`
    DescribeQuery {
        /// Query name.
        name: String,
    },
    /// `OPTIMIZE table`: compacts a Delta table's small files.
    Optimize {
        /// The table.
        table: String,
    },
    /// `VACUUM table [RETAIN n HOURS] [DRY RUN]`: deletes files a Delta table no longer needs.
    Vacuum {
        /// The table.
        table: String,
        /// How many hours of removed files to keep (default: the table's retention).
        retain_hours: Option<u64>,
        /// Whether to only list the files.
        dry_run: bool,
    },
    /// `SET weir.<key> = value`
    SetWeir {
        /// The key after `weir.`.
        key: String,
        /// The value.
        value: String,
    },
}

/// The significant tokens of a statement.
fn words(tokens: &[TokenWithSpan]) -> Vec<&Token> {
    tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !is_blank(t))
        .collect()
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.keyword == keyword)
}

fn is_word(token: &Token, text: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

/// Recognises a statement of weir's own, or `None` for one DataFusion should parse.
pub fn parse_weir_statement(text: &str) -> Result<Option<WeirStatement>> {
    let tokens = tokenize(text)?;
    let mut w = words(&tokens);
    while w.last() == Some(&&Token::SemiColon) {
        w.pop();
    }
    if w.len() >= 2 && is_keyword(w[0], Keyword::CREATE) && is_word(w[1], "TOPIC") {
        return parse_create_topic(&w[2..]).map(Some);
    }
    if w.len() >= 3
        && is_keyword(w[0], Keyword::CREATE)
        && is_word(w[1], "STREAMING")
        && is_word(w[2], "QUERY")
    {
        return parse_create_streaming_query(text, &tokens).map(Some);
    }
    if w.len() == 2 && is_keyword(w[0], Keyword::SHOW) && is_word(w[1], "QUERIES") {
        return Ok(Some(WeirStatement::ShowQueries));
    }
    if w.len() >= 2
        && is_word(w[1], "QUERY")
        && (is_word(w[0], "STOP") || is_keyword(w[0], Keyword::DESCRIBE))
    {
        let name = match w.get(2..) {
            Some([Token::Word(n)]) => n.value.clone(),
            Some([Token::SingleQuotedString(n)]) => n.clone(),
            _ => {
                return Err(Error::Sql(
                    "expected STOP QUERY name or DESCRIBE QUERY name".to_string(),
                ));
            }
        };
        return Ok(Some(if is_word(w[0], "STOP") {
            WeirStatement::StopQuery { name }
        } else {
            WeirStatement::DescribeQuery { name }
        }));
    }
    if w.first().is_some_and(|t| is_word(t, "OPTIMIZE")) {
        return parse_optimize(&w[1..]).map(Some);
    }
    if w.first().is_some_and(|t| is_word(t, "VACUUM")) {
        return parse_vacuum(&w[1..]).map(Some);
    }
    if w.len() >= 2
        && is_keyword(w[0], Keyword::SET)
        && (is_word(w[1], "weir") || is_word(w[1], "spark"))
    {
        return parse_set_weir(&w[1..]).map(Some);
    }
    Ok(None)
}

const STREAMING_QUERY_SYNTAX: &str =
    "CREATE STREAMING QUERY name [WITH ('option' 'value', …)] AS INSERT INTO sink SELECT …";

fn parse_create_streaming_query(text: &str, tokens: &[TokenWithSpan]) -> Result<WeirStatement> {
    let syntax = || Error::Sql(format!("expected {STREAMING_QUERY_SYNTAX}"));
    let significant: Vec<&TokenWithSpan> = tokens.iter().filter(|t| !is_blank(&t.token)).collect();
    let token = |i: usize| significant.get(i).map(|t| &t.token);
    let name = match token(3) {
        Some(Token::Word(w)) => w.value.clone(),
        Some(Token::SingleQuotedString(s)) => s.clone(),
        _ => return Err(syntax()),
    };
    let mut i = 4;
    let mut options = vec![];
    if token(i).is_some_and(|t| is_keyword(t, Keyword::WITH)) {
        if token(i + 1) != Some(&Token::LParen) {
            return Err(syntax());
        }
        i += 2;
        loop {
            match (token(i), token(i + 1)) {
                (Some(Token::RParen), _) => {
                    i += 1;
                    break;
                }
                (Some(Token::SingleQuotedString(k)), Some(Token::SingleQuotedString(v))) => {
                    options.push((k.clone(), v.clone()));
                    i += 2;
                    if token(i) == Some(&Token::Comma) {
                        i += 1;
                    }
                }
                _ => {
                    return Err(Error::Sql(format!(
                        "expected 'option' 'value' pairs in WITH (…): {STREAMING_QUERY_SYNTAX}"
                    )));
                }
            }
        }
    }
    if !token(i).is_some_and(|t| is_keyword(t, Keyword::AS)) {
        return Err(syntax());
    }
    let insert = significant
        .get(i + 1)
        .filter(|t| is_keyword(&t.token, Keyword::INSERT))
        .ok_or_else(syntax)?;
    let offset = byte_offsets(text)(insert.span.start.line, insert.span.start.column);
    Ok(WeirStatement::CreateStreamingQuery {
        name,
        options,
        insert: text[offset..].trim().to_string(),
    })
}

const CREATE_TOPIC_SYNTAX: &str = "CREATE TOPIC [IF NOT EXISTS] name [PARTITIONS n]";

fn parse_create_topic(rest: &[&Token]) -> Result<WeirStatement> {
    let syntax = || Error::Sql(format!("expected {CREATE_TOPIC_SYNTAX}"));
    let mut rest = rest;
    let if_not_exists = rest.len() >= 3
        && is_keyword(rest[0], Keyword::IF)
        && is_keyword(rest[1], Keyword::NOT)
        && is_keyword(rest[2], Keyword::EXISTS);
    if if_not_exists {
        rest = &rest[3..];
    }
    let name = match rest.first() {
        Some(Token::Word(w)) => w.value.clone(),
        Some(Token::SingleQuotedString(s)) => s.clone(),
        _ => return Err(syntax()),
    };
    let partitions = match &rest[1..] {
        [] => 1,
        [p, Token::Number(n, _)] if is_word(p, "PARTITIONS") => {
            n.parse::<i32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::Sql(format!(
                    "PARTITIONS must be a positive whole number, not {n}"
                ))
            })?
        }
        _ => return Err(syntax()),
    };
    Ok(WeirStatement::CreateTopic {
        name,
        partitions,
        if_not_exists,
    })
}

fn table_name(token: Option<&&Token>) -> Option<String> {
    match token {
        Some(Token::Word(w)) => Some(w.value.clone()),
        Some(Token::SingleQuotedString(s)) => Some(s.clone()),
        _ => None,
    }
}

fn parse_optimize(rest: &[&Token]) -> Result<WeirStatement> {
    match (table_name(rest.first()), rest.len()) {
        (Some(table), 1) => Ok(WeirStatement::Optimize { table }),
        _ => Err(Error::Sql("expected OPTIMIZE table".to_string())),
    }
}

const VACUUM_SYNTAX: &str = "VACUUM table [RETAIN n HOURS] [DRY RUN]";

fn parse_vacuum(rest: &[&Token]) -> Result<WeirStatement> {
    let syntax = || Error::Sql(format!("expected {VACUUM_SYNTAX}"));
    let table = table_name(rest.first()).ok_or_else(syntax)?;
    let mut rest = &rest[1..];
    let mut retain_hours = None;
    if let [retain, Token::Number(n, _), hours, tail @ ..] = rest
        && is_word(retain, "RETAIN")
        && is_word(hours, "HOURS")
    {
        retain_hours =
            Some(n.parse::<u64>().map_err(|_| {
                Error::Sql(format!("RETAIN takes a whole number of hours, not {n}"))
            })?);
        rest = tail;
    }
    let dry_run = match rest {
        [] => false,
        [dry, run] if is_word(dry, "DRY") && is_word(run, "RUN") => true,
        _ => return Err(syntax()),
    };
    Ok(WeirStatement::Vacuum {
        table,
        retain_hours,
        dry_run,
    })
}

fn parse_set_weir(rest: &[&Token]) -> Result<WeirStatement> {
    let mut key = String::new();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            Token::Word(w) => key.push_str(&w.value),
            Token::Period => key.push('.'),
            _ => break,
        }
        i += 1;
    }
    let value_tokens = match rest.get(i) {
        Some(Token::Eq) => &rest[i + 1..],
        Some(t) if is_keyword(t, Keyword::TO) => &rest[i + 1..],
        _ => return Err(Error::Sql(format!("expected SET {key} = 'value'"))),
    };
    let value = match value_tokens {
        [Token::SingleQuotedString(s)] | [Token::DoubleQuotedString(s)] => s.clone(),
        [Token::Word(w)] => w.value.clone(),
        [Token::Number(n, _)] => n.clone(),
        _ => return Err(Error::Sql(format!("expected SET {key} = 'value'"))),
    };
    let key = key
        .strip_prefix("weir.")
        .unwrap_or(&key)
        .to_ascii_lowercase();
    Ok(WeirStatement::SetWeir { key, value })
}

/// For `CREATE EXTERNAL TABLE … STORED AS KAFKA` without `LOCATION` (a Kafka table has none),
/// the tokens with a placeholder location added, so that DataFusion's parser accepts them.
pub fn with_kafka_location(text: &str) -> Result<Option<Vec<TokenWithSpan>>> {
    let tokens = tokenize(text)?;
    let w = words(&tokens);
    let is_create_external = w.iter().take(4).any(|t| is_keyword(t, Keyword::EXTERNAL))
        && w.first().is_some_and(|t| is_keyword(t, Keyword::CREATE));
    let stored_as_kafka = w.windows(3).any(|s| {
        is_keyword(s[0], Keyword::STORED)
            && is_keyword(s[1], Keyword::AS)
            && LOCATIONLESS_FORMATS.iter().any(|f| is_word(s[2], f))
    });
    let has_location = w.iter().any(|t| is_keyword(t, Keyword::LOCATION));
    if !(is_create_external && stored_as_kafka) || has_location {
        return Ok(None);
    }
    let mut tokens: Vec<TokenWithSpan> = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::EOF))
        .collect();
    while tokens
        .last()
        .is_some_and(|t| matches!(t.token, Token::Whitespace(_) | Token::SemiColon))
    {
        tokens.pop();
    }
    for token in [
        Token::Whitespace(Whitespace::Space),
        Token::make_keyword("LOCATION"),
        Token::Whitespace(Whitespace::Space),
        Token::SingleQuotedString(KAFKA_LOCATION.to_string()),
    ] {
        tokens.push(TokenWithSpan::wrap(token));
    }
    Ok(Some(tokens))
}

/// Table kinds that have no location.
const LOCATIONLESS_FORMATS: [&str; 3] = ["KAFKA", "MEMORY", "CONSOLE"];

/// The location weir gives a Kafka table so that DataFusion accepts its DDL.
pub const KAFKA_LOCATION: &str = "kafka:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_lines_and_ignores_semicolons_in_strings_and_comments() {
        let sql =
            "-- a comment; still a comment\nSELECT ';' AS x;\n\n  /* ; */ SELECT\n 2;\n;  SELECT 3";
        let s = split_statements(sql).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            Statement {
                text: "SELECT ';' AS x".into(),
                line: 2
            }
        );
        assert_eq!(s[1].line, 4);
        assert_eq!(s[1].text, "SELECT\n 2");
        assert_eq!(
            s[2],
            Statement {
                text: "SELECT 3".into(),
                line: 6
            }
        );
        assert!(split_statements("SELECT 'unterminated").is_err());
    }

    #[test]
    fn completeness_for_the_repl() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- done\n"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1 /* ; */"));
    }

    #[test]
    fn create_topic_and_set() {
        assert_eq!(
            parse_weir_statement("create topic if not exists orders partitions 4").unwrap(),
            Some(WeirStatement::CreateTopic {
                name: "orders".into(),
                partitions: 4,
                if_not_exists: true
            })
        );
        assert_eq!(
            parse_weir_statement("CREATE TOPIC t").unwrap(),
            Some(WeirStatement::CreateTopic {
                name: "t".into(),
                partitions: 1,
                if_not_exists: false
            })
        );
        assert!(parse_weir_statement("CREATE TOPIC t PARTITIONS 0").is_err());
        assert!(
            parse_weir_statement("CREATE TOPIC t WITH 4")
                .unwrap_err()
                .to_string()
                .contains("PARTITIONS n")
        );
        assert_eq!(
            parse_weir_statement("SET weir.kafka.bootstrap.servers = 'b:9092'").unwrap(),
            Some(WeirStatement::SetWeir {
                key: "kafka.bootstrap.servers".into(),
                value: "b:9092".into()
            })
        );
        assert_eq!(
            parse_weir_statement("SET datafusion.execution.batch_size = 10").unwrap(),
            None
        );
        assert_eq!(parse_weir_statement("SELECT 1").unwrap(), None);
    }

    #[test]
    fn queries_statements() {
        assert_eq!(
            parse_weir_statement("SHOW QUERIES").unwrap(),
            Some(WeirStatement::ShowQueries)
        );
        assert_eq!(
            parse_weir_statement("stop query job").unwrap(),
            Some(WeirStatement::StopQuery { name: "job".into() })
        );
        assert_eq!(
            parse_weir_statement("DESCRIBE QUERY job").unwrap(),
            Some(WeirStatement::DescribeQuery { name: "job".into() })
        );
        assert_eq!(parse_weir_statement("DESCRIBE t").unwrap(), None);
    }

    #[test]
    fn delta_maintenance_statements() {
        assert_eq!(
            parse_weir_statement("optimize lake").unwrap(),
            Some(WeirStatement::Optimize {
                table: "lake".into()
            })
        );
        assert_eq!(
            parse_weir_statement("VACUUM lake RETAIN 168 HOURS DRY RUN;").unwrap(),
            Some(WeirStatement::Vacuum {
                table: "lake".into(),
                retain_hours: Some(168),
                dry_run: true
            })
        );
        assert_eq!(
            parse_weir_statement("VACUUM lake").unwrap(),
            Some(WeirStatement::Vacuum {
                table: "lake".into(),
                retain_hours: None,
                dry_run: false
            })
        );
        for bad in [
            "OPTIMIZE",
            "OPTIMIZE a b",
            "VACUUM",
            "VACUUM t RETAIN 1.5 HOURS",
            "VACUUM t DRY",
        ] {
            assert!(parse_weir_statement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_streaming_query() {
        let sql = "CREATE STREAMING QUERY job\n  WITH ('trigger' '5 seconds', 'checkpoint' '/tmp/cp')\n  AS INSERT INTO out SELECT * FROM src";
        assert_eq!(
            parse_weir_statement(sql).unwrap(),
            Some(WeirStatement::CreateStreamingQuery {
                name: "job".into(),
                options: vec![
                    ("trigger".into(), "5 seconds".into()),
                    ("checkpoint".into(), "/tmp/cp".into())
                ],
                insert: "INSERT INTO out SELECT * FROM src".into(),
            })
        );
        let plain =
            parse_weir_statement("CREATE STREAMING QUERY q AS INSERT INTO o SELECT 1").unwrap();
        assert!(
            matches!(plain, Some(WeirStatement::CreateStreamingQuery { options, .. }) if options.is_empty())
        );
        for bad in [
            "CREATE STREAMING QUERY q AS SELECT 1",
            "CREATE STREAMING QUERY q WITH ('a') AS INSERT INTO o SELECT 1",
            "CREATE STREAMING QUERY",
        ] {
            assert!(parse_weir_statement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kafka_tables_get_a_placeholder_location() {
        let sql = "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' 't');";
        let tokens = with_kafka_location(sql).unwrap().unwrap();
        let text: String = tokens.iter().map(|t| t.token.to_string()).collect();
        assert!(text.ends_with("LOCATION 'kafka:'"), "{text}");
        assert!(
            with_kafka_location("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'x'")
                .unwrap()
                .is_none()
        );
        assert!(with_kafka_location("SELECT 1").unwrap().is_none());
    }
}
