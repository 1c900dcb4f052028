import SteleCore
import SteleCrypto

/// A running SHA-256 over everything a run does, for the determinism check: events are buffered
/// and folded into the digest 64 KiB at a time.
struct TraceRecorder {
    enum Event: UInt8 {
        case message = 1, clientRequest, rejected, commit, accepted, crash, restart, partition
    }

    static let bufferBytesMax = 64 * 1024
    private var digest = Digest.zero
    private var buffer = ByteWriter(capacity: TraceRecorder.bufferBytesMax + 256)

    mutating func record(tick: UInt64, event: Event, node: Int, bytes: [UInt8]) {
        buffer.write(tick)
        buffer.write(event.rawValue)
        buffer.write(UInt32(truncatingIfNeeded: node))
        buffer.writeLengthPrefixed(bytes)
        if buffer.bytes.count >= TraceRecorder.bufferBytesMax { fold() }
    }

    private mutating func fold() {
        digest = Digest.of(digest.bytes + buffer.bytes)
        buffer = ByteWriter(capacity: TraceRecorder.bufferBytesMax + 256)
    }

    mutating func finish() -> Digest {
        fold()
        return digest
    }
}
