//! The sample Lambda events of the workspace's `events/` folder, which the README's walkthrough
//! and the function tests share.

/// The sample event `events/<name>` as JSON.
///
/// # Panics
/// If there is no such file or it is not JSON.
pub fn sample_event(name: &str) -> serde_json::Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}
