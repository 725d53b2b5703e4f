//! Property tests over sibling sets reachable by simulated replicas, and over
//! the context token codec.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::sample::Index;
use shoal_version::{
    ContextCodec, ContextError, Dot, SiblingLimits, SiblingSet, VersionError, VersionVector, MAX_CONTEXT_TOKEN_BYTES,
};

/// Replica `i` coordinates writes as actor `ACTORS[i]`.
const ACTORS: [&str; 3] = ["n1", "n2", "n3"];

const UNLIMITED: SiblingLimits = SiblingLimits {
    warn: usize::MAX,
    max: usize::MAX,
};

/// Which context a simulated client writes with.
#[derive(Clone, Debug)]
enum Ctx {
    /// It read from the coordinating replica.
    Own,
    /// It read nothing (a blind write).
    Empty,
    /// It read from another replica.
    Other(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Write { at: usize, ctx: Ctx, value: u32 },
    Merge { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let ctx = prop_oneof![Just(Ctx::Own), Just(Ctx::Empty), (0..3usize).prop_map(Ctx::Other)];
    prop_oneof![
        3 => (0..3usize, ctx, any::<u32>())
            .prop_map(|(at, ctx, value)| Op::Write { at, ctx, value }),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Merge { from, to }),
    ]
}

/// The outcome of one simulated history.
#[derive(Clone, Debug)]
struct Run {
    /// Each replica's final state.
    replicas: [SiblingSet<u32>; 3],
    /// Every state any replica passed through, final ones included.
    seen: Vec<SiblingSet<u32>>,
}

fn simulate(ops: Vec<Op>) -> Run {
    let mut replicas: [SiblingSet<u32>; 3] = Default::default();
    let mut seen = vec![SiblingSet::new()];
    for op in ops {
        let changed = match op {
            Op::Write { at, ctx, value } => {
                let ctx = match ctx {
                    Ctx::Own => replicas[at].context(),
                    Ctx::Empty => VersionVector::new(),
                    Ctx::Other(i) => replicas[i].context(),
                };
                replicas[at]
                    .write(ACTORS[at], &ctx, value, &UNLIMITED)
                    .expect("unlimited write");
                at
            }
            Op::Merge { from, to } => {
                let source = replicas[from].clone();
                replicas[to].merge(&source);
                to
            }
        };
        seen.push(replicas[changed].clone());
    }
    Run { replicas, seen }
}

fn run() -> impl Strategy<Value = Run> {
    prop::collection::vec(op(), 0..40).prop_map(simulate)
}

fn merged(a: &SiblingSet<u32>, b: &SiblingSet<u32>) -> SiblingSet<u32> {
    let mut m = a.clone();
    m.merge(b);
    m
}

fn dots(set: &SiblingSet<u32>) -> BTreeSet<Dot> {
    set.siblings().iter().map(|s| s.dot.clone()).collect()
}

/// Two distinct replica indices.
fn two_replicas() -> impl Strategy<Value = (usize, usize)> {
    (0..3usize, 1..3usize).prop_map(|(k, d)| (k, (k + d) % 3))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn reachable_sets_are_valid_antichains(run in run()) {
        for set in &run.seen {
            prop_assert_eq!(set.validate(), Ok(()));
        }
    }

    #[test]
    fn merge_is_commutative(run in run(), i in any::<Index>(), j in any::<Index>()) {
        let a = i.get(&run.seen);
        let b = j.get(&run.seen);
        prop_assert_eq!(merged(a, b), merged(b, a));
    }

    #[test]
    fn merge_is_associative(
        run in run(), i in any::<Index>(), j in any::<Index>(), k in any::<Index>()
    ) {
        let (a, b, c) = (i.get(&run.seen), j.get(&run.seen), k.get(&run.seen));
        prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
    }

    #[test]
    fn merge_is_idempotent(run in run(), i in any::<Index>(), j in any::<Index>()) {
        let a = i.get(&run.seen);
        let b = j.get(&run.seen);
        prop_assert_eq!(&merged(a, a), a);
        let ab = merged(a, b);
        prop_assert_eq!(&merged(&ab, b), &ab);
    }

    #[test]
    fn merge_covers_both_inputs_and_stays_valid(
        run in run(), i in any::<Index>(), j in any::<Index>()
    ) {
        let a = i.get(&run.seen);
        let b = j.get(&run.seen);
        let ab = merged(a, b);
        prop_assert!(ab.covers(a));
        prop_assert!(ab.covers(b));
        prop_assert_eq!(ab.validate(), Ok(()));
        // `covers` is exactly "merging changes nothing".
        prop_assert_eq!(a.covers(b), &ab == a);
        prop_assert_eq!(b.covers(a), &ab == b);
    }

    #[test]
    fn context_covers_every_sibling(run in run(), i in any::<Index>()) {
        let set = i.get(&run.seen);
        let ctx = set.context();
        for s in set.siblings() {
            prop_assert!(ctx.covers(&s.dot));
            prop_assert!(ctx.descends(&s.past));
        }
    }

    #[test]
    fn write_with_read_context_supersedes_exactly_what_was_read(
        run in run(), (k, j) in two_replicas(), other_blind in any::<bool>(),
        v in any::<u32>(), w in any::<u32>()
    ) {
        let mut s = run.replicas[k].clone();
        let read = s.clone();
        let ctx = s.context();

        // A concurrent write the read did not see.
        let mut other = run.replicas[j].clone();
        let other_ctx = if other_blind { VersionVector::new() } else { other.context() };
        let w1 = other.write(ACTORS[j], &other_ctx, w, &UNLIMITED).unwrap().dot;

        let v_dot = s.write(ACTORS[k], &ctx, v, &UNLIMITED).unwrap().dot;
        prop_assert_eq!(s.len(), 1);
        s.merge(&other);

        let result = dots(&s);
        prop_assert!(result.contains(&v_dot));
        prop_assert!(result.contains(&w1));
        for seen in dots(&read) {
            prop_assert!(!result.contains(&seen), "{} survived a write that saw it", seen);
        }
        // Merging in the other order agrees.
        let mut from_other = other.clone();
        from_other.merge(&s);
        prop_assert_eq!(from_other, s);
    }

    #[test]
    fn blind_write_keeps_every_sibling_and_adds_one(
        run in run(), k in 0..3usize, v in any::<u32>()
    ) {
        let mut s = run.replicas[k].clone();
        let before = dots(&s);
        let out = s.write(ACTORS[k], &VersionVector::new(), v, &UNLIMITED).unwrap();
        prop_assert_eq!(s.len(), before.len() + 1);
        prop_assert_eq!(out.siblings, s.len());
        let after = dots(&s);
        prop_assert!(after.is_superset(&before));
        prop_assert!(after.contains(&out.dot));
        prop_assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn two_blind_writes_then_a_merged_context_write_resolve_to_one(
        run in run(), (k, j) in two_replicas(), x in any::<u32>(), y in any::<u32>(),
        z in any::<u32>()
    ) {
        let empty = VersionVector::new();
        let mut a = run.replicas[k].clone();
        let mut b = run.replicas[j].clone();
        let da = a.write(ACTORS[k], &empty, x, &UNLIMITED).unwrap().dot;
        let db = b.write(ACTORS[j], &empty, y, &UNLIMITED).unwrap().dot;
        a.merge(&b);
        let both = dots(&a);
        prop_assert!(both.contains(&da) && both.contains(&db));

        let out = a.write(ACTORS[k], &a.context(), z, &UNLIMITED).unwrap();
        prop_assert_eq!(out.siblings, 1);
        prop_assert_eq!(a.values().copied().collect::<Vec<_>>(), vec![z]);
        b.merge(&a);
        prop_assert_eq!(b, a);
    }

    #[test]
    fn sibling_limits_are_enforced(warn in 0usize..8, max in 0usize..8, writes in 1usize..12) {
        let limits = SiblingLimits { warn, max };
        let mut s = SiblingSet::new();
        for i in 0..writes {
            // Blind writes supersede nothing, so each adds one sibling.
            let count = s.len() + 1;
            let before = s.clone();
            match s.write("n1", &VersionVector::new(), i as u32, &limits) {
                Ok(out) => {
                    prop_assert!(count <= max);
                    prop_assert_eq!(out.siblings, count);
                    prop_assert_eq!(out.warn, count > warn);
                }
                Err(err) => {
                    prop_assert!(count > max);
                    prop_assert_eq!(s.len(), max);
                    prop_assert_eq!(err, VersionError::TooManySiblings {
                        count,
                        limit: max,
                        context: before.context(),
                    });
                    prop_assert_eq!(&s, &before);
                }
            }
        }
    }

    #[test]
    fn reachable_sets_survive_named_msgpack(run in run(), i in any::<Index>()) {
        let set = i.get(&run.seen);
        let bytes = rmp_serde::to_vec_named(set).unwrap();
        let back: SiblingSet<u32> = rmp_serde::from_slice(&bytes).unwrap();
        prop_assert_eq!(back.validate(), Ok(()));
        prop_assert_eq!(&back, set);
    }
}

fn version_vector() -> impl Strategy<Value = VersionVector> {
    prop::collection::vec(("[a-z0-9]{1,8}", 1..=u64::MAX), 0..12).prop_map(|entries| entries.into_iter().collect())
}

fn codec() -> ContextCodec {
    ContextCodec::new(b"shoal test secret")
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn token_round_trips(ctx in version_vector()) {
        let c = codec();
        let token = c.encode(&ctx);
        prop_assert!(token.len() <= MAX_CONTEXT_TOKEN_BYTES);
        prop_assert_eq!(c.decode(&token), Ok(ctx));
    }

    #[test]
    fn any_changed_character_is_refused(
        ctx in version_vector(), at in any::<Index>(), with in any::<Index>()
    ) {
        let c = codec();
        let mut token = c.encode(&ctx).into_bytes();
        let at = at.index(token.len());
        let replacement = ALPHABET
            .iter()
            .copied()
            .filter(|&b| b != token[at])
            .nth(with.index(ALPHABET.len() - 1))
            .unwrap();
        token[at] = replacement;
        prop_assert!(c.decode(std::str::from_utf8(&token).unwrap()).is_err());
    }

    #[test]
    fn any_flipped_byte_is_refused(
        ctx in version_vector(), at in any::<Index>(), mask in 1u8..=255
    ) {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let c = codec();
        let mut bytes = engine.decode(c.encode(&ctx)).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(c.decode(&engine.encode(&bytes)).is_err());
    }

    #[test]
    fn truncated_tokens_are_refused(ctx in version_vector(), keep in any::<Index>()) {
        let c = codec();
        let token = c.encode(&ctx);
        let keep = keep.index(token.len());
        prop_assert!(c.decode(&token[..keep]).is_err());
    }

    #[test]
    fn tokens_from_another_secret_are_refused(
        ctx in version_vector(), secret in prop::collection::vec(any::<u8>(), 0..40)
    ) {
        prop_assume!(secret.as_slice() != b"shoal test secret");
        let token = ContextCodec::new(&secret).encode(&ctx);
        prop_assert_eq!(codec().decode(&token), Err(ContextError::BadSignature));
    }

    #[test]
    fn arbitrary_strings_are_refused(s in any::<String>()) {
        prop_assert!(codec().decode(&s).is_err());
    }

    #[test]
    fn arbitrary_base64_is_refused(s in "[A-Za-z0-9_-]{0,300}") {
        prop_assert!(codec().decode(&s).is_err());
    }

    #[test]
    fn overlong_tokens_are_refused_by_length(extra in 1usize..100, fill in "[A-Za-z0-9_-]") {
        let s = fill.repeat(MAX_CONTEXT_TOKEN_BYTES + extra);
        prop_assert_eq!(
            codec().decode(&s),
            Err(ContextError::TooLong { len: s.len(), limit: MAX_CONTEXT_TOKEN_BYTES })
        );
    }
}

#[test]
fn two_blind_writes_from_scratch_give_two_siblings() {
    let empty = VersionVector::new();
    let mut a = SiblingSet::new();
    let mut b = SiblingSet::new();
    a.write("n1", &empty, 1u32, &UNLIMITED).unwrap();
    b.write("n2", &empty, 2u32, &UNLIMITED).unwrap();
    a.merge(&b);
    assert_eq!(a.len(), 2);
    a.write("n1", &a.context(), 3, &UNLIMITED).unwrap();
    assert_eq!(a.len(), 1);
}
