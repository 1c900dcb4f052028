import Foundation
import SteleCore
import SteleCrypto
import SteleLedger
import Testing
@testable import SteleAudit

/// Issue 18's auditor half: a config whose quorums need not meet in a correct replica is
/// flagged (the cross-view fork that names no replica is in InvariantTests).
@Suite("Quorums and fork forensics")
struct QuorumForensicsTests {
    static func config(n: Int, f: Int, statedQuorum: Int?) throws -> ClusterConfig {
        let keys = TestKeys.replicas + (TestKeys.replicas.count..<n).map { TestKeys.keyPair("replica-\($0)") }
        var text = String(decoding: TestKeys.makeConfig(cluster: TestKeys.cluster, replicas: keys, f: f).jsonData(), as: UTF8.self)
        if let statedQuorum { text = text.replacingOccurrences(of: "\"formatVersion\"", with: "\"quorum\" : \(statedQuorum),\n  \"formatVersion\"") }
        return try ClusterConfig.fromJSON(Data(text.utf8), source: "cluster.json", allowingUnsafeQuorum: true)
    }

    @Test("n = 6, f = 1 stating the quorum 2f+1 = 3: two quorums may share no replica, flagged")
    func twoFPlusOneAtSixReplicasIsFlagged() throws {
        let unsafe = try Self.config(n: 6, f: 1, statedQuorum: 3)
        #expect(unsafe.quorum == 3)
        let findings = ConfigChecks.findings(unsafe)
        #expect(findings.map(\.code) == [.configQuorumIntersection])
        #expect(findings[0].severity == .warning)
        #expect(findings[0].message.contains("share only 0 replica(s)"))
        #expect(findings[0].message.contains("ceil((n+f+1)/2) = 4"))
        let report = try audit([("g.ledger", LedgerBuilder.fileBytes([.genesis(unsafe.genesis)]))], config: unsafe)
        #expect(report.findings.map(\.code) == [.configQuorumIntersection])
    }

    @Test("a stated quorum above n - f is flagged: f silent replicas would stop the cluster")
    func aQuorumAboveNMinusFIsFlagged() throws {
        let findings = ConfigChecks.findings(try Self.config(n: 4, f: 1, statedQuorum: 4))
        #expect(findings.count == 1)
        #expect(findings[0].message.contains("more than the n - f = 3"))
    }

    @Test("the rule's own quorum, stated or not, is no finding", arguments: [(4, 1), (5, 1), (6, 1), (7, 2), (8, 2), (9, 2), (10, 3)])
    func theRuleIsNeverFlagged(n: Int, f: Int) throws {
        #expect(ConfigChecks.findings(try Self.config(n: n, f: f, statedQuorum: nil)).isEmpty)
        let stated = try Self.config(n: n, f: f, statedQuorum: (n + f + 2) / 2)
        #expect(stated.declaredQuorum == nil)
        #expect(ConfigChecks.findings(stated).isEmpty)
    }

    @Test("a replica refuses a config stating any quorum but the rule's, naming the field")
    func replicasRefuseAStatedUnsafeQuorum() throws {
        let keys = TestKeys.replicas + [TestKeys.keyPair("replica-4"), TestKeys.keyPair("replica-5")]
        let text = String(decoding: TestKeys.makeConfig(cluster: TestKeys.cluster, replicas: keys, f: 1).jsonData(), as: UTF8.self)
            .replacingOccurrences(of: "\"formatVersion\"", with: "\"quorum\" : 3,\n  \"formatVersion\"")
        #expect { _ = try ClusterConfig.fromJSON(Data(text.utf8), source: "cluster.json") } throws: { error in
            guard let error = error as? ConfigError, case .invalidParameter("quorum", let reason) = error.code else { return false }
            return reason.contains("ceil((n+f+1)/2) = 4") && error.source == "cluster.json"
        }
    }
}
