//! Batch objects: the calls one writer took from the queue at once, for one workspace and
//! day, in one object — one object to create instead of two per call (creating a small
//! file costs a local filesystem far more than writing its bytes; a remote store, one
//! request each).
//!
//! Each call inside is still sealed on its own, under the key it would have alone
//! (`<workspace>/<date>/<request id>.request|.response` as associated data), so a record
//! cannot be moved to another call or batch unnoticed and is opened without the others.
//!
//! ```text
//! key:    <workspace>/<date>/<lowest request id>_<highest request id>.batch
//! object: "FPB1" | { u16 id length | id | u32 length | sealed request | u32 length | sealed response }*
//! ```

const MAGIC: &[u8; 4] = b"FPB1";
/// The suffix of batch object keys.
pub const SUFFIX: &str = ".batch";

/// One call's sealed request and response, ready to be put in a batch.
pub struct SealedCall {
    /// The gateway request id.
    pub request_id: String,
    /// The request, sealed under `<prefix>.request`.
    pub request: Vec<u8>,
    /// The response, sealed under `<prefix>.response`.
    pub response: Vec<u8>,
}

/// The object key of a batch in `folder` (`<workspace>/<date>`) holding `ids`.
pub fn key<'a>(folder: &str, ids: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut ids = ids.into_iter();
    let first = ids.next()?;
    let (low, high) = ids.fold((first, first), |(low, high), id| {
        (low.min(id), high.max(id))
    });
    Some(format!("{folder}/{low}_{high}{SUFFIX}"))
}

/// Whether the batch named `name` (a file name, `<low>_<high>.batch`) may hold
/// `request_id`. Names it cannot read are kept as candidates.
pub fn may_hold(name: &str, request_id: &str) -> bool {
    let Some(range) = name.strip_suffix(SUFFIX) else {
        return false;
    };
    match range.split_once('_') {
        Some((low, high)) if !high.contains('_') => low <= request_id && request_id <= high,
        _ => true,
    }
}

/// Encodes sealed calls as one batch object.
pub fn encode(calls: &[SealedCall]) -> Vec<u8> {
    let size = calls
        .iter()
        .map(|c| 10 + c.request_id.len() + c.request.len() + c.response.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(MAGIC.len() + size);
    out.extend_from_slice(MAGIC);
    for call in calls {
        // Request ids are short (gateway ids are UUIDs); longer ones are refused upstream.
        let id = call.request_id.as_bytes();
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        for part in [&call.request, &call.response] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// The sealed request and response of `request_id` in a batch object (`None`: not in it,
/// or the object is not a readable batch).
pub fn find<'a>(object: &'a [u8], request_id: &str) -> Option<(&'a [u8], &'a [u8])> {
    let mut rest = object.strip_prefix(MAGIC.as_slice())?;
    while !rest.is_empty() {
        let id_len = usize::from(u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?));
        let id = take(&mut rest, id_len)?;
        let request = take_part(&mut rest)?;
        let response = take_part(&mut rest)?;
        if id == request_id.as_bytes() {
            return Some((request, response));
        }
    }
    None
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_part<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(take(rest, 4)?.try_into().ok()?);
    take(rest, usize::try_from(len).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_found_by_request_id_and_truncation_is_refused() {
        let calls = [
            SealedCall {
                request_id: "0190-b".into(),
                request: b"q1".to_vec(),
                response: b"a1".to_vec(),
            },
            SealedCall {
                request_id: "0190-a".into(),
                request: Vec::new(),
                response: b"a2".to_vec(),
            },
        ];
        let object = encode(&calls);
        assert_eq!(find(&object, "0190-b"), Some((&b"q1"[..], &b"a1"[..])));
        assert_eq!(find(&object, "0190-a"), Some((&b""[..], &b"a2"[..])));
        assert_eq!(find(&object, "0190-c"), None);
        assert_eq!(find(&object[..object.len() - 1], "0190-a"), None);
        assert_eq!(find(b"FPA1xxxx", "0190-a"), None);
    }

    #[test]
    fn keys_name_the_range_of_their_ids() {
        let named = key("acme/2030-01-01", ["0190-b", "0190-a", "0190-c"]).unwrap();
        assert_eq!(named, "acme/2030-01-01/0190-a_0190-c.batch");
        let name = named.rsplit('/').next().unwrap();
        assert!(may_hold(name, "0190-b"));
        assert!(!may_hold(name, "0190-d"));
        assert!(!may_hold("x.request", "0190-b"));
        assert!(key("acme/2030-01-01", std::iter::empty()).is_none());
    }
}
