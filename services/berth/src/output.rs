//! Tables for people, JSON for machines.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::Table;
use serde::Serialize;

/// How listing commands print.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// Prints `rows` as a table with `header`, or as a JSON array.
pub fn print<T: Serialize>(
    output: Output,
    header: &[&str],
    rows: &[T],
    cells: impl Fn(&T) -> Vec<String>,
) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(rows).expect("rows serialize")
        ),
        Output::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_BORDERS_ONLY)
                .set_header(header.to_vec());
            for row in rows {
                table.add_row(cells(row));
            }
            println!("{table}");
        }
    }
}

/// Prints one value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("values serialize")
    );
}
