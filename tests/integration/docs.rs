//! The option reference in docs/ lists exactly the options the code accepts, with their defaults.

use weir::kafka::KAFKA_TABLE_OPTIONS;

#[test]
fn every_kafka_option_is_documented_with_its_default() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/kafka-options.md"
    ))
    .unwrap();
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    for option in KAFKA_TABLE_OPTIONS {
        let row = rows
            .iter()
            .find(|r| r[0] == format!("`{}`", option.name))
            .unwrap_or_else(|| panic!("docs/kafka-options.md has no row for `{}`", option.name));
        assert_eq!(row[1], option.default, "default of {}", option.name);
    }
    for row in &rows {
        let name = row[0].trim_matches('`');
        let known =
            KAFKA_TABLE_OPTIONS.iter().any(|o| o.name == name) || name.starts_with("kafka.");
        assert!(
            known,
            "docs/kafka-options.md documents `{name}`, which the code does not accept"
        );
    }
}
