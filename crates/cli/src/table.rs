//! kubectl-style tables: upper-case headers, columns padded to their widest cell, three spaces apart.

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.len());
                }
            }
        }
        let line = |cells: &[String]| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    out.push_str(&" ".repeat(widths[i] - cell.len() + 3));
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.headers);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["NAME", "READY"]);
        t.row(vec!["web-abc".into(), "1/1".into()]);
        t.row(vec!["x".into(), "0/2".into()]);
        assert_eq!(
            t.render(),
            "NAME      READY\nweb-abc   1/1\nx         0/2\n"
        );
    }
}
