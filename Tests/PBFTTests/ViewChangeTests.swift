import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// Builders for hand-made view-change material.
extension Cluster {
    func prePrepare(view: View, sequence: SequenceNumber, batch: [Request], signedBy signer: ReplicaID? = nil) -> PrePrepare {
        let primary = signer ?? config.primary(of: view)
        return PrePrepare(view: view, sequence: sequence, primary: primary, batch: batch).signed(by: signers[Int(primary.value)])
    }

    func prepare(_ prePrepare: PrePrepare, by replica: ReplicaID) -> Vote {
        Vote(kind: .prepare, view: prePrepare.view, sequence: prePrepare.sequence, digest: prePrepare.digest, replica: replica)
            .signed(by: signers[Int(replica.value)])
    }

    /// A prepared certificate for `batch` at (view, sequence) with PREPAREs from `backups`.
    func certificate(view: View, sequence: SequenceNumber, batch: [Request], backups: [ReplicaID]? = nil) -> PreparedCertificate {
        let prePrepare = prePrepare(view: view, sequence: sequence, batch: batch)
        let primary = config.primary(of: view)
        let voters = backups ?? Array(ids.filter { $0 != primary }.prefix(2 * config.f))
        return PreparedCertificate(prePrepare: prePrepare, prepares: voters.map { prepare(prePrepare, by: $0) })
    }

    func viewChange(to view: View, by replica: ReplicaID, prepared: [PreparedCertificate] = [], stable: SequenceNumber = 0, proof: [Checkpoint] = []) -> ViewChange {
        ViewChange(newView: view, stableSequence: stable, checkpointProof: proof, prepared: prepared, replica: replica)
            .signed(by: signers[Int(replica.value)])
    }

    func newView(_ view: View, _ viewChanges: [ViewChange], prePrepares: [PrePrepare]? = nil) -> NewView {
        let primary = config.primary(of: view)
        let o = prePrepares ?? NewViewPlan(viewChanges: viewChanges).prePrepares(view: view, primary: primary)
            .map { $0.signed(by: signers[Int(primary.value)]) }
        return NewView(view: view, viewChanges: viewChanges, prePrepares: o, primary: primary).signed(by: signers[Int(primary.value)])
    }
}

/// PBFT §4.4, view changes, and §4.5.2, their liveness rules.
@Suite struct ViewChangeTests {
    @Test func aSilentPrimaryIsReplacedAndThePendingRequestCommitsInTheNextView() {
        var cluster = Cluster()
        cluster.isolated = [0]
        let request = cluster.request(1)
        cluster.submit(request)
        let committed = cluster.tick(until: { c in [1, 2, 3].allSatisfy { c.ledger($0).count == 1 } }, ticksMax: 100)
        #expect(committed)
        for id: ReplicaID in [1, 2, 3] {
            #expect(cluster.replica(id).view == 1)
            #expect(cluster.replica(id).primary == 1)
            #expect(!cluster.replica(id).isInViewChange)
            #expect(cluster.ledger(id).first?.batch == [request])
            #expect(cluster.ledger(id).first?.certificateView == 1)
        }
        #expect(cluster.sent(by: 1).contains { if case .newView(let m) = $0 { m.view == 1 } else { false } }, "replica 1 sent NEW-VIEW")
        #expect(cluster.replies.flatMap { $0 }.allSatisfy { $0.view == 1 })
    }

    @Test func aPreparedRequestIsCarriedIntoTheNewView() {
        var cluster = Cluster()
        // Everyone prepares s1 in view 0, but no COMMIT of view 0 ever arrives.
        cluster.drops = { if case .commit(let vote) = $0.message { vote.view == 0 } else { false } }
        let request = cluster.request(1)
        cluster.submit(request)
        cluster.run()
        #expect(cluster.ids.allSatisfy { cluster.replica($0).preparedCertificates[1] != nil })
        #expect(cluster.ids.allSatisfy { cluster.ledger($0).isEmpty })

        let committed = cluster.tick(until: { c in c.ids.allSatisfy { c.ledger($0).count == 1 } }, ticksMax: 100)
        #expect(committed)
        let newViews = cluster.sent(by: 1).compactMap { if case .newView(let m) = $0 { m } else { nil } }
        let o = try! #require(newViews.first).prePrepares
        #expect(o.map(\.sequence) == [1])
        #expect(o.first?.batch == [request], "O re-proposes the prepared batch at its sequence")
        #expect(cluster.ids.allSatisfy { cluster.ledger($0).first?.batch == [request] && cluster.ledger($0).first?.certificateView == 1 })
        for id in cluster.ids { cluster.expectExactlyOnce(id) }
    }

