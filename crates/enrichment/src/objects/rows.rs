//! Reference objects in S3 to rows: JSON Lines or CSV with a header, optionally gzip.

use std::io::Read;

use serde::de::value::{Error as DeError, MapDeserializer};
use serde::de::{
    DeserializeOwned, Deserializer, Error as _, IntoDeserializer, Unexpected, Visitor,
};

/// A row that did not parse: which object, which line, why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key} line {line}: {reason}")]
pub struct RowError {
    /// The object key.
    pub key: String,
    /// 1-based line number in the (decompressed) object.
    pub line: u64,
    /// What was wrong.
    pub reason: String,
}

/// An object that cannot be read as rows at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ObjectError {
    /// The object key.
    pub key: String,
    /// What was wrong.
    pub reason: String,
}

/// The row format, from the key's extension (after an optional `.gz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.jsonl`, `.ndjson`, `.json`: one JSON object per line.
    JsonLines,
    /// `.csv`: a header line, then rows.
    Csv,
}

/// The format of `key` and whether it is gzip-compressed (by extension or `Content-Encoding`).
pub fn format_of(key: &str, content_encoding: Option<&str>) -> Result<(Format, bool), ObjectError> {
    let lower = key.to_ascii_lowercase();
    let (base, gz) = match lower.strip_suffix(".gz") {
        Some(b) => (b.to_owned(), true),
        None => (
            lower,
            content_encoding.is_some_and(|e| e.eq_ignore_ascii_case("gzip")),
        ),
    };
    let format = if base.ends_with(".jsonl") || base.ends_with(".ndjson") || base.ends_with(".json")
    {
        Format::JsonLines
    } else if base.ends_with(".csv") {
        Format::Csv
    } else {
        return Err(ObjectError {
            key: key.to_owned(),
            reason: "unknown format: expected .jsonl, .ndjson, .json or .csv (optionally .gz)"
                .into(),
        });
    };
    Ok((format, gz))
}

/// Rows of an object: (line number, the value or the error of that line).
pub type Rows<T> = Vec<(u64, Result<T, RowError>)>;

/// Parses an object's bytes into rows; each row is a value or the error of that line.
pub fn parse_rows<T: DeserializeOwned>(
    key: &str,
    bytes: &[u8],
    content_encoding: Option<&str>,
) -> Result<Rows<T>, ObjectError> {
    parse_keyed_rows(key, bytes, content_encoding, None)
}

/// [`parse_rows`], where a CSV object whose header lacks `key_column` is an [`ObjectError`]
/// naming that column (the rows of a misspelled header would all be without a key).
pub fn parse_keyed_rows<T: DeserializeOwned>(
    key: &str,
    bytes: &[u8],
    content_encoding: Option<&str>,
    key_column: Option<&str>,
) -> Result<Rows<T>, ObjectError> {
    let (format, gz) = format_of(key, content_encoding)?;
    let object_error = |reason: String| ObjectError {
        key: key.to_owned(),
        reason,
    };
    let mut decompressed = Vec::new();
    let bytes = if gz {
        // Every member: many tools write several (`gzip -c a b`, concatenated parts). A stream
        // cut short is an error, so the object is rejected, never read in part.
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut decompressed)
            .map_err(|e| object_error(format!("not valid gzip: {e}")))?;
        &decompressed[..]
    } else {
        bytes
    };
    let row_error = |line: u64, reason: String| RowError {
        key: key.to_owned(),
        line,
        reason,
    };
    match format {
        Format::JsonLines => Ok(bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| {
                let n = i as u64 + 1;
                (
                    n,
                    serde_json::from_slice(line).map_err(|e| row_error(n, e.to_string())),
                )
            })
            .collect()),
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(bytes);
            let headers = reader
                .headers()
                .map_err(|e| object_error(format!("bad CSV header: {e}")))?
                .clone();
            if let Some(column) = key_column.filter(|c| !headers.iter().any(|h| h == *c)) {
                let header = headers.iter().collect::<Vec<_>>().join(",");
                return Err(object_error(format!(
                    "the header has no key column `{column}` (it has: {header})"
                )));
            }
            Ok(reader
                .records()
                .enumerate()
                .map(|(i, record)| {
                    let n = |p: Option<&csv::Position>| p.map_or(i as u64 + 2, |p| p.line());
                    match record {
                        Ok(record) => {
                            let n = n(record.position());
                            let cells = headers.iter().zip(record.iter().map(Cell));
                            let row = T::deserialize(MapDeserializer::new(cells));
                            (n, row.map_err(|e| row_error(n, e.to_string())))
                        }
                        Err(e) => {
                            let n = n(e.position());
                            (n, Err(row_error(n, e.to_string())))
                        }
                    }
                })
                .collect())
        }
    }
}

/// One CSV cell: its text, as written. A field the row type declares as a number or a bool is
/// parsed as one (an empty cell of an `Option` is `None`); anything untyped (a map of JSON
/// values, a string) gets the text itself, so `0042` stays `"0042"` and `1.50` stays `"1.50"`.
/// (The csv crate's own deserializer guesses a type for untyped cells.) A field reached through
/// `#[serde(flatten)]` or an untagged enum is read untyped by serde first, so it sees the text:
/// declare number and bool columns as fields of the row type itself.
struct Cell<'a>(&'a str);

