//! Object keys as S3 event notifications carry them (URL-encoded).

/// An object key in a notification that is not validly encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object key {raw:?} is not a valid URL-encoded key: {reason}")]
pub struct KeyDecodeError {
    /// The key as the notification had it.
    pub raw: String,
    /// What was wrong.
    pub reason: &'static str,
}

/// Decodes an object key from a notification: `+` is a space, then strict percent-decoding
/// (`%2B` is a literal plus; an invalid escape such as `%zz` or bytes that are not UTF-8 are an
/// error, never a guessed key).
pub fn decode_key(raw: &str) -> Result<String, KeyDecodeError> {
    let err = |reason| KeyDecodeError {
        raw: raw.to_owned(),
        reason,
    };
    let spaced = raw.replace('+', " ");
    let bytes = spaced.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(err("a '%' is not followed by two hex digits"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| err("the decoded bytes are not UTF-8"))
}
