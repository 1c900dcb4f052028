import SteleCore

/// The simulator's only source of randomness: xoshiro256** seeded through SplitMix64.
///
/// One seed drives a whole run. Each subsystem (network, faults, clients, adversary) draws from
/// its own stream derived from the seed, so an extra draw in one subsystem never shifts the
/// choices of another — a change to the adversary does not silently change the network.
public struct SimRandom: RandomStream, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var mixer = SeededGenerator(seed: seed)
        state = (mixer.next(), mixer.next(), mixer.next(), mixer.next())
        // xoshiro's state must not be all zero; SplitMix64 never yields four zeros in a row,
        // but the invariant is cheap to state.
        precondition(state != (0, 0, 0, 0), "xoshiro256** state must not be all zero")
    }

    /// An independent stream for one subsystem: the same (seed, stream) always gives the same
    /// sequence, and different streams are uncorrelated.
    public init(seed: UInt64, stream: UInt64) {
        var mixer = SeededGenerator(seed: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
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

    private func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }
}
