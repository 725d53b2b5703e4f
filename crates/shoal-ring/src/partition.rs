//! Mapping keys onto the fixed partitions of the hash space.

use xxhash_rust::xxh3::xxh3_64;

pub type PartitionId = u32;

/// The hash of a key: xxh3-64 of the key bytes.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The partition holding `hash` when the ring has `partitions` partitions.
///
/// Partition `p` covers hashes `[p·2⁶⁴/Q, (p+1)·2⁶⁴/Q)`. For a power of two
/// this is the top `log2(Q)` bits of the hash, which is what is computed:
/// `(hash · Q) / 2⁶⁴` equals `hash >> (64 − log2 Q)` exactly, without a
/// special case for `Q = 1` (a 64-bit shift would overflow). A `Q` that is not
/// a power of two still yields a fair partition in `[0, Q)`, and `Q = 0` yields
/// 0, so no caller value can make this panic.
pub fn partition_for_hash(hash: u64, partitions: u32) -> PartitionId {
    // The product is < Q·2⁶⁴, so the shifted value is < Q and fits in a u32.
    ((u128::from(hash) * u128::from(partitions)) >> 64) as PartitionId
}

/// First hash covered by partition `p`: `p·2⁶⁴/Q`, the inverse of
/// [`partition_for_hash`]. Callers guarantee `p < partitions`.
pub(crate) fn partition_start(p: PartitionId, partitions: u32) -> u64 {
    debug_assert!(p < partitions);
    ((u128::from(p) << 64) / u128::from(partitions.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_partition_takes_everything() {
        assert_eq!(partition_for_hash(0, 1), 0);
        assert_eq!(partition_for_hash(u64::MAX, 1), 0);
        assert_eq!(partition_start(0, 1), 0);
    }

    #[test]
    fn edges_of_the_hash_space() {
        for q in [2u32, 4, 1024, 65536] {
            assert_eq!(partition_for_hash(0, q), 0);
            assert_eq!(partition_for_hash(u64::MAX, q), q - 1);
        }
    }

    #[test]
    fn uses_the_top_bits() {
        for q in [2u32, 16, 1024, 65536] {
            let bits = q.trailing_zeros();
            for h in [1u64, 0x8000_0000_0000_0000, 0xdead_beef_cafe_f00d, u64::MAX / 3] {
                assert_eq!(partition_for_hash(h, q), (h >> (64 - bits)) as u32);
            }
        }
        assert_eq!(partition_for_hash(0x0001_0000_0000_0000, 65536), 1);
        assert_eq!(partition_for_hash(0x0000_ffff_ffff_ffff, 65536), 0);
    }

    #[test]
    fn starts_are_the_first_hash_of_their_partition() {
        for q in [1u32, 2, 1024, 65536] {
            for p in [0, q / 2, q - 1] {
                let start = partition_start(p, q);
                assert_eq!(partition_for_hash(start, q), p);
                if start > 0 {
                    assert_eq!(partition_for_hash(start - 1, q), p - 1);
                }
            }
        }
        assert_eq!(partition_start(1, 2), 1 << 63);
        assert_eq!(partition_start(65535, 65536), 0xffff_0000_0000_0000);
    }

    #[test]
    fn degenerate_partition_counts_do_not_panic() {
        assert_eq!(partition_for_hash(u64::MAX, 0), 0);
        assert!(partition_for_hash(u64::MAX, 3) < 3);
        assert!(partition_for_hash(u64::MAX, u32::MAX) < u32::MAX);
    }

    #[test]
    fn key_hash_is_xxh3() {
        assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(key_hash(b"abc"), xxh3_64(b"abc"));
    }
}
