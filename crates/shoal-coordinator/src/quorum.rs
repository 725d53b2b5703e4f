//! Counting replies toward a quorum. Pure: the driver feeds it replies and asks what to do.

/// Where a quorum stands after the replies seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not enough replies yet, but still reachable.
    Pending,
    /// At least `required` replicas succeeded.
    Reached,
    /// Too many replicas failed for `required` ever to be reached.
    Impossible,
}

/// Tracks acks and failures from a fixed set of replicas toward a required count.
#[derive(Clone, Debug)]
pub struct QuorumTracker<Id> {
    required: usize,
    replicas: Vec<Id>,
    acked: Vec<Id>,
    failed: Vec<(Id, String)>,
}

impl<Id: PartialEq + Clone> QuorumTracker<Id> {
    pub fn new(required: usize, replicas: Vec<Id>) -> Self {
        Self {
            required,
            replicas,
            acked: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn answered(&self, id: &Id) -> bool {
        self.acked.contains(id) || self.failed.iter().any(|(f, _)| f == id)
    }

    /// Record a success. Duplicates and replicas outside the set are ignored (a duplicated
    /// message must not count twice toward a quorum).
    pub fn ack(&mut self, id: Id) -> Progress {
        if self.replicas.contains(&id) && !self.answered(&id) {
            self.acked.push(id);
        }
        self.progress()
    }

    pub fn fail(&mut self, id: Id, reason: impl Into<String>) -> Progress {
        if self.replicas.contains(&id) && !self.answered(&id) {
            self.failed.push((id, reason.into()));
        }
        self.progress()
    }

    pub fn progress(&self) -> Progress {
        if self.acked.len() >= self.required {
            Progress::Reached
        } else if self.replicas.len() - self.failed.len() < self.required {
            Progress::Impossible
        } else {
            Progress::Pending
        }
    }

    pub fn required(&self) -> usize {
        self.required
    }

    pub fn acked(&self) -> &[Id] {
        &self.acked
    }

    /// Replicas that failed, then those that never answered, each with a reason.
    pub fn failures(&self, unanswered_reason: &str) -> Vec<(Id, String)> {
        let mut out = self.failed.clone();
        for r in &self.replicas {
            if !self.answered(r) {
                out.push((r.clone(), unanswered_reason.to_string()));
            }
        }
        out
    }

    pub fn all_answered(&self) -> bool {
        self.acked.len() + self.failed.len() >= self.replicas.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reaches_and_fails() {
        let mut q = QuorumTracker::new(2, vec![1, 2, 3]);
        assert_eq!(q.ack(1), Progress::Pending);
        assert_eq!(q.ack(1), Progress::Pending, "a duplicate ack does not count");
        assert_eq!(q.ack(9), Progress::Pending, "an outsider does not count");
        assert_eq!(q.fail(2, "down"), Progress::Pending);
        assert_eq!(q.fail(3, "down"), Progress::Impossible);
        assert_eq!(q.failures("timeout").len(), 2);
        let mut q = QuorumTracker::new(2, vec![1, 2, 3]);
        q.ack(3);
        assert_eq!(q.ack(2), Progress::Reached);
        assert_eq!(
            q.failures("no reply before the deadline"),
            vec![(1, "no reply before the deadline".to_string())]
        );
    }

    proptest! {
        /// Whatever order replies arrive in, the verdict is Reached iff at least `required`
        /// distinct replicas acked, and Impossible iff too few can still ack.
        #[test]
        fn verdict_matches_counts(required in 1usize..=5, events in proptest::collection::vec((0u8..5, any::<bool>()), 0..20)) {
            let replicas: Vec<u8> = (0..5).collect();
            let mut q = QuorumTracker::new(required, replicas);
            let mut acked = std::collections::BTreeSet::new();
            let mut failed = std::collections::BTreeSet::new();
            for (id, ok) in events {
                let p = if ok { q.ack(id) } else { q.fail(id, "x") };
                if !acked.contains(&id) && !failed.contains(&id) {
                    if ok { acked.insert(id); } else { failed.insert(id); }
                }
                let expect = if acked.len() >= required { Progress::Reached }
                    else if 5 - failed.len() < required { Progress::Impossible }
                    else { Progress::Pending };
                prop_assert_eq!(p, expect);
            }
        }
    }
}