    @Test func theCertificateWithTheHighestViewWinsInO() {
        let cluster = Cluster()
        let batchA = [cluster.request(1, "a")], batchB = [cluster.request(2, "b")]
        let inView0 = cluster.certificate(view: 0, sequence: 1, batch: batchA)
        let inView1 = cluster.certificate(view: 1, sequence: 1, batch: batchB)
        let viewChanges = [
            cluster.viewChange(to: 2, by: 0, prepared: [inView0]),
            cluster.viewChange(to: 2, by: 1, prepared: [inView1]),
            cluster.viewChange(to: 2, by: 3),
        ]
        for order in [viewChanges, viewChanges.reversed()] {
            let plan = NewViewPlan(viewChanges: Array(order))
            #expect(plan.sequences == [1])
            #expect(plan.batches == [batchB], "view 1 beats view 0, whatever the order")
        }
    }

    @Test func theNewPrimaryPutsTheHighestViewCertificateInItsNewView() {
        var cluster = Cluster()
        let batchA = [cluster.request(1, "a")], batchB = [cluster.request(2, "b")]
        let fromReplica1 = cluster.viewChange(to: 2, by: 1, prepared: [cluster.certificate(view: 0, sequence: 1, batch: batchA)])
        let fromReplica3 = cluster.viewChange(to: 2, by: 3, prepared: [cluster.certificate(view: 1, sequence: 1, batch: batchB)])
        cluster.inject(.viewChange(fromReplica1), from: 1, to: 2)
        let actions = cluster.inject(.viewChange(fromReplica3), from: 3, to: 2)  // f+1: replica 2 joins view 2 and leads it
        let newView = try! #require(actions.newViews.first)
        #expect(newView.view == 2)
        #expect(newView.prePrepares.map(\.digest) == [Batch.digest(batchB)])
        #expect(cluster.replica(2).view == 2 && !cluster.replica(2).isInViewChange)
    }

    /// Puts replica 3 into a view change for view 1 (two VIEW-CHANGEs from 0 and 2 make it join).
    func replica3WaitingForView1(_ cluster: inout Cluster, prepared: [PreparedCertificate]) -> [ViewChange] {
        let fromReplica0 = cluster.viewChange(to: 1, by: 0, prepared: prepared)
        let fromReplica2 = cluster.viewChange(to: 1, by: 2, prepared: prepared)
        cluster.inject(.viewChange(fromReplica0), from: 0, to: 3)
        let joined = cluster.inject(.viewChange(fromReplica2), from: 2, to: 3)
        let own = try! #require(joined.viewChanges.first)
        #expect(cluster.replica(3).isInViewChange && cluster.replica(3).view == 1)
        return [fromReplica0, fromReplica2, own]
    }

    @Test func aNewViewWhoseODropsAPreparedRequestIsRejected() {
        var cluster = Cluster()
        let batch = [cluster.request(1)]
        let viewChanges = replica3WaitingForView1(&cluster, prepared: [cluster.certificate(view: 0, sequence: 1, batch: batch)])

        let dropping = cluster.newView(1, viewChanges, prePrepares: [])
        #expect(cluster.inject(.newView(dropping), from: 1, to: 3).isEmpty)
        #expect(cluster.replica(3).isInViewChange, "still waiting for a valid NEW-VIEW")
        guard case .newViewMismatch = cluster.replica(3).lastViolation?.code else {
            Issue.record("expected newViewMismatch, got \(String(describing: cluster.replica(3).lastViolation))")
            return
        }

        let swapped = cluster.newView(1, viewChanges, prePrepares: [cluster.prePrepare(view: 1, sequence: 1, batch: [cluster.request(2)])])
        #expect(cluster.inject(.newView(swapped), from: 1, to: 3).isEmpty)

        let honest = cluster.newView(1, viewChanges)
        let actions = cluster.inject(.newView(honest), from: 1, to: 3)
        #expect(!cluster.replica(3).isInViewChange)
        #expect(actions.prepares.map(\.digest) == [Batch.digest(batch)])
        #expect(actions.prepares.first?.view == 1)
    }

