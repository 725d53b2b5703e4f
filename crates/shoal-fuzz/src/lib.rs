//! Fuzz targets: every decoder that reads bytes a node does not control.
//!
//! | target | what arrives from outside | decoder |
//! |---|---|---|
//! | `peer_frame` | a peer's QUIC stream (after mutual TLS) | [`shoal_net::decode_frame`] of [`PeerRequest`] and [`PeerResponse`] |
//! | `client_frame` | a client's QUIC stream | [`shoal_net::decode_frame`] of [`ClientRequest`] |
//! | `context_token` | the `X-Shoal-Context` header / QUIC `context` field | [`ContextCodec::decode`] |
//! | `object_encoding` | a RocksDB record (disk corruption) | [`Object::decode`] |
//! | `http_params` | an HTTP query string | [`shoal_node::http_api::parse_params`] |
//!
//! Each target must never panic on any input, and checks what it can about what decodes: it
//! re-encodes to bytes that decode to the same thing, and objects that pass validation merge
//! with themselves to themselves (the DVV join is idempotent). The targets run under libFuzzer
//! through `fuzz/` (`cargo +nightly fuzz run TARGET`), and on stable in this crate's tests,
//! which replay the committed corpus and regressions and a seeded mutation run, so CI smokes
//! every target without a nightly toolchain.

use shoal_net::client_api::ClientRequest;
use shoal_net::{decode_frame, encode_frame, Envelope};
use shoal_node::peer::{PeerRequest, PeerResponse};
use shoal_storage::Object;
use shoal_version::ContextCodec;

/// The frame limit the fuzz targets decode under (the node default is larger; a smaller one
/// keeps the fuzzer off multi-megabyte allocations without changing what is parsed).
pub const FRAME_LIMIT: usize = 1 << 20;

/// The secret the context-token target signs with.
pub const FUZZ_SECRET: &[u8] = b"shoal fuzz secret";

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/` and the smoke test run them.
pub const TARGETS: &[(&str, Target)] = &[
    ("peer_frame", peer_frame),
    ("client_frame", client_frame),
    ("context_token", context_token),
    ("object_encoding", object_encoding),
    ("http_params", http_params),
];

/// What decoded must survive a round trip: encode, decode, encode gives the same bytes.
fn round_trips<T>(env: &Envelope<T>)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    // Everything that decoded under the limit re-encodes; named msgpack may be a little
    // larger than a compact input, so allow for it.
    let Ok(bytes) = encode_frame(env, usize::MAX) else {
        panic!("a decoded envelope does not encode");
    };
    let back: Envelope<T> = decode_frame(&bytes, usize::MAX).expect("a re-encoded envelope decodes");
    let again = encode_frame(&back, usize::MAX).expect("and encodes again");
    assert_eq!(bytes, again, "encode ∘ decode is not stable");
}

/// The checks every object from outside gets: validation never panics, and a valid object
/// joins with itself to itself and survives the disk encoding.
fn check_object(obj: &Object) {
    if obj.siblings.validate().is_err() {
        return;
    }
    let mut joined = obj.clone();
    joined.merge(obj);
    assert_eq!(&joined, obj, "merging an object with itself changed it");
    let _ = obj.siblings.context();
    let _ = obj.is_deleted();
    let decoded = Object::decode(&obj.encode()).expect("a valid object survives its disk encoding");
    assert_eq!(&decoded, obj);
}

fn request_objects(req: &PeerRequest) -> Vec<&Object> {
    match req {
        PeerRequest::Put { object, .. } | PeerRequest::Hint { object, .. } => vec![object],
        PeerRequest::Merge { objects, .. } => objects.iter().map(|(_, o)| o).collect(),
        _ => Vec::new(),
    }
}

fn response_objects(resp: &PeerResponse) -> Vec<&Object> {
    match resp {
        PeerResponse::Object(Some(o)) => vec![o],
        PeerResponse::Chunk { objects, .. } => objects.iter().map(|(_, o)| o).collect(),
        PeerResponse::Objects(objects) => objects.iter().filter_map(|(_, o)| o.as_ref()).collect(),
        _ => Vec::new(),
    }
}

/// A frame from a peer, read as the request a serving node expects and as the response a
/// calling node expects.
pub fn peer_frame(data: &[u8]) {
    if let Ok(env) = decode_frame::<PeerRequest>(data, FRAME_LIMIT) {
        request_objects(&env.body).into_iter().for_each(check_object);
        round_trips(&env);
    }
    if let Ok(env) = decode_frame::<PeerResponse>(data, FRAME_LIMIT) {
        response_objects(&env.body).into_iter().for_each(check_object);
        round_trips(&env);
    }
}

/// A frame from a client on the QUIC API.
pub fn client_frame(data: &[u8]) {
    if let Ok(env) = decode_frame::<ClientRequest>(data, FRAME_LIMIT) {
        round_trips(&env);
    }
}

/// A causal-context token. The first byte picks the mode: even, the rest is the token as a
/// client sent it (almost never correctly signed, so this exercises the length, base64,
/// version and signature checks); odd, the rest is a payload that gets signed with the fuzz
/// secret first, so the fuzzer reaches the msgpack decoder and the content checks behind the
/// signature.
pub fn context_token(data: &[u8]) {
    let codec = ContextCodec::new(FUZZ_SECRET);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        }
    } else {
        codec.seal_payload(rest)
    };
    if let Ok(ctx) = codec.decode(&token) {
        let again = codec.encode(&ctx);
        assert_eq!(codec.decode(&again).expect("a re-encoded context decodes"), ctx);
    }
}

/// A stored object record, as RocksDB hands it back (possibly corrupt).
pub fn object_encoding(data: &[u8]) {
    if let Ok(obj) = Object::decode(data) {
        check_object(&obj);
    }
}

/// A kv request's query string, parsed for reads (`r`) and for writes (`w`).
pub fn http_params(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    for quorum in ["r", "w"] {
        if let Err(e) = shoal_node::http_api::parse_params(Some(query), quorum) {
            assert_eq!(e.status, 400, "a bad query string is a 400: {e:?}");
        }
    }
}
