import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// docs/protocol.md, "Quorums": one quorum q = ⌈(n+f+1)/2⌉ for every n >= 3f+1, and every
/// threshold of §4.2-§4.4 derived from it. At n = 3f+1 it is the paper's 2f+1; above, the
/// paper's counts (2f PREPAREs, 2f+1 replicas) let two certificates meet only in faulty ones.
@Suite struct QuorumSizeTests {
    func prePrepare(_ cluster: Cluster, view: View = 0, sequence: SequenceNumber = 1, primary: ReplicaID = 0, timestamps: [UInt64]) -> PrePrepare {
        PrePrepare(view: view, sequence: sequence, primary: primary, batch: timestamps.map { cluster.request($0) })
            .signed(by: cluster.signers[Int(primary.value)])
    }

    func prepare(_ cluster: Cluster, _ prePrepare: PrePrepare, by replica: ReplicaID) -> Vote {
        Vote(kind: .prepare, view: prePrepare.view, sequence: prePrepare.sequence, digest: prePrepare.digest, replica: replica)
            .signed(by: cluster.signers[Int(replica.value)])
    }

    @Test(arguments: [(4, 1), (5, 1), (6, 1), (7, 2), (8, 2), (9, 2), (10, 3), (13, 4), (16, 5)])
    func everyQuorumIntersectsInACorrectReplicaAndTheCorrectOnesMakeOne(n: Int, f: Int) {
        let cluster = Cluster(f: f, replicaCount: n)
        let config = cluster.config
        #expect(config.quorum == (n + f + 2) / 2)
        #expect(config.quorumIntersection >= f + 1, "two quorums share a correct replica")
        #expect(config.quorum <= n - f, "f silent replicas cannot stop the cluster")
        #expect(config.preparesForCertificate == config.quorum - 1)
        if n == 3 * f + 1 { #expect(config.quorum == 2 * f + 1, "the paper's 2f+1 at n = 3f+1") }
    }

    /// §4.2 at n = 6, f = 1: 2f = 2 PREPAREs are not a prepared certificate; q - 1 = 3 are.
    @Test func preparedNeedsQuorumMinusOnePreparesAboveThreeFPlusOne() {
        var cluster = Cluster(f: 1, replicaCount: 6)
        let proposal = prePrepare(cluster, timestamps: [1])
        cluster.inject(.prePrepare(proposal), from: 0, to: 1)  // replica 1's own PREPARE is the first
        #expect(cluster.inject(.prepare(prepare(cluster, proposal, by: 2)), from: 2, to: 1).commits.isEmpty)
        #expect(cluster.replica(1).log[1]?.isPrepared == false, "2f PREPAREs at n = 6 do not prepare")
        let third = cluster.inject(.prepare(prepare(cluster, proposal, by: 3)), from: 3, to: 1)
        #expect(third.commits.count == 1, "q - 1 = 3 PREPAREs do")
        #expect(cluster.replica(1).preparedCertificates[1]?.prepares.count == 3)
    }

    /// The fork the 2f rule allowed at n = 6 with one faulty replica: an equivocating primary
    /// sends batch A to backups {1, 2} and batch B to {3, 4, 5}. With 2f PREPAREs both groups
    /// prepared, and a view change could then carry either. With q - 1 only B's group can.
    @Test func anEquivocatingPrimaryCannotPrepareTwoDigestsAtSixReplicas() {
        var cluster = Cluster(f: 1, replicaCount: 6)
        let batchA = prePrepare(cluster, timestamps: [1])
        let batchB = prePrepare(cluster, timestamps: [2])
        for backup: ReplicaID in [1, 2] { cluster.inject(.prePrepare(batchA), from: 0, to: backup) }
        for backup: ReplicaID in [3, 4, 5] { cluster.inject(.prePrepare(batchB), from: 0, to: backup) }
        cluster.run()
        let prepared = (1...5).compactMap { cluster.replica(ReplicaID(UInt16($0))).preparedCertificates[1]?.digest }
        #expect(Set(prepared).count == 1, "one prepared digest per (v, s) across correct replicas (INVARIANTS 5)")
        #expect(Set(prepared) == [batchB.digest])
    }

    /// INVARIANTS 10: a prepared certificate inside a VIEW-CHANGE counts q - 1 PREPAREs.
    @Test func aViewChangeCarryingATwoFCertificateIsInvalidAtSixReplicas() throws {
        let cluster = Cluster(f: 1, replicaCount: 6)
        let proposal = prePrepare(cluster, timestamps: [1])
        func viewChange(preparedBy backups: [ReplicaID]) -> ViewChange {
            let certificate = PreparedCertificate(prePrepare: proposal, prepares: backups.map { prepare(cluster, proposal, by: $0) })
            return ViewChange(newView: 1, stableSequence: .genesis, checkpointProof: [], prepared: [certificate], replica: 2)
                .signed(by: cluster.signers[2])
        }
        let short = viewChange(preparedBy: [1, 2])
        #expect(ViewChangeTests.violationCode { try cluster.replica(3).validate(short) }.isInvalidPreparedCertificate(at: 1))
        do {
            try cluster.replica(3).validate(short)
        } catch {
            guard case .invalidPreparedCertificate(let sequence, _) = error.code else {
                Issue.record("expected an invalid prepared certificate, got \(error.code)")
                return
            }
            #expect(sequence == 1)
        }
        try cluster.replica(3).validate(viewChange(preparedBy: [1, 2, 3]))
    }

    /// The whole protocol at n = 6 and n = 9 still commits with only the quorum taking part.
    @Test(arguments: [(6, 1), (9, 2)])
    func aClusterAboveThreeFPlusOneCommitsWithFSilentReplicas(n: Int, f: Int) {
        var cluster = Cluster(f: f, replicaCount: n)
        cluster.isolated = Set((n - f..<n).map { ReplicaID(UInt16($0)) })
        for timestamp in 1...3 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        for id in 0..<(n - f) {
            let replica = cluster.replica(ReplicaID(UInt16(id)))
            #expect(replica.lastExecuted >= 1, "replica \(id) executed")
            #expect(cluster.ledger(ReplicaID(UInt16(id))).allSatisfy { $0.commitSignatures.count == cluster.config.quorum })
        }
    }
}
