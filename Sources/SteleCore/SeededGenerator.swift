/// SplitMix64: a tiny seeded pseudo-random generator, so that fuzzing, byte-flip and scenario
/// runs replay exactly from their seed, and the one mixer that seeds every other stream (the
/// simulator's xoshiro256**). Not for secrets (keys and nonces come from libsodium).
public struct SeededGenerator: RandomNumberGenerator, RandomStream, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A deterministic source of 64-bit words and the draws every seeded user makes from it. The
/// simulator's streams and a Byzantine replica's generator conform, so the adversary code that
/// both run draws the same way from whichever stream it is given.
public protocol RandomStream {
    mutating func next() -> UInt64
}

extension RandomStream {
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

    /// `count` bytes, eight from each word (low byte first).
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
}
