//! How evenly the default ring spreads partitions over equal nodes.
//! Run with `--nocapture` to see the table.

use shoal_ring::{Layout, Member, NodeId, RingConfig};

const N: usize = 3;

/// max/mean partitions per node, counting the first `n` of each walk.
fn max_over_mean(layout: &Layout, n: usize) -> f64 {
    let counts: Vec<usize> = layout
        .members()
        .iter()
        .map(|m| layout.partitions_of(&m.id, n).len())
        .collect();
    let total: usize = counts.iter().sum();
    let mean = total as f64 / counts.len() as f64;
    counts.iter().copied().max().unwrap_or(0) as f64 / mean
}

#[test]
fn equal_nodes_get_nearly_equal_shares() {
    let cfg = RingConfig::default();
    eprintln!(
        "balance, Q={} tokens_per_weight={}: max/mean partitions per node",
        cfg.partitions, cfg.tokens_per_weight
    );
    eprintln!("{:>3} {:>8} {:>13}", "S", "primary", "replicas(n=3)");
    let mut worst = 0.0f64;
    for s in 3..=10 {
        let members = (1..=s)
            .map(|i| Member {
                id: NodeId::new(format!("n{i}")),
                zone: "z".into(),
                weight: 1,
            })
            .collect();
        let layout = Layout::new(1, members, cfg).unwrap();
        let primary = max_over_mean(&layout, 1);
        let replicas = max_over_mean(&layout, N);
        eprintln!("{s:>3} {primary:>8.3} {replicas:>13.3}");
        assert!(replicas <= 1.3, "S={s}: replica max/mean {replicas:.3} > 1.3");
        worst = worst.max(replicas);
    }
    eprintln!("worst replica max/mean: {worst:.3}");
}
