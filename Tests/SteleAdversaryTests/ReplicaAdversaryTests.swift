import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleAdversary

/// Each mode does what `stele replica --byzantine` promises, checked on the messages it emits:
/// the end-to-end suite shows the cluster withstands it, these show it really attacks.
@Suite("Byzantine modes of a real replica")
struct ReplicaAdversaryTests {
    static let replicas = TestReplicas(n: 4, cluster: ClusterID(bytes: [UInt8](repeating: 9, count: 16))!)
    static let config = replicas.config
    static let verifier = SignatureVerifier(config: config)
    static let client = ClientSigner(cluster: config.cluster, keyPair: FixedKeys.repeating(42))

    static func signer(_ index: Int) -> ReplicaSigner { replicas.signer(index) }

    static func adversary(_ mode: ByzantineMode, replica: Int = 0) -> ReplicaAdversary {
        ReplicaAdversary(mode: mode, config: config, signer: signer(replica), seed: 1234)
    }

    static func prePrepare(sequence: UInt64, requests: Int = 2, view: UInt64 = 0, primary: Int = 0) -> PrePrepare {
        let batch = (0..<requests).map { client.request(timestamp: sequence * 100 + UInt64($0), payload: Array("tx\($0)".utf8)) }
        return PrePrepare(view: View(view), sequence: SequenceNumber(sequence), primary: ReplicaID(UInt16(primary)), batch: batch).signed(by: signer(primary))
    }

    static func vote(_ kind: VoteKind, replica: Int, sequence: UInt64 = 1, digest: Digest) -> Message {
        let vote = Vote(kind: kind, view: 0, sequence: SequenceNumber(sequence), digest: digest, replica: ReplicaID(UInt16(replica))).signed(by: signer(replica))
        return kind == .prepare ? .prepare(vote) : .commit(vote)
    }

    static let backups: [ReplicaID] = [1, 2, 3]

    func verifies(_ message: Message) -> Bool { (try? Self.verifier.verify(message)) != nil }

    @Test("silent drops every message and every reply")
    func silent() {
        let adversary = Self.adversary(.silent)
        #expect(adversary.outgoing(.prePrepare(Self.prePrepare(sequence: 1)), to: Self.backups).isEmpty)
        let reply = Reply(view: 0, timestamp: 1, client: Self.client.publicKey, replica: 0, height: 1, blockHash: Digest.of([1])).signed(by: Self.signer(0))
        #expect(adversary.reply(reply) == nil)
        #expect(adversary.moves["silent.dropped"] == 3)
    }

    @Test("withhold drops COMMITs only")
    func withhold() {
        let adversary = Self.adversary(.withhold, replica: 1)
        let digest = Digest.of([7])
        #expect(adversary.outgoing(Self.vote(.commit, replica: 1, digest: digest), to: [0, 2, 3]).isEmpty)
        #expect(adversary.outgoing(Self.vote(.prepare, replica: 1, digest: digest), to: [0, 2, 3]).count == 3)
    }

    @Test("equivocate as primary: one backup gets batch A, the others a different batch B and a valid COMMIT for B")
    func equivocatingPrimary() {
        let adversary = Self.adversary(.equivocate)
        let first = Self.prePrepare(sequence: 4)
        let sends = adversary.outgoing(.prePrepare(first), to: Self.backups)
        var digests: [ReplicaID: Digest] = [:]
        var commits: [ReplicaID: Digest] = [:]
        for send in sends {
            #expect(verifies(send.message), "every forged message is validly signed: \(send.message.tag)")
            switch send.message {
            case .prePrepare(let p): digests[send.to] = p.digest
            case .commit(let c): commits[send.to] = c.digest
            default: Issue.record("unexpected \(send.message.tag)")
            }
        }
        #expect(Set(digests.values).count == 2, "two different batches for one (view, sequence)")
        let victims = digests.filter { $0.value == first.digest }.map(\.key)
        #expect(victims.count == 1)
        for (replica, digest) in digests where digest != first.digest {
            #expect(commits[replica] == digest, "replica \(replica.value) gets the COMMIT for batch B")
        }
        // The forged COMMITs are sent again at later ticks.
        let later = (0..<20).flatMap { _ in adversary.tick(coreView: 0) }
        #expect(later.count == 2 * ReplicaAdversary.scheduledTicks.count)
    }

