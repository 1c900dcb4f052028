import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleNode

@Suite("RequestGate: cheap checks before signature verification")
struct RequestGateTests {
    static let cluster = ClusterID(bytes: [UInt8](repeating: 3, count: 16))!
    static let client = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(5))
    static func request(_ timestamp: UInt64, payload: String = "tx") -> Request {
        client.request(timestamp: timestamp, payload: Array(payload.utf8))
    }

    @Test("within the rate every new request is verified; beyond the burst they are dropped until tokens refill")
    func rateLimit() {
        var limits = RequestGate.Limits()
        limits.requestsPerSecond = 100
        limits.burst = 10
        let start = ContinuousClock.now
        var gate = RequestGate(limits: limits, now: start)
        var verdicts: [RequestGate.Verdict] = []
        for timestamp in 1...15 { verdicts.append(gate.admit(Self.request(UInt64(timestamp)), now: start)) }
        #expect(verdicts.prefix(10).allSatisfy { $0 == .verify })
        #expect(verdicts.suffix(5).allSatisfy { $0 == .drop(.rateLimited) })
        #expect(gate.dropped[.rateLimited] == 5)
        // 50 ms later, 5 tokens are back (100 per second).
        let later = start + .milliseconds(50)
        let refilled = (16...22).map { gate.admit(Self.request(UInt64($0)), now: later) }
        #expect(refilled.filter { $0 == .verify }.count == 5)
    }

    @Test("an exact retransmission skips verification and reaches the core at most once per interval")
    func retransmissions() {
        let start = ContinuousClock.now
        var gate = RequestGate(now: start)
        let request = Self.request(7)
        #expect(gate.admit(request, now: start) == .verify)
        gate.verified(request, now: start)
        var forwarded = 0
        var dropped = 0
        // 1,000 copies over one second: at most one per 200 ms goes on.
        for step in 1...1000 {
            switch gate.admit(request, now: start + .milliseconds(step)) {
            case .forwardVerified: forwarded += 1
            case .drop(.duplicate): dropped += 1
            default: Issue.record("a retransmission was sent to verification again")
            }
        }
        #expect(forwarded == 5)
        #expect(dropped == 995)
    }

    @Test("same timestamp, different bytes: verified again (a forged twin is not waved through)")
    func changedBytesAreVerified() {
        let start = ContinuousClock.now
        var gate = RequestGate(now: start)
        let honest = Self.request(9, payload: "pay alice")
        #expect(gate.admit(honest, now: start) == .verify)
        gate.verified(honest, now: start)
        let twin = Request(client: honest.client, timestamp: honest.timestamp, payload: Array("pay mallory".utf8), signature: honest.signature)
        #expect(gate.admit(twin, now: start + .seconds(1)) == .verify)
    }

    @Test("a remembered request's payload is not kept: only its fingerprint is")
    func payloadsAreNotRetained() {
        let start = ContinuousClock.now
        /// A gate that has verified (and remembered) one request carrying `payload`; the request
        /// itself is gone when this returns.
        func gateRemembering(_ payload: [UInt8]) -> RequestGate {
            var gate = RequestGate(now: start)
            let request = Self.client.request(timestamp: 11, payload: payload)
            #expect(gate.admit(request, now: start) == .verify)
            gate.verified(request, now: start)
            return gate
        }
        var payload = [UInt8](repeating: 0x42, count: 64 * 1024)
        var gate = gateRemembering(payload)
        // Copy-on-write shows whether anything else holds the payload's buffer: if only
        // `payload` does, this write happens in place; a gate that kept the request would
        // force a copy to a new buffer.
        let before = payload.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        payload[0] = 0x43
        let after = payload.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(before == after, "the gate kept a reference to the 64 KiB payload")
        payload[0] = 0x42
        let copy = Self.client.request(timestamp: 11, payload: payload)
        #expect(gate.admit(copy, now: start + .seconds(1)) == .forwardVerified, "an exact copy is still recognised")
    }

    @Test("the connection is closed after badSignaturesMax bad signatures, not before")
    func badSignatures() {
        var limits = RequestGate.Limits()
        limits.badSignaturesMax = 4
        var gate = RequestGate(limits: limits)
        for _ in 1..<4 { #expect(throws: Never.self) { try gate.badSignature() } }
        #expect(throws: RequestGate.TooManyBadSignatures.self) { try gate.badSignature() }
    }

    @Test("memory is bounded: the oldest remembered requests are forgotten")
    func bounded() {
        var limits = RequestGate.Limits()
        limits.rememberedMax = 8
        limits.requestsPerSecond = 1e9
        limits.burst = 1e9
        let start = ContinuousClock.now
        var gate = RequestGate(limits: limits, now: start)
        for timestamp in 1...20 {
            let request = Self.request(UInt64(timestamp))
            _ = gate.admit(request, now: start)
            gate.verified(request, now: start)
        }
        let late = start + .seconds(1)
        #expect(gate.admit(Self.request(1), now: late) == .verify, "forgotten: verified again")
        #expect(gate.admit(Self.request(20), now: late) == .forwardVerified, "remembered")
    }
}
