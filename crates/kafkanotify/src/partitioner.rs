//! The Java client's default partitioner for keyed records: `toPositive(murmur2(key)) %
//! partitions`. Using the same hash means kubecrew, Java, librdkafka (`murmur2_random`) and
//! Kafka Streams producers all put an application's events in one partition, which keeps them
//! in order.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bit, seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java hashes the length as an int; keys longer than 2^31 bytes do not exist in Kafka.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a record with `key` in a topic of `partitions` partitions (at least 1).
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn matches_the_java_client() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), *hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 3 = 0, % 7 = 1173551340 mod 7.
        assert_eq!(partition_for(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for(b"21", 7), 1_173_551_340 % 7);
        for partitions in 1..20 {
            let p = partition_for(b"carla-server", partitions);
            assert!((0..partitions).contains(&p));
            assert_eq!(p, partition_for(b"carla-server", partitions));
        }
        assert_eq!(
            partition_for(b"x", 0),
            0,
            "a degenerate count is one partition"
        );
    }
}