    @Test("equivocate as backup: each vote also goes out for a second digest")
    func equivocatingBackup() {
        let adversary = Self.adversary(.equivocate, replica: 2)
        let sends = adversary.outgoing(Self.vote(.prepare, replica: 2, digest: Digest.of([1])), to: [0, 1, 3])
        var digestsByTarget: [ReplicaID: Set<Digest>] = [:]
        for send in sends {
            guard case .prepare(let vote) = send.message else { Issue.record("not a prepare"); continue }
            #expect(verifies(send.message))
            digestsByTarget[send.to, default: []].insert(vote.digest)
        }
        #expect(digestsByTarget.values.allSatisfy { $0.count == 2 })
    }

    @Test("corrupt: about half of what goes out fails verification, and nothing forged verifies as something else")
    func corrupt() {
        let adversary = Self.adversary(.corrupt)
        var broken = 0
        let total = 400
        for sequence in 1...total {
            let message = Message.prePrepare(Self.prePrepare(sequence: UInt64(sequence)))
            for send in adversary.outgoing(message, to: [1]) {
                if send.message != message {
                    broken += 1
                    // A mangled message must fail somewhere: its own signature or a nested one.
                    let nestedOK: Bool
                    if case .prePrepare(let p) = send.message { nestedOK = p.batch.allSatisfy { $0.verifySignature(cluster: Self.config.cluster) } } else { nestedOK = true }
                    #expect(!verifies(send.message) || !nestedOK, "a corrupted message must not verify")
                }
            }
        }
        #expect(broken > total / 4 && broken < total * 3 / 4, "\(broken) of \(total) corrupted")
    }

    @Test("replay re-sends earlier messages on later ticks")
    func replay() {
        let adversary = Self.adversary(.replay)
        let old = Message.prePrepare(Self.prePrepare(sequence: 1))
        _ = adversary.outgoing(old, to: Self.backups)
        let replayed = (0..<10).flatMap { _ in adversary.tick(coreView: 3) }
        #expect(!replayed.isEmpty)
        #expect(replayed.allSatisfy { $0.message == old && $0.to != 0 })
    }

    @Test("viewchange-storm asks for ever-higher views, above the core's view")
    func storm() {
        let adversary = Self.adversary(.viewChangeStorm)
        var views: [UInt64] = []
        for _ in 0..<50 {
            for send in adversary.tick(coreView: 5) {
                guard case .viewChange(let viewChange) = send.message else { Issue.record("not a view change"); continue }
                #expect(verifies(send.message))
                views.append(viewChange.newView.value)
            }
        }
        let distinct = Array(Set(views)).sorted()
        #expect(distinct.count >= 5)
        #expect(distinct.first! > 5)
        #expect(distinct == distinct.sorted())
    }

    @Test("lying-newview drops the highest prepared request from O, signed as the new primary")
    func lyingNewView() {
        let adversary = Self.adversary(.lyingNewView, replica: 1)
        let prePrepares = [Self.prePrepare(sequence: 1, view: 1, primary: 1), Self.prePrepare(sequence: 2, view: 1, primary: 1)]
        let honest = NewView(view: 1, viewChanges: [], prePrepares: prePrepares, primary: 1).signed(by: Self.signer(1))
        let sends = adversary.outgoing(.newView(honest), to: [0, 2, 3])
        #expect(sends.count == 3)
        guard case .newView(let lie) = sends[0].message else { Issue.record("not a NEW-VIEW"); return }
        #expect(verifies(sends[0].message))
        #expect(lie.prePrepares[0] == prePrepares[0])
        #expect(lie.prePrepares[1].batch.isEmpty, "the prepared request at sequence 2 is dropped")
        // Other messages pass unchanged.
        let vote = Self.vote(.prepare, replica: 1, digest: Digest.of([3]))
        #expect(adversary.outgoing(vote, to: [0]).map(\.message) == [vote])
    }
}
