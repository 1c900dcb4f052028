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

    @Test("equivocate: a re-sent PRE-PREPARE splits the same way; a full batch B replaces A's last request")
    func equivocationIsStable() {
        let adversary = Self.adversary(.equivocate)
        let first = Self.prePrepare(sequence: 7, requests: 1)
        let once = adversary.outgoing(.prePrepare(first), to: Self.backups)
        let again = adversary.outgoing(.prePrepare(first), to: Self.backups)
        #expect(once == again, "the same batches to the same backups")
        #expect(adversary.moves["equivocate.split"] == 1)
        var parameters = ProtocolParameters()
        parameters.batchSizeMax = 1
        let tight = try! ClusterConfig(
            cluster: Self.config.cluster, f: 1, replicas: Self.config.replicas, parameters: parameters)
        let full = ReplicaAdversary(mode: .equivocate, config: tight, signer: Self.signer(0), seed: 1234)
        for send in full.outgoing(.prePrepare(first), to: Self.backups) {
            guard case .prePrepare(let p) = send.message else { continue }
            #expect(p.batch.count == 1, "batch B stays within batchSizeMax")
        }
    }

    @Test("equivocate with accomplices: they get batch A; only the other backups are split")
    func accomplicesGetBatchA() {
        var stream = SeededGenerator(seed: 99)
        for _ in 0..<20 {
            let adversary = ReplicaAdversary(
                mode: .equivocate, config: Self.config, signer: Self.signer(0), random: stream, accomplices: [3])
            _ = stream.next()
            let first = Self.prePrepare(sequence: 2)
            for send in adversary.outgoing(.prePrepare(first), to: Self.backups) where send.to == 3 {
                #expect(send.message == .prePrepare(first), "accomplice 3 gets batch A")
            }
        }
    }

    @Test("double-vote: every vote also goes, to some of its targets, for a second digest")
    func doubleVote() {
        let adversary = Self.adversary(.doubleVote, replica: 2)
        var conflicting = 0
        for sequence in 1...50 {
            let honest = Self.vote(.commit, replica: 2, sequence: UInt64(sequence), digest: Digest.of([UInt8(sequence)]))
            let sends = adversary.outgoing(honest, to: [0, 1, 3])
            #expect(sends.filter { $0.message == honest }.count == 3, "the real vote still goes to everyone")
            for send in sends where send.message != honest {
                #expect(verifies(send.message))
                guard case .commit(let vote) = send.message, case .commit(let real) = honest else {
                    Issue.record("not a commit")
                    continue
                }
                #expect(vote.sequence == real.sequence && vote.digest != real.digest)
                conflicting += 1
            }
        }
        #expect(conflicting > 50 && conflicting < 130, "about 60 % of 150 targets: \(conflicting)")
        #expect(adversary.moves["double-vote.conflicting"] == conflicting)
    }

    @Test("lying-viewchange: VIEW-CHANGEs lie about certificates or the checkpoint, validly signed; storms too")
    func lyingViewChange() {
        let adversary = Self.adversary(.lyingViewChange, replica: 1)
        let prepared = Self.prePrepare(sequence: 1)
        let prepares = [2, 3].map { replica in
            let replicaID = ReplicaID(UInt16(replica))
            let vote = Vote(kind: .prepare, view: 0, sequence: 1, digest: prepared.digest, replica: replicaID)
            return vote.signed(by: Self.signer(replica))
        }
        let certificate = PreparedCertificate(prePrepare: prepared, prepares: prepares)
        let honest = ViewChange(
            newView: 1, stableSequence: .genesis, checkpointProof: [], prepared: [certificate], replica: 1
        ).signed(by: Self.signer(1))
        var lies = Set<ViewChange>()
        for _ in 0..<30 {
            for send in adversary.outgoing(.viewChange(honest), to: [0, 2, 3]) {
                guard case .viewChange(let lie) = send.message else { Issue.record("not a VIEW-CHANGE"); continue }
                #expect(verifies(send.message), "signed by the liar itself")
                #expect(lie != honest)
                lies.insert(lie)
            }
        }
        #expect(lies.count >= 3, "different lies: \(lies.count)")
        let storm = (0..<20).flatMap { _ in adversary.tick(coreView: 1) }
        #expect(!storm.isEmpty && adversary.moves["lying-viewchange.storm", default: 0] > 0)
    }

    @Test("lying-newview: each backup gets a lie, and the lies differ")
    func lyingNewViewPerBackup() {
        let adversary = Self.adversary(.lyingNewView, replica: 1)
        let prePrepares = (1...3).map { Self.prePrepare(sequence: UInt64($0), view: 1, primary: 1) }
        let honest = NewView(view: 1, viewChanges: [], prePrepares: prePrepares, primary: 1).signed(by: Self.signer(1))
        var lies = Set<NewView>()
        for _ in 0..<10 {
            for send in adversary.outgoing(.newView(honest), to: [0, 2, 3]) {
                guard case .newView(let lie) = send.message else { Issue.record("not a NEW-VIEW"); continue }
                #expect(verifies(send.message))
                #expect(lie != honest)
                lies.insert(lie)
            }
        }
        #expect(lies.count >= 4, "\(lies.count) different NEW-VIEWs")
    }

    @Test("censor: the first client heard from never reaches the core, directly or relayed; others do")
    func censor() {
        let adversary = Self.adversary(.censor)
        let other = ClientSigner(cluster: Self.config.cluster, keyPair: KeyPair(seed: [UInt8](repeating: 43, count: 32))!)
        #expect(!adversary.admits(.request(Self.client.request(timestamp: 1, payload: [1]))))
        #expect(adversary.admits(.request(other.request(timestamp: 1, payload: [2]))))
        #expect(!adversary.admits(.request(Self.client.request(timestamp: 2, payload: [3]))), "relayed or direct, the same")
        #expect(adversary.admits(Self.vote(.prepare, replica: 2, digest: Digest.of([1]))))
        #expect(adversary.moves["censor.dropped"] == 2)
        let named = ReplicaAdversary(
            mode: .censor, config: Self.config, signer: Self.signer(0), random: SeededGenerator(seed: 1),
            censoredClient: other.publicKey)
        #expect(named.admits(.request(Self.client.request(timestamp: 1, payload: [1]))))
        #expect(!named.admits(.request(other.request(timestamp: 1, payload: [2]))))
    }

    @Test("replay also re-sends what it received from other replicas")
    func replayReceived() {
        let adversary = Self.adversary(.replay)
        let heard = Self.vote(.commit, replica: 2, digest: Digest.of([9]))
        #expect(adversary.admits(heard))
        let replayed = (0..<10).flatMap { _ in adversary.tick(coreView: 0) }
        #expect(!replayed.isEmpty)
        #expect(replayed.allSatisfy { $0.message == heard && $0.to != 0 })
    }

    @Test("the same stream makes the same attack")
    func seededStreamsReplay() {
        func run() -> [ForgedSend] {
            let adversary = ReplicaAdversary(
                mode: .corrupt, config: Self.config, signer: Self.signer(0), random: SeededGenerator(seed: 5))
            return (1...20).flatMap { sequence in
                adversary.outgoing(.prePrepare(Self.prePrepare(sequence: UInt64(sequence))), to: Self.backups)
            }
        }
        #expect(run() == run())
    }
}
