//! Splits one CSV message (one row) into fields.

use std::borrow::Cow;

use memchr::memmem;
use routine_load_api::load_plan::CsvOptions;

/// Splits rows with fixed options; keeps its searcher and buffers between rows.
pub struct CsvSplitter {
    separator: Vec<u8>,
    finder: memmem::Finder<'static>,
    row_delimiter: Vec<u8>,
    enclose: Option<u8>,
    escape: Option<u8>,
    trim_space: bool,
}

impl CsvSplitter {
    pub fn new(options: &CsvOptions) -> Self {
        Self {
            separator: options.column_separator.clone(),
            finder: memmem::Finder::new(&options.column_separator).into_owned(),
            row_delimiter: options.row_delimiter.clone(),
            enclose: options.enclose,
            escape: options.escape,
            trim_space: options.trim_space,
        }
    }

    /// Splits `payload` into `fields` (cleared first). One message is one row: a trailing row
    /// delimiter is tolerated, not a second row.
    pub fn split<'a>(&self, payload: &'a [u8], fields: &mut Vec<Cow<'a, [u8]>>) {
        fields.clear();
        let row = payload
            .strip_suffix(self.row_delimiter.as_slice())
            .unwrap_or(payload);
        if self.enclose.is_some() {
            self.split_enclosed(row, fields);
            return;
        }
        let mut start = 0;
        if self.separator.len() == 1 {
            let sep = self.separator[0];
            for end in memchr::memchr_iter(sep, row) {
                fields.push(Cow::Borrowed(self.trim(&row[start..end])));
                start = end + 1;
            }
        } else {
            for end in self.finder.find_iter(row) {
                if end < start {
                    continue;
                }
                fields.push(Cow::Borrowed(self.trim(&row[start..end])));
                start = end + self.separator.len();
            }
        }
        fields.push(Cow::Borrowed(self.trim(&row[start..])));
    }

    #[inline]
    fn trim<'a>(&self, field: &'a [u8]) -> &'a [u8] {
        if self.trim_space {
            field.trim_ascii()
        } else {
            field
        }
    }

    /// The slow path for `enclose`: a field wrapped in the enclose byte may contain separators;
    /// the escape byte (or a doubled enclose byte) stands for a literal enclose byte.
    fn split_enclosed<'a>(&self, row: &'a [u8], fields: &mut Vec<Cow<'a, [u8]>>) {
        let enclose = self.enclose.expect("called with enclose set");
        let sep = self.separator.as_slice();
        let mut i = 0;
        loop {
            // Leading spaces before an enclosed field are skipped when trimming.
            let mut field_start = i;
            if self.trim_space {
                while field_start < row.len() && row[field_start] == b' ' {
                    field_start += 1;
                }
            }
            if row.get(field_start) == Some(&enclose) {
                let mut value = Vec::new();
                let mut j = field_start + 1;
                let mut closed = false;
                while j < row.len() {
                    let b = row[j];
                    if Some(b) == self.escape && j + 1 < row.len() {
                        value.push(row[j + 1]);
                        j += 2;
                    } else if b == enclose {
                        if row.get(j + 1) == Some(&enclose) {
                            value.push(enclose);
                            j += 2;
                        } else {
                            closed = true;
                            j += 1;
                            break;
                        }
                    } else {
                        value.push(b);
                        j += 1;
                    }
                }
                if !closed {
                    // An unterminated enclosure is taken literally, as StarRocks does.
                    fields.push(Cow::Borrowed(self.trim(&row[field_start..])));
                    return;
                }
                // Skip to the next separator (trailing spaces after the closing enclose).
                match find(&row[j..], sep) {
                    Some(k) => {
                        fields.push(Cow::Owned(value));
                        i = j + k + sep.len();
                    }
                    None => {
                        fields.push(Cow::Owned(value));
                        return;
                    }
                }
            } else {
                match find(&row[i..], sep) {
                    Some(k) => {
                        fields.push(Cow::Borrowed(self.trim(&row[i..i + k])));
                        i += k + sep.len();
                    }
                    None => {
                        fields.push(Cow::Borrowed(self.trim(&row[i..])));
                        return;
                    }
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(options: CsvOptions, row: &str) -> Vec<String> {
        let splitter = CsvSplitter::new(&options);
        let mut fields = Vec::new();
        splitter.split(row.as_bytes(), &mut fields);
        fields
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect()
    }

    fn options(sep: &str) -> CsvOptions {
        CsvOptions {
            column_separator: sep.as_bytes().to_vec(),
            row_delimiter: b"\n".to_vec(),
            enclose: None,
            escape: None,
            trim_space: false,
        }
    }

    #[test]
    fn splits_on_single_and_multi_byte_separators() {
        assert_eq!(split(options(","), "a,b,,c"), ["a", "b", "", "c"]);
        assert_eq!(split(options("||"), "a||b||c"), ["a", "b", "c"]);
        assert_eq!(split(options("||"), "a|||b"), ["a", "|b"]);
        assert_eq!(split(options(","), ""), [""]);
    }

    #[test]
    fn a_trailing_row_delimiter_is_not_a_second_row() {
        assert_eq!(split(options(","), "a,b\n"), ["a", "b"]);
        let mut crlf = options(",");
        crlf.row_delimiter = b"\r\n".to_vec();
        assert_eq!(split(crlf, "a,b\r\n"), ["a", "b"]);
    }

    #[test]
    fn enclose_escape_and_trim() {
        let mut o = options(",");
        o.enclose = Some(b'"');
        o.escape = Some(b'\\');
        assert_eq!(
            split(o.clone(), r#""a,b",c,"say \"hi\"","x""y""#),
            ["a,b", "c", "say \"hi\"", "x\"y"]
        );
        assert_eq!(split(o.clone(), r#""open,b"#), ["\"open,b"]);
        o.trim_space = true;
        assert_eq!(split(o, r#"  "a" , b "#), ["a", "b"]);
        let mut t = options(",");
        t.trim_space = true;
        assert_eq!(split(t, " a , b"), ["a", "b"]);
    }
}
