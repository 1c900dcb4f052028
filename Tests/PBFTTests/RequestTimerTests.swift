import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

/// PBFT §4.4, the backups' view-change timer: "a backup is waiting for a request if it received
/// a valid request and has not executed it"; the timer waits for that request and is restarted,
/// when it executes, for another one the backup still waits on.
@Suite struct RequestTimerTests {
    static func clientSigner(_ seed: UInt8) -> ClientSigner {
        ClientSigner(cluster: Cluster.clusterID, keyPair: FixedKeys.repeating(seed))
    }

    /// A primary that orders the requests of clients X and Y but never client V's (issue 18,
    /// point 2). Before the fix, every execution pushed the backups' deadline, so V waited for
    /// ever while X and Y made progress.
    @Test func aPrimaryThatCensorsOneClientIsReplacedWhileOthersMakeProgress() {
        var cluster = Cluster()
        let x = RequestTimerTests.clientSigner(101)
        let y = RequestTimerTests.clientSigner(102)
        let victim = RequestTimerTests.clientSigner(103)
        // The primary of view 0 never hears of V's request: not from V, not from a backup.
        cluster.drops = { envelope in
            guard envelope.to == 0, case .request(let request) = envelope.message else { return false }
            return request.client == victim.publicKey
        }
        let timeout = Int(cluster.config.parameters.viewChangeTimeoutTicks)
        // One of X's requests is older than V's: it executes first, then the timer waits for V.
        cluster.submit(x.request(timestamp: 1, payload: Array("x-1".utf8)))
        let censored = victim.request(timestamp: 1, payload: Array("v-1".utf8))
        cluster.submit(censored, to: [1, 2, 3])
        var ticks = 0
        var timestamp: UInt64 = 1
        while ticks < 4 * timeout, cluster.ids.contains(where: { cluster.replica($0).view == 0 }) {
            timestamp += 1
            cluster.submit(x.request(timestamp: timestamp, payload: Array("x-\(timestamp)".utf8)))
            cluster.submit(y.request(timestamp: timestamp, payload: Array("y-\(timestamp)".utf8)))
            cluster.tick()
            ticks += 1
        }
        #expect(cluster.ledger(1).count >= timeout, "X and Y kept executing in view 0")
        #expect([1, 2, 3].allSatisfy { cluster.replica($0).view >= 1 },
                "the backups start a view change within two timeouts although X and Y execute (\(ticks) ticks)")
        #expect(ticks <= 2 * timeout + 2)
        // The next primary orders V's request.
        let executed = cluster.tick(until: { c in
            [1, 2, 3].allSatisfy { c.replica($0).ledgerHead.clients[victim.publicKey]?.status(of: 1) != .new }
        }, ticksMax: 200)
        #expect(executed, "V's request executes in a later view")
    }

    /// Executing other requests does not move the deadline of a request still pending.
    @Test func theTimerWaitsForTheOldestPendingRequest() {
        var cluster = Cluster()
        let x = RequestTimerTests.clientSigner(101)
        let victim = RequestTimerTests.clientSigner(103)
        cluster.isolated = [0]
        let censored = victim.request(timestamp: 1, payload: Array("v-1".utf8))
        cluster.submit(censored, to: [1])
        let deadline = try! #require(cluster.replica(1).requestDeadline)
        #expect(cluster.replica(1).requestTimerKey == RequestKey(censored))
        cluster.submit(x.request(timestamp: 1, payload: Array("x-1".utf8)), to: [1])
        for _ in 0..<3 { _ = cluster.replicas[1].handle(.tick) }  // time passes, no timeout yet
        cluster.replicas[1].requestsExecuted(progress: true)
        #expect(cluster.replica(1).requestDeadline == deadline, "progress on other requests keeps V's deadline")
        cluster.replicas[1].pending.remove(RequestKey(censored))
        cluster.replicas[1].requestsExecuted(progress: true)
        #expect(cluster.replica(1).requestTimerKey != RequestKey(censored), "restarted for the next oldest")
        #expect(cluster.replica(1).requestDeadline != nil)
    }
}
