//! The fuzz targets on stable, for CI: each replays `fuzz/corpus/TARGET` and
//! `fuzz/regressions/TARGET` (every crash libFuzzer ever found goes there) and then a seeded
//! mutation run over valid inputs built here. The long runs are libFuzzer's, in `fuzz/`.
//!
//! `SHOAL_FUZZ_SMOKE_RUNS` sets the mutations per target (default 100,000);
//! `SHOAL_FUZZ_WRITE_SEEDS=1` writes the valid inputs into `fuzz/corpus/` as libFuzzer's seeds.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use shoal_fuzz::{FRAME_LIMIT, FUZZ_SECRET, TARGETS};
use shoal_net::client_api::ClientRequest;
use shoal_net::{encode_frame, Envelope};
use shoal_node::peer::{PeerRequest, PeerResponse};
use shoal_storage::{Object, Value};
use shoal_version::{ContextCodec, SiblingLimits, VersionVector};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn object(actors: &[&str], value: &'static [u8]) -> Object {
    let mut obj = Object {
        n: 3,
        ..Default::default()
    };
    for actor in actors {
        obj.siblings
            .write(
                actor,
                &VersionVector::new(),
                Value::Data(Bytes::from_static(value)),
                &SiblingLimits::default(),
            )
            .unwrap();
    }
    let ctx = obj.siblings.context();
    obj.siblings
        .write("n9", &ctx, Value::Tombstone, &SiblingLimits::default())
        .unwrap();
    obj.siblings
        .write(
            "n1",
            &VersionVector::new(),
            Value::Data(Bytes::from_static(b"late")),
            &SiblingLimits::default(),
        )
        .unwrap();
    obj
}

fn frame<T: serde::Serialize>(body: T) -> Vec<u8> {
    encode_frame(
        &Envelope {
            id: 42,
            timeout_ms: 5000,
            body,
        },
        FRAME_LIMIT,
    )
    .unwrap()
}

/// Valid inputs for each target: the starting points of the mutation run and libFuzzer's seeds.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let key = Bytes::from_static(b"user:1");
    let obj = object(&["n1", "n2"], b"value");
    match target {
        "peer_frame" => vec![
            frame(PeerRequest::Put {
                epoch: 3,
                key: key.clone(),
                object: obj.clone(),
            }),
            frame(PeerRequest::Merge {
                epoch: 3,
                objects: vec![
                    (key.clone(), obj.clone()),
                    (Bytes::from_static(b"k2"), object(&["n3"], b"x")),
                ],
            }),
            frame(PeerRequest::Get {
                epoch: 3,
                key: key.clone(),
            }),
            frame(PeerRequest::Ping),
            frame(PeerRequest::Fetch {
                partition: 7,
                from: Bytes::new(),
                n_min: 1,
                n_max: 3,
                max_bytes: 1 << 20,
            }),
            frame(PeerRequest::Reap {
                epoch: 3,
                partition: 3,
                keys: vec![(key.clone(), 99)],
            }),
            frame(PeerResponse::Chunk {
                objects: vec![(key.clone(), obj.clone())],
                resume: Some(Bytes::from_static(b"next")),
            }),
            frame(PeerResponse::Object(Some(obj.clone()))),
            frame(PeerResponse::Failed("disk full".into())),
        ],
        "client_frame" => vec![
            frame(ClientRequest::Put {
                key: key.clone(),
                value: Bytes::from_static(b"hello"),
                context: Some(ContextCodec::new(FUZZ_SECRET).encode(&obj.siblings.context())),
                n: Some(3),
                w: Some(2),
                timeout_ms: Some(1000),
                sloppy: Some(true),
                token: None,
            }),
            frame(ClientRequest::Get {
                key: key.clone(),
                n: Some(3),
                r: Some(2),
                timeout_ms: None,
                sloppy: None,
                token: None,
            }),
            frame(ClientRequest::Delete {
                key,
                context: None,
                n: None,
                w: Some(1),
                timeout_ms: None,
                sloppy: Some(false),
                token: None,
            }),
        ],
        "context_token" => {
            let codec = ContextCodec::new(FUZZ_SECRET);
            let ctx = obj.siblings.context();
            let mut signed = vec![0u8];
            signed.extend(codec.encode(&ctx).into_bytes());
            let mut payload = vec![1u8];
            payload.extend(rmp_serde::to_vec_named(&ctx).unwrap());
            vec![signed, payload, vec![0], vec![1]]
        }
        "object_encoding" => vec![obj.encode(), object(&["a"], b"").encode(), Object::default().encode()],
        "http_params" => [
            "n=3&w=2&timeout_ms=250&sloppy=true",
            "r=1",
            "n=5&r=3&sloppy=0",
            "timeout_ms=0",
            "n=300",
            "x=%ZZ",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        other => panic!("no seeds for {other}"),
    }
}

/// xorshift64*: the mutation run is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four libFuzzer-style mutations: bit flips, random bytes, interesting values,
/// insertions, deletions, duplications, truncation, and splices with another input.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0x00, 0xff, 0x7f, 0x80, 0xc0, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0xcf, 0xd3][rng.below(12)];
            }
            3 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next() as u8);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let chunk = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, chunk);
            }
            6 => out.truncate(rng.below(len + 1)),
            _ if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    out
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn every_target_survives_its_corpus_and_a_seeded_mutation_run() {
    let runs: usize = std::env::var("SHOAL_FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let write_seeds = std::env::var_os("SHOAL_FUZZ_WRITE_SEEDS").is_some();
    for &(name, target) in TARGETS {
        let seeds = seeds(name);
        if write_seeds {
            let dir = fuzz_dir().join("corpus").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
            }
        }
        let corpus = files_in(&fuzz_dir().join("corpus").join(name));
        let regressions = files_in(&fuzz_dir().join("regressions").join(name));
        for input in corpus.iter().chain(&regressions).chain(&seeds) {
            target(input);
        }
        let pool: Vec<&Vec<u8>> = seeds.iter().chain(&corpus).collect();
        let mut rng = Rng(0x5eed_0000 ^ ((name.len() as u64) << 32) ^ u64::from(name.as_bytes()[0]));
        for _ in 0..runs {
            let a = pool[rng.below(pool.len())];
            let b = pool[rng.below(pool.len())];
            target(&mutate(&mut rng, a, b));
        }
        eprintln!(
            "fuzz smoke: {name}: {} corpus, {} regression, {} seed inputs, {runs} mutations: no panic",
            corpus.len(),
            regressions.len(),
            seeds.len()
        );
    }
}
