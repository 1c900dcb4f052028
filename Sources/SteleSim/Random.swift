import SteleAdversary

/// The simulator's only source of randomness: xoshiro256** seeded through SplitMix64.
///
/// One seed drives a whole run. Each subsystem (network, faults, clients, adversary) draws from
/// its own stream derived from the seed, so an extra draw in one subsystem never shifts the
/// choices of another — a change to the adversary does not silently change the network.
public struct SimRandom: Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var mixer = SplitMix64(state: seed)
        state = (mixer.next(), mixer.next(), mixer.next(), mixer.next())
        // xoshiro's state must not be all zero; SplitMix64 never yields four zeros in a row,
        // but the invariant is cheap to state.
        precondition(state != (0, 0, 0, 0), "xoshiro256** state must not be all zero")
    }

    /// An independent stream for one subsystem: the same (seed, stream) always gives the same
    /// sequence, and different streams are uncorrelated.
    public init(seed: UInt64, stream: UInt64) {
        var mixer = SplitMix64(state: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
        self.init(seed: mixer.next())
    }

    public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = rotateLeft(state.3, 45)
        return result
    }

    /// Uniform in 0 ..< bound (bound > 0), without modulo bias (Lemire's method with rejection).
    public mutating func int(below bound: Int) -> Int {
        precondition(bound > 0, "int(below:) needs a positive bound")
        let range = UInt64(bound)
        var product = next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold {
                product = next().multipliedFullWidth(by: range)
            }
        }
        return Int(product.high)
    }

    /// Uniform in `range`.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + int(below: range.upperBound - range.lowerBound + 1)
    }

    /// Uniform in `range` (ticks and other unsigned quantities).
    public mutating func uint64(in range: ClosedRange<UInt64>) -> UInt64 {
        let width = range.upperBound - range.lowerBound
        if width == UInt64.max { return next() }
        return range.lowerBound + UInt64(int(below: Int(width + 1)))
    }

    /// True with probability numerator / denominator.
    public mutating func chance(_ numerator: Int, in denominator: Int) -> Bool {
        precondition(denominator > 0, "chance needs a positive denominator")
        if numerator <= 0 { return false }
        if numerator >= denominator { return true }
        return int(below: denominator) < numerator
    }

    /// True with probability percent / 100.
    public mutating func chance(percent: Int) -> Bool { chance(percent, in: 100) }

    public mutating func element<T>(of values: [T]) -> T? {
        values.isEmpty ? nil : values[int(below: values.count)]
    }

    /// Fisher–Yates.
    public mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for index in stride(from: values.count - 1, to: 0, by: -1) {
            values.swapAt(index, int(below: index + 1))
        }
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count)
        while out.count < count {
            var word = next()
            for _ in 0..<min(8, count - out.count) {
                out.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return out
    }

    private func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }
}

/// SplitMix64: turns one 64-bit seed into well-mixed words (used only to seed xoshiro).
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
extension SimRandom: AdversaryRandom {}