    @Test func aNewViewWithTooFewOrRepeatedViewChangesIsRejected() {
        var cluster = Cluster()
        let viewChanges = replica3WaitingForView1(&cluster, prepared: [])
        let twoOnly = cluster.newView(1, Array(viewChanges.prefix(2)))
        #expect(cluster.inject(.newView(twoOnly), from: 1, to: 3).isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .tooFewViewChanges(count: 2))

        let repeated = cluster.newView(1, [viewChanges[0], viewChanges[0], viewChanges[1]])
        #expect(cluster.inject(.newView(repeated), from: 1, to: 3).isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .duplicateViewChange(0))

        let otherView = cluster.newView(1, [viewChanges[0], viewChanges[1], cluster.viewChange(to: 2, by: 3)])
        #expect(cluster.inject(.newView(otherView), from: 1, to: 3).isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .viewChangeForOtherView(2))

        let forgedCertificate = cluster.certificate(view: 0, sequence: 1, batch: [cluster.request(1)], backups: [1, 1])
        let withForgery = cluster.newView(1, [viewChanges[0], viewChanges[1], cluster.viewChange(to: 1, by: 1, prepared: [forgedCertificate])])
        #expect(cluster.inject(.newView(withForgery), from: 1, to: 3).isEmpty)
        #expect(cluster.replica(3).isInViewChange)

        let notFromPrimary = NewView(view: 1, viewChanges: viewChanges, prePrepares: [], primary: 2).signed(by: cluster.signers[2])
        #expect(cluster.inject(.newView(notFromPrimary), from: 2, to: 3).isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .notPrimary(expected: 1))
        #expect(cluster.replica(3).isInViewChange)
    }

