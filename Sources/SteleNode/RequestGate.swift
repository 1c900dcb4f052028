import SteleCore
import SteleCrypto

/// What one client connection may put in front of the signature verifier and the core. The
/// checks are ordered cheapest first, so that a hostile client pays for its flood and the
/// replica does not:
/// 1. a token bucket per connection (requests per second, with a burst) — beyond it, requests
///    are dropped before anything else is done with them;
/// 2. an exact retransmission of a request already verified on this connection skips
///    verification, and reaches the core at most once per `duplicateForwardInterval` (the core
///    answers a retransmission by re-sending its reply, so a few are useful, thousands are not);
/// 3. after `badSignaturesMax` requests with bad signatures the connection is closed: a new
///    one costs the client a handshake.
///
/// Not thread-safe: one connection task owns it. Time is passed in, so tests control it.
struct RequestGate {
    struct Limits: Sendable {
        /// Sustained requests per second per connection.
        var requestsPerSecond: Double = 20_000
        /// Requests a connection may send at once above the sustained rate.
        var burst: Double = 4_096
        /// Bad signatures tolerated on one connection before it is closed.
        var badSignaturesMax = 16
        /// Verified requests remembered per connection, for recognising retransmissions. Each
        /// costs about 100 bytes whatever its payload: only a fingerprint is kept.
        var rememberedMax = 4_096
        /// A retransmitted request reaches the core at most this often.
        var duplicateForwardInterval: Duration = .milliseconds(200)
    }

    enum Verdict: Equatable {
        /// New (or changed) bytes: verify the signature, then call `verified` or `badSignature`.
        case verify
        /// An exact copy of a request already verified here, due for the core again: post it
        /// without verifying.
        case forwardVerified
        /// Dropped: over the rate, or a retransmission the core saw moments ago.
        case drop(Reason)
    }

    enum Reason: Equatable {
        case rateLimited
        case duplicate
    }

    /// Too many bad signatures: the caller closes the connection.
    struct TooManyBadSignatures: Error, CustomStringConvertible {
        let count: Int
        var description: String { "closed after \(count) requests with bad signatures" }
    }

    let limits: Limits
    private var tokens: Double
    private var refilledAt: ContinuousClock.Instant
    private var badSignatures = 0
    /// What identifies a request's exact bytes: the digest its signature covers (client key,
    /// timestamp and payload) and the signature. Two requests with equal fingerprints are the
    /// same request, so a copy may skip verification; the payload itself is not kept (at 64 KiB
    /// per payload, 4,096 remembered requests per connection would be 256 MiB a connection).
    struct Fingerprint: Equatable {
        let content: Digest
        let signature: Signature
        init(_ request: Request) {
            content = request.contentDigest
            signature = request.signature
        }
    }

    /// Verified requests by timestamp, and when each last went to the core.
    private var remembered: [UInt64: (fingerprint: Fingerprint, forwardedAt: ContinuousClock.Instant)] = [:]
    private var rememberedOrder: [UInt64] = []
    private var rememberedNext = 0
    private(set) var dropped: [Reason: Int] = [:]

    init(limits: Limits = Limits(), now: ContinuousClock.Instant = .now) {
        self.limits = limits
        self.tokens = limits.burst
        self.refilledAt = now
    }

    mutating func admit(_ request: Request, now: ContinuousClock.Instant) -> Verdict {
        let elapsed = now - refilledAt
        refilledAt = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(limits.burst, tokens + max(0, seconds) * limits.requestsPerSecond)
        guard tokens >= 1 else {
            dropped[.rateLimited, default: 0] += 1
            return .drop(.rateLimited)
        }
        tokens -= 1
        if let known = remembered[request.timestamp], known.fingerprint == Fingerprint(request) {
            guard now - known.forwardedAt >= limits.duplicateForwardInterval else {
                dropped[.duplicate, default: 0] += 1
                return .drop(.duplicate)
            }
            remembered[request.timestamp]?.forwardedAt = now
            return .forwardVerified
        }
        return .verify
    }

    /// The request's signature verified; it goes to the core now.
    mutating func verified(_ request: Request, now: ContinuousClock.Instant) {
        if remembered[request.timestamp] == nil {
            if rememberedOrder.count < limits.rememberedMax {
                rememberedOrder.append(request.timestamp)
            } else {
                remembered[rememberedOrder[rememberedNext]] = nil
                rememberedOrder[rememberedNext] = request.timestamp
                rememberedNext = (rememberedNext + 1) % limits.rememberedMax
            }
        }
        remembered[request.timestamp] = (Fingerprint(request), now)
    }

    /// The request's signature did not verify.
    mutating func badSignature() throws(TooManyBadSignatures) {
        badSignatures += 1
        if badSignatures >= limits.badSignaturesMax { throw TooManyBadSignatures(count: badSignatures) }
    }
}
