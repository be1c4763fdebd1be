//! Tables for people, JSON for machines.

use std::io::Write;

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
        Output::Json => out(&serde_json::to_string_pretty(rows).expect("rows serialize")),
        Output::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_BORDERS_ONLY)
                .set_header(header.to_vec());
            for row in rows {
                table.add_row(cells(row));
            }
            out(&table.to_string());
        }
    }
}

/// Prints one value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) {
    out(&serde_json::to_string_pretty(value).expect("values serialize"));
}

/// Writes a line to stdout; a reader that went away (`| head`) is not an error.
fn out(text: &str) {
    let _closed_pipe_is_fine = writeln!(std::io::stdout().lock(), "{text}");
}
