//! Size limits on what peers send: ids, numbers, names, free text, metadata and keys.
//!
//! Every decoder that takes a field from a peer (the protocol `convert` modules, the Calls API
//! bodies) checks it against one of these limits where the wire is decoded, so nothing larger
//! reaches a call, a record, the store or a log line. The limits are far above what real
//! gateways send and far below what would cost the switch memory or database space.

use serde_json::Value;
use thiserror::Error;

/// Call ids and references a peer gives a call: SmartIVR `conversation_id`, live-call
/// `call_id`, Ringover `call_id` (and its other names), Calls API `reference`. UUIDs and
/// provider call ids are well under 64 bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Phone numbers and addresses: `destination.target`, `customer_phone_number`, `hotline`,
/// Ringover `from`/`to`. Room for a SIP URI with parameters.
pub const MAX_ADDRESS_BYTES: usize = 256;

/// Names and free text shown with an address: `target_name`, `name`, `detail`.
pub const MAX_NAME_BYTES: usize = 256;

/// Workspace ids and gateway names, which routes match on.
pub const MAX_WORKSPACE_BYTES: usize = 128;

/// Short words a peer picks from a small set: an address `type`, `type_call`, a recording
/// `format`. Anything longer is not one of them.
pub const MAX_WORD_BYTES: usize = 32;

/// URLs a peer names (`url_audio_file`).
pub const MAX_URL_BYTES: usize = 2048;

/// A call's metadata (Ringover's first frame), serialized. It is kept whole in the call's
/// record and the store.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// How deeply metadata may nest (objects and arrays). Real metadata is two or three levels.
pub const MAX_METADATA_DEPTH: usize = 8;

/// DTMF keys in one message (SmartIVR `key_press`, a Ringover `dtmf` frame, a recording's
/// `end_of_key`). A person presses a few keys at a time; a longer string is a broken peer,
/// not thousands of key events.
pub const MAX_KEYS_PER_MESSAGE: usize = 32;

/// A field over its limit. The message names the field and the limit.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("{field} is {len} bytes long; the limit is {limit} bytes")]
    TooLong {
        field: String,
        len: usize,
        limit: usize,
    },
    #[error("{field} has {count} keys; the limit is {limit} keys per message")]
    TooManyKeys {
        field: String,
        count: usize,
        limit: usize,
    },
    #[error("{field} nests deeper than {limit} levels")]
    TooDeep { field: String, limit: usize },
}

/// Refuses `value` when it is longer than `limit` bytes.
pub fn check_len(field: &str, value: &str, limit: usize) -> Result<(), LimitError> {
    if value.len() > limit {
        return Err(LimitError::TooLong {
            field: field.to_owned(),
            len: value.len(),
            limit,
        });
    }
    Ok(())
}

/// Refuses a key string of more than `MAX_KEYS_PER_MESSAGE` characters.
pub fn check_keys(field: &str, keys: &str) -> Result<(), LimitError> {
    // Counting stops past the limit: a huge string costs no more than a short one.
    let count = keys.chars().take(MAX_KEYS_PER_MESSAGE + 1).count();
    if count > MAX_KEYS_PER_MESSAGE {
        return Err(LimitError::TooManyKeys {
            field: field.to_owned(),
            count: keys.chars().count(),
            limit: MAX_KEYS_PER_MESSAGE,
        });
    }
    Ok(())
}

/// How deeply `value` nests: 0 for a scalar, 1 for an object or array of scalars. Walks
/// without recursion, so any value can be measured.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
}

/// Refuses metadata that nests deeper than `MAX_METADATA_DEPTH` or is larger than
/// `MAX_METADATA_BYTES` once serialized.
pub fn check_metadata(field: &str, value: &Value) -> Result<(), LimitError> {
    if json_depth(value) > MAX_METADATA_DEPTH {
        return Err(LimitError::TooDeep {
            field: field.to_owned(),
            limit: MAX_METADATA_DEPTH,
        });
    }
    let len = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    if len > MAX_METADATA_BYTES {
        return Err(LimitError::TooLong {
            field: field.to_owned(),
            len,
            limit: MAX_METADATA_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_are_checked_in_bytes() {
        assert!(check_len("call_id", &"a".repeat(MAX_ID_BYTES), MAX_ID_BYTES).is_ok());
        let err = check_len("call_id", &"a".repeat(MAX_ID_BYTES + 1), MAX_ID_BYTES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "call_id is 129 bytes long; the limit is 128 bytes"
        );
    }

    #[test]
    fn keys_are_counted() {
        assert!(check_keys("key_press", &"1".repeat(MAX_KEYS_PER_MESSAGE)).is_ok());
        let err = check_keys("key_press", &"1".repeat(1000)).unwrap_err();
        assert!(err.to_string().contains("1000 keys"), "{err}");
        assert!(err.to_string().contains("32"), "{err}");
    }

    #[test]
    fn depth_and_size_of_metadata() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": 1})), 1);
        assert_eq!(json_depth(&json!({"a": [{"b": []}]})), 4);
        let mut deep = json!(1);
        for _ in 0..MAX_METADATA_DEPTH + 1 {
            deep = json!([deep]);
        }
        assert!(matches!(
            check_metadata("metadata", &deep),
            Err(LimitError::TooDeep { .. })
        ));
        let big = json!({ "x": "y".repeat(MAX_METADATA_BYTES) });
        assert!(matches!(
            check_metadata("metadata", &big),
            Err(LimitError::TooLong { .. })
        ));
        assert!(check_metadata("metadata", &json!({"call_id": "c"})).is_ok());
    }
}
