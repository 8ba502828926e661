//! kubectl's tables (`kubectl get`, `api-resources`) read as rows of (column, cell), so tests
//! can assert on a column whatever the width of the others.

/// A kubectl table (`kubectl get`, `api-resources`) as rows of (column, cell), cut at the
/// header's column starts: kubectl's tabwriter aligns every cell under its header and pads
/// with at least three spaces, while headers like `NOMINATED NODE` hold single spaces.
pub fn table(text: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = header_columns(lines.next().unwrap_or(""));
    lines
        .map(|line| {
            header
                .iter()
                .enumerate()
                .map(|(c, (start, name))| {
                    let from = (*start).min(line.len());
                    let to = header
                        .get(c + 1)
                        .map(|(s, _)| *s)
                        .unwrap_or(line.len())
                        .min(line.len());
                    (
                        name.clone(),
                        line.get(from..to).unwrap_or("").trim().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The column names of a kubectl table's header (its first line).
pub fn columns(text: &str) -> Vec<String> {
    header_columns(text.lines().next().unwrap_or(""))
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

fn header_columns(header: &str) -> Vec<(usize, String)> {
    let bytes = header.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")) {
            let end = header[i..]
                .find("  ")
                .map(|e| i + e)
                .unwrap_or(header.len());
            out.push((i, header[i..end].to_string()));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// One cell of a table row.
pub fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}
