//! Partition paths `item=…/priority=…/`, escaped as Spark and Hive escape them.

/// Longest escaped value kept whole; longer values are cut and get a hash suffix.
pub(crate) const MAX_VALUE_LEN: usize = 128;

/// The value Hive writes for an empty partition value.
pub(crate) const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\u{7f}'
        || matches!(
            c,
            '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
        )
}

/// Escapes a partition value: percent-encodes control characters, DEL and
/// `" # % ' * / : = ? \ { [ ] ^` (spaces stay: `priority=very high`), turns an empty value into
/// `__HIVE_DEFAULT_PARTITION__`, and caps the length (a cut value ends in `~` and 16 hex digits
/// of a hash of the whole value, so two long values stay apart).
pub(crate) fn escape_partition_value(value: &str) -> String {
    if value.is_empty() {
        return DEFAULT_PARTITION.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if needs_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.len() <= MAX_VALUE_LEN {
        return out;
    }
    let mut cut = MAX_VALUE_LEN - 17;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}~{}",
        &out[..cut],
        stream_refdata_protocol::source_label(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_hive() {
        assert_eq!(escape_partition_value("very high"), "very high");
        assert_eq!(escape_partition_value("burger"), "burger");
        assert_eq!(escape_partition_value("a/b=c:d"), "a%2Fb%3Dc%3Ad");
        assert_eq!(escape_partition_value("50%"), "50%25");
        assert_eq!(escape_partition_value("x\ny\u{7f}"), "x%0Ay%7F");
        assert_eq!(
            escape_partition_value("#'*?\\{[]^\""),
            "%23%27%2A%3F%5C%7B%5B%5D%5E%22"
        );
        assert_eq!(escape_partition_value("crème brûlée"), "crème brûlée");
        assert_eq!(escape_partition_value(""), DEFAULT_PARTITION);
    }

    #[test]
    fn long_values_are_capped_and_stay_distinct() {
        let a = "x".repeat(500);
        let b = format!("{}y", "x".repeat(499));
        let (ea, eb) = (escape_partition_value(&a), escape_partition_value(&b));
        assert!(ea.len() <= MAX_VALUE_LEN && eb.len() <= MAX_VALUE_LEN);
        assert_ne!(ea, eb);
        let wide = "é".repeat(200);
        assert!(escape_partition_value(&wide).len() <= MAX_VALUE_LEN);
    }
}