impl<'de> IntoDeserializer<'de, DeError> for Cell<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Parses the cell as the number type the visitor asks for.
macro_rules! parse_number {
    ($($method:ident $visit:ident $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.0.trim().parse::<$ty>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => Err(DeError::invalid_value(Unexpected::Str(self.0), &visitor)),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Cell<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    parse_number! {
        deserialize_bool visit_bool bool,
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_i128 visit_i128 i128,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64,
        deserialize_u128 visit_u128 u128,
        deserialize_f32 visit_f32 f32, deserialize_f64 visit_f64 f64,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct P {
        item: String,
        price: u32,
    }

    #[test]
    fn json_lines_with_a_bad_row_name_its_line() {
        let body = b"{\"item\":\"a\",\"price\":1}\n\n{\"item\":\"b\",\"price\":\"x\"}\n{\"item\":\"c\",\"price\":3}\n";
        let rows = parse_rows::<P>("ref/p.jsonl", body, None).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].1.is_ok());
        let err = rows[1].1.as_ref().unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (3, "ref/p.jsonl"));
        assert!(err.to_string().starts_with("ref/p.jsonl line 3:"), "{err}");
    }

    #[test]
    fn csv_with_header_and_a_bad_row() {
        let body = b"item,price\nburger,100\npizza,cheap\n";
        let rows = parse_rows::<P>("ref/p.csv", body, None).unwrap();
        assert_eq!(
            rows[0].1.as_ref().unwrap(),
            &P {
                item: "burger".into(),
                price: 100
            }
        );
        assert_eq!(rows[1].1.as_ref().unwrap_err().line, 3);
    }

    #[test]
    fn gzip_by_extension_or_content_encoding() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"item,price\nsalad,5\n").unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(
            parse_rows::<P>("ref/p.csv.gz", &bytes, None).unwrap().len(),
            1
        );
        assert_eq!(
            parse_rows::<P>("ref/p.csv", &bytes, Some("gzip"))
                .unwrap()
                .len(),
            1
        );
        let err = parse_rows::<P>("ref/p.csv.gz", b"plain", None).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }

    fn gzip(body: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn every_gzip_member_is_read_and_a_truncated_stream_rejects_the_object() {
        // `gzip -c a b` or concatenated `.gz` parts: one object, several members.
        let mut bytes = gzip(b"item,price\nsalad,5\n");
        bytes.extend(gzip(b"burger,100\n"));
        bytes.extend(gzip(b"pizza,7\n"));
        let rows = parse_rows::<P>("ref/p.csv.gz", &bytes, None).unwrap();
        let items: Vec<String> = rows.into_iter().map(|(_, r)| r.unwrap().item).collect();
        assert_eq!(items, ["salad", "burger", "pizza"]);
        // Cut inside the last member: the object is rejected, not read in part.
        let cut = &bytes[..bytes.len() - 6];
        let err = parse_rows::<P>("ref/p.csv.gz", cut, None).unwrap_err();
        assert!(err.to_string().contains("not valid gzip"), "{err}");
    }

    #[test]
    fn csv_cells_stay_their_text_unless_the_type_declares_a_number() {
        // An untyped row (a map of JSON values): every cell is the object's own text.
        type Untyped = std::collections::BTreeMap<String, serde_json::Value>;
        let body = b"item,code,price,vegan,note\n0042,007,1.50,true,\n";
        let rows = parse_rows::<Untyped>("ref/p.csv", body, None).unwrap();
        let row = rows[0].1.as_ref().unwrap();
        for (column, text) in [
            ("item", "0042"),
            ("code", "007"),
            ("price", "1.50"),
            ("vegan", "true"),
            ("note", ""),
        ] {
            assert_eq!(row[column], serde_json::Value::from(text), "{column}");
        }
        // A declared type reads its number, an option its absence, and a bad cell names it.
        #[derive(Debug, serde::Deserialize, PartialEq)]
        struct Typed {
            item: String,
            price: f64,
            vegan: bool,
            note: Option<u32>,
        }
        let rows = parse_rows::<Typed>("ref/p.csv", body, None).unwrap();
        assert_eq!(
            rows[0].1.as_ref().unwrap(),
            &Typed {
                item: "0042".into(),
                price: 1.5,
                vegan: true,
                note: None
            }
        );
        let rows = parse_rows::<P>("ref/p.csv", b"item,price\nsalad,cheap\n", None).unwrap();
        let err = rows[0].1.as_ref().unwrap_err();
        assert!(err.to_string().contains("cheap"), "{err}");
    }

    #[test]
    fn a_csv_header_without_the_key_column_rejects_the_object_by_name() {
        let body = b"itme,price\nsalad,5\n";
        let err = parse_keyed_rows::<P>("ref/p.csv", body, None, Some("item")).unwrap_err();
        assert!(
            err.to_string()
                .contains("no key column `item` (it has: itme,price)"),
            "{err}"
        );
        assert!(parse_keyed_rows::<P>("ref/p.csv", b"item,price\n", None, Some("item")).is_ok());
    }

    #[test]
    fn wrong_encoding_and_unknown_formats_are_errors() {
        assert!(parse_rows::<P>("ref/p.parquet", b"", None).is_err());
        let rows = parse_rows::<P>("ref/p.jsonl", b"\xff\xfe{\"item\":1}\n", None).unwrap();
        assert!(rows[0].1.is_err());
    }
}