    @Test func aViewChangeWithAnInvalidPreparedCertificateIsRejected() {
        let cluster = Cluster()
        let batch = [cluster.request(1)]
        let invalid: [(String, PreparedCertificate)] = [
            ("too few PREPAREs", cluster.certificate(view: 0, sequence: 1, batch: batch, backups: [1])),
            ("a PREPARE from the primary", cluster.certificate(view: 0, sequence: 1, batch: batch, backups: [0, 1])),
            ("a replica counted twice", cluster.certificate(view: 0, sequence: 1, batch: batch, backups: [2, 2])),
            ("a non-member", PreparedCertificate(
                prePrepare: cluster.prePrepare(view: 0, sequence: 1, batch: batch),
                prepares: [cluster.prepare(cluster.prePrepare(view: 0, sequence: 1, batch: batch), by: 1),
                           Vote(kind: .prepare, view: 0, sequence: 1, digest: Batch.digest(batch), replica: 9)])),
            ("a PRE-PREPARE not from its view's primary", PreparedCertificate(
                prePrepare: cluster.prePrepare(view: 0, sequence: 1, batch: batch, signedBy: 2),
                prepares: [1, 3].map { cluster.prepare(cluster.prePrepare(view: 0, sequence: 1, batch: batch, signedBy: 2), by: $0) })),
            ("a view not below the new view", cluster.certificate(view: 1, sequence: 1, batch: batch)),
            ("PREPAREs for another digest", PreparedCertificate(
                prePrepare: cluster.prePrepare(view: 0, sequence: 1, batch: batch),
                prepares: [1, 2].map { cluster.prepare(cluster.prePrepare(view: 0, sequence: 1, batch: [cluster.request(7)]), by: $0) })),
            ("above the checkpoint's window", cluster.certificate(view: 0, sequence: 9, batch: batch)),
        ]
        for (reason, certificate) in invalid {
            var replica = cluster.replica(2)
            let viewChange = cluster.viewChange(to: 1, by: 3, prepared: [certificate])
            #expect(Self.violationCode { try replica.validate(viewChange) }.isInvalidPreparedCertificate(at: certificate.sequence),
                    "\(reason)")
            _ = replica.handle(.message(.viewChange(viewChange), from: 3))
            #expect(replica.viewChanges[3] == nil, "\(reason): not kept")
        }
        let valid = cluster.certificate(view: 0, sequence: 1, batch: batch)
        let twice = cluster.viewChange(to: 1, by: 3, prepared: [valid, valid])
        #expect(throws: ProtocolViolation(.duplicatePreparedCertificate(sequence: 1), replica: 3, message: .viewChange, view: 1, sequence: 1)) {
            try cluster.replica(2).validate(twice)
        }
        #expect(throws: Never.self) { try cluster.replica(2).validate(cluster.viewChange(to: 1, by: 3, prepared: [valid])) }
    }

    @Test func aViewChangeWithAnInvalidCheckpointProofIsRejected() {
        let cluster = Cluster()
        let digest = Digest.of([4])
        let proof = [0, 1, 2].map { Checkpoint(sequence: 4, stateDigest: digest, replica: ReplicaID(UInt16($0))).signed(by: cluster.signers[$0]) }
        #expect(throws: Never.self) { try cluster.replica(2).validate(cluster.viewChange(to: 1, by: 3, stable: 4, proof: proof)) }
        let short = cluster.viewChange(to: 1, by: 3, stable: 4, proof: Array(proof.prefix(2)))
        let repeated = cluster.viewChange(to: 1, by: 3, stable: 4, proof: [proof[0], proof[0], proof[1]])
        let wrongSequence = cluster.viewChange(to: 1, by: 3, stable: 8, proof: proof)
        let proofAtGenesis = cluster.viewChange(to: 1, by: 3, stable: 0, proof: proof)
        for viewChange in [short, repeated, wrongSequence, proofAtGenesis] {
            #expect(Self.violationCode { try cluster.replica(2).validate(viewChange) } == .invalidCheckpointProof)
        }
    }

    /// The code of the violation `body` throws (nil if it throws none).
    static func violationCode(_ body: () throws -> Void) -> ProtocolViolation.Code? {
        do {
            try body()
            return nil
        } catch let violation as ProtocolViolation {
            return violation.code
        } catch {
            Issue.record("not a ProtocolViolation: \(error)")
            return nil
        }
    }

    @Test func fPlusOneViewChangesForHigherViewsMakeAReplicaJoinTheSmallest() {
        var cluster = Cluster()
        #expect(cluster.inject(.viewChange(cluster.viewChange(to: 5, by: 1)), from: 1, to: 3).isEmpty, "one replica is not enough")
        #expect(cluster.replica(3).view == 0)
        let actions = cluster.inject(.viewChange(cluster.viewChange(to: 3, by: 2)), from: 2, to: 3)
        #expect(actions.viewChanges.map(\.newView) == [3], "joins view 3, the smallest of {3, 5}")
        #expect(cluster.replica(3).view == 3 && cluster.replica(3).isInViewChange)
        #expect(cluster.wal[3].contains(.view(3, inViewChange: true)))
    }

    @Test func viewChangeTimeoutsDoubleOnSuccessiveFailedViewChanges() {
        var cluster = Cluster(parameters: Cluster.parameters(viewChangeTimeoutTicks: 10, retransmitTicks: 3))
        cluster.isolated = [0]
        // The primaries of views 1 and 2 never get their NEW-VIEW out.
        cluster.drops = { if case .newView(let m) = $0.message { m.view < 3 } else { false } }
        cluster.submit(cluster.request(1))
        var sentAt = [View: UInt64]()
        var seen = 0
        for _ in 0..<200 where cluster.ledger(3).isEmpty {
            cluster.tick()
            let lists = cluster.actionLists[3]
            for list in lists[seen...] {
                for viewChange in list.viewChanges where sentAt[viewChange.newView] == nil { sentAt[viewChange.newView] = cluster.replica(3).now }
            }
            seen = lists.count
        }
        #expect(sentAt[1] == 10, "the request timer")
        #expect(sentAt[2] == 20, "view 1 waited T")
        #expect(sentAt[3] == 40, "view 2 waited 2T")
        #expect(cluster.replica(3).view == 3 && cluster.ledger(3).count == 1)
        #expect(cluster.replica(3).viewChangeTimeoutTicks == 10, "back to T once a request executed in a stable view")
    }

    @Test func theViewChangeTimeoutIsCapped() {
        var cluster = Cluster(parameters: Cluster.parameters(viewChangeTimeoutTicks: 10))
        for view in 1...10 {
            cluster.inject(.viewChange(cluster.viewChange(to: View(UInt64(view)), by: 1)), from: 1, to: 3)
            cluster.inject(.viewChange(cluster.viewChange(to: View(UInt64(view)), by: 2)), from: 2, to: 3)
        }
        #expect(cluster.replica(3).view == 10)
        #expect(cluster.replica(3).viewChangeTimeoutTicks == 160, "viewChangeTimeoutTicksMax")
    }

    @Test func aReplicaNeverMovesToALowerView() {
        var cluster = Cluster()
        cluster.isolated = [0]
        cluster.submit(cluster.request(1))
        cluster.tick(until: { c in c.ledger(3).count == 1 }, ticksMax: 100)
        let newView1 = try! #require(cluster.sent(by: 1).compactMap { if case .newView(let m) = $0 { m } else { nil } }.first)

        // Move replica 3 on to view 2 (f+1 VIEW-CHANGEs), then replay view 1's NEW-VIEW.
        cluster.inject(.viewChange(cluster.viewChange(to: 2, by: 1)), from: 1, to: 3)
        cluster.inject(.viewChange(cluster.viewChange(to: 2, by: 2)), from: 2, to: 3)
        #expect(cluster.replica(3).view == 2)
        #expect(cluster.inject(.newView(newView1), from: 1, to: 3).isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .staleView(current: 2))
        for replica: ReplicaID in [0, 1] {
            cluster.inject(.viewChange(cluster.viewChange(to: 1, by: replica)), from: replica, to: 3)
        }
        #expect(cluster.replica(3).view == 2)

        // And after a restart it is still view 2.
        cluster.restart(3)
        #expect(cluster.replica(3).view == 2 && cluster.replica(3).isInViewChange)
    }

    @Test func oldViewMessagesReplayedAfterAViewChangeAreIgnored() {
        var cluster = Cluster()
        cluster.isolated = [0]
        cluster.submit(cluster.request(1))
        cluster.tick(until: { c in c.ledger(2).count == 1 }, ticksMax: 100)
        #expect(cluster.replica(2).view == 1)

        let stale = cluster.prePrepare(view: 0, sequence: 2, batch: [cluster.request(2)])
        let actions = cluster.inject(.prePrepare(stale), from: 0, to: 2)
        #expect(actions.prepares.isEmpty && actions.commits.isEmpty)
        #expect(cluster.replica(2).lastViolation?.code == .staleView(current: 1))
        #expect(cluster.replica(2).log[2] == nil)
        let staleVote = cluster.prepare(stale, by: 3)
        #expect(cluster.inject(.prepare(staleVote), from: 3, to: 2).isEmpty)
        #expect(cluster.replica(2).log[2] == nil)
    }

    @Test func aBackupThatMissedTheNewViewGetsItFromThePrimary() {
        var cluster = Cluster()
        // Primary 0 proposes nothing anyone receives; replica 3 never hears of NEW-VIEW.
        cluster.drops = { envelope in
            switch envelope.message {
            case .prePrepare(let m): m.view == 0
            case .newView: envelope.to == 3
            default: false
            }
        }
        cluster.submit(cluster.request(1))
        cluster.tick(until: { c in c.ledger(1).count == 1 }, ticksMax: 100)
        #expect(cluster.replica(1).view == 1 && cluster.ledger(1).count == 1, "0, 1 and 2 carry on in view 1")
        #expect(cluster.replica(3).isInViewChange, "replica 3 never got the NEW-VIEW")
        cluster.drops = { _ in false }
        // Its retransmitted VIEW-CHANGE reaches the new primary, which answers with NEW-VIEW.
        let caughtUp = cluster.tick(until: { c in !c.replica(3).isInViewChange && c.ledger(3).count == 1 }, ticksMax: 100)
        #expect(caughtUp)
        #expect(cluster.replica(3).view == 1)
    }

    /// §4.5.2 with eventual delivery: a replica that moved past view w re-sends the VIEW-CHANGE
    /// it signed for w to a peer still changing to w, and its current one for the f+1 rule.
    @Test func aReplicaReSendsItsViewChangeForALowerViewToAPeerStuckThere() {
        var cluster = Cluster()
        for view: View in [1, 2] {
            for replica: ReplicaID in [1, 2] { cluster.inject(.viewChange(cluster.viewChange(to: view, by: replica)), from: replica, to: 3) }
        }
        #expect(cluster.replica(3).view == 2 && cluster.replica(3).isInViewChange)
        let actions = cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 0)), from: 0, to: 3)
        #expect(actions.viewChanges.map(\.newView).sorted() == [1, 2])
        #expect(actions.viewChanges.allSatisfy { $0.replica == 3 })
        #expect(cluster.replica(3).view == 2, "views never go back")
    }

    /// A VIEW-CHANGE for our pending view counts towards 2f+1 even if its sender has since sent
    /// one for a higher view (its VIEW-CHANGE for our view was late or re-sent).
    @Test func aLateViewChangeForThePendingViewCountsAfterItsSenderMovedOn() {
        var cluster = Cluster()
        cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 2)), from: 2, to: 1)
        cluster.inject(.viewChange(cluster.viewChange(to: 2, by: 3)), from: 3, to: 1)
        #expect(cluster.replica(1).view == 1 && cluster.replica(1).isInViewChange, "joined view 1 by the f+1 rule")
        let actions = cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 3)), from: 3, to: 1)
        #expect(actions.newViews.map(\.view) == [1], "2f+1 VIEW-CHANGEs for view 1: the new primary sends NEW-VIEW")
        #expect(cluster.replica(1).view == 1 && !cluster.replica(1).isInViewChange)
    }

    /// A replica that entered view v re-sends its VIEW-CHANGE for v to a peer still changing to
    /// v, so the peer gathers 2f+1 and its NEW-VIEW timer runs (the primary may have lost its
    /// NEW-VIEW in a restart).
    @Test func aReplicaInTheViewReSendsItsViewChangeToAPeerStillChangingToIt() {
        var cluster = Cluster()
        let viewChanges = [ReplicaID(1), 2, 3].map { cluster.viewChange(to: 1, by: $0) }
        cluster.inject(.viewChange(viewChanges[0]), from: 1, to: 2)
        cluster.inject(.viewChange(viewChanges[2]), from: 3, to: 2)
        #expect(cluster.replica(2).view == 1 && cluster.replica(2).isInViewChange)
        cluster.inject(.newView(cluster.newView(1, viewChanges)), from: 1, to: 2)
        #expect(cluster.replica(2).view == 1 && !cluster.replica(2).isInViewChange)
        let actions = cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 0)), from: 0, to: 2)
        #expect(actions.viewChanges.map(\.replica) == [2] && actions.viewChanges.map(\.newView) == [1])
        #expect(cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 0)), from: 0, to: 2).viewChanges.isEmpty, "rate-limited")
    }
}

extension Optional where Wrapped == ProtocolViolation.Code {
    /// Whether this is `invalidPreparedCertificate` for `sequence` (whatever its reason text).
    func isInvalidPreparedCertificate(at sequence: SequenceNumber) -> Bool {
        guard case .invalidPreparedCertificate(let found, _)? = self else { return false }
        return found == sequence
    }
}
